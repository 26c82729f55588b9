"""Worker CPU% and RSS: sampled and published by each worker on heartbeat, read by the dashboard and /metrics.

The worker process imports this module, so it imports no Flask, no API and no web code (the
worker and scheduler never import Flask). It owns the fields a ServiceWorker adds to its RQ
hash; since they live in the worker's own hash they expire and vanish with the worker's record.
"""

from __future__ import annotations

import logging
import os
import time

from redis import Redis
from rq import Worker
from rq.exceptions import StopRequested

log = logging.getLogger(__name__)

# Fields a ServiceWorker adds to its RQ hash on heartbeat.
CPU_FIELD = "svc_cpu_percent"
RSS_FIELD = "svc_rss_bytes"
SAMPLED_FIELD = "svc_resources_at"  # unix time of the sample

MIN_SAMPLE_INTERVAL = 1.0  # seconds; RQ may heartbeat several times in a row


class ResourceSampler:
    """CPU% since the previous sample and resident memory of a worker and its work-horse.

    CPU time is the worker's own, plus its reaped children's (finished work-horses), plus the
    live work-horse's, so a sample taken while a job runs counts the job's CPU.
    """

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None  # (monotonic time, CPU seconds)

    def sample(self, horse_pid: int | None = None) -> dict[str, float]:
        import psutil

        process = psutil.Process()
        times = process.cpu_times()
        cpu_seconds = times.user + times.system + times.children_user + times.children_system
        rss = process.memory_info().rss
        if horse_pid:
            try:
                horse = psutil.Process(horse_pid)
                horse_times = horse.cpu_times()
                cpu_seconds += horse_times.user + horse_times.system
                rss += horse.memory_info().rss
            except psutil.Error:  # it ended between the check and the read
                pass
        now = time.monotonic()
        if self._last is None:  # first sample: the average since the process started
            elapsed, previous = time.time() - process.create_time(), 0.0
        else:
            elapsed, previous = now - self._last[0], self._last[1]
        self._last = (now, cpu_seconds)
        percent = max(0.0, (cpu_seconds - previous) / elapsed * 100) if elapsed > 0 else 0.0
        return {"cpu_percent": round(percent, 1), "rss_bytes": int(rss)}

    def due(self) -> bool:
        return self._last is None or time.monotonic() - self._last[0] >= MIN_SAMPLE_INTERVAL


def publish_worker_resources(worker: Worker, pipeline=None) -> None:
    """Write the worker's CPU% and RSS into its RQ hash; raises nothing but a stop (a heartbeat must not fail).

    Skipped inside the work-horse (a fork of the worker that also heartbeats), so the figures
    always describe the worker process and its current horse together.
    """
    try:
        if worker.pid is not None and os.getpid() != worker.pid:
            return
        sampler = getattr(worker, "_resource_sampler", None)
        if sampler is None:
            sampler = worker._resource_sampler = ResourceSampler()
        if not sampler.due():
            return
        figures = sampler.sample(getattr(worker, "_horse_pid", 0) or None)
        connection = pipeline if pipeline is not None else worker.connection
        connection.hset(
            worker.key,
            mapping={
                CPU_FIELD: figures["cpu_percent"],
                RSS_FIELD: figures["rss_bytes"],
                SAMPLED_FIELD: round(time.time(), 3),
            },
        )
    except StopRequested:
        # RQ's SIGTERM handler raises it in an idle worker wherever the signal lands; swallowed
        # here, the worker stayed in RQ's dequeue loop (which never reads the stop flag) for good
        raise
    except Exception:
        log.debug("could not publish worker resources", exc_info=True)


def worker_resources(redis: Redis, worker_keys: list[str]) -> list[dict]:
    """CPU%, RSS and sample time each worker last published (None where it published none)."""
    with redis.pipeline(transaction=False) as pipe:
        for key in worker_keys:
            pipe.hmget(key, CPU_FIELD, RSS_FIELD, SAMPLED_FIELD)
        rows = pipe.execute()
    out = []
    for cpu, rss, sampled in rows:
        rss_value = _number(rss)
        out.append(
            {
                "cpu_percent": _number(cpu),
                "rss_bytes": int(rss_value) if rss_value is not None else None,
                "sampled_at": _number(sampled),
            }
        )
    return out


def _number(raw: bytes | None) -> float | None:
    """A published figure, or None when absent or unreadable (a page must not fail on one)."""
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
