"""The built-in forecast run's job functions: the run's own body, its chunks and its gather.

RQ runs `run_chunk` and `gather` by these dotted paths (`workers.forecast_chunks.run_chunk`,
`workers.forecast_chunks.gather`), also for jobs queued by earlier releases, so they stay
here. How a run is fanned out, leased, fenced and ended is the run lifecycle's protocol
(`app.runs.fanout`); this module only computes: plan, forecast a slice, add up the slices
for the line-level capacity rule, store the alerts. A chunk that fails is retried alone (same
Retry policy as runs); a chunk that fails for good fails the run, named in its error.
"""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

from redis import Redis
from rq import get_current_job
from rq.job import Job

from app import notify
from app.alert_store import StoreOutcome, store_alerts
from app.config import Settings, get_settings
from app.connections import database, db_session
from app.forecast import pipeline
from app.models import JobRun, utcnow
from app.runs import fanout, lifecycle
from app.runs.status import RunStatus, StaleAttempt
from app.runs.tracking import FinishedLater, bind_database_if_unbound

log = logging.getLogger(__name__)

BUILTIN = pipeline.BUILTIN


class ChunkFault(RuntimeError):
    """The planned failure of the FORECAST_CHUNK_FAULT test hook."""


def run_result(outcome: StoreOutcome, **extra: Any) -> dict[str, Any]:
    """The run's result (SPEC section 4) plus `extra`."""
    return {
        "status": "completed",
        "alerts_generated": outcome.new + outcome.updated,
        "new_alerts": outcome.new,
        "updated_alerts": outcome.updated,
        "summary": {f"{sev}_severity": n for sev, n in outcome.by_severity.items()},
        **extra,
    }


def run_forecast(run_id: str, settings: Settings, job: Job | None) -> dict[str, Any] | FinishedLater:
    """The body of a built-in forecast run: in this job, or fanned out (then FinishedLater)."""
    began, began_cpu = time.perf_counter(), time.process_time()
    plan = pipeline.plan()
    planned, planned_cpu = time.perf_counter() - began, time.process_time() - began_cpu
    if job is not None and plan is not None:
        waits_for = fanout.running_gather(job.connection, run_id)
        chunks = 1
        if len(plan.keys) > settings.forecast_fanout_threshold:
            chunks = fanout.chunk_count(len(plan.keys), settings, fanout.live_workers(job.connection))
        if chunks > 1 or waits_for:  # behind another run's gather: wait for it as a fan-out
            return fanout.fan_out(run_id, plan, settings, job.connection, waits_for, planned, chunks, planned_cpu)
    stats: dict[str, Any] = {}
    alerts = pipeline.run_builtin(settings, plan, stats, run_id=run_id) if plan is not None else []
    stored_from, stored_from_cpu = time.perf_counter(), time.process_time()
    with database.atomic():
        attempt = lifecycle.taken_attempt(run_id)
        if attempt is not None:
            lifecycle.check_attempt(run_id, attempt)  # a replaced attempt stores nothing
        outcome = store_alerts(alerts, job_id=run_id)
    notify.notify_high_alerts(settings, outcome.created)  # after the commit, as for any pipeline
    timings = {
        "plan": round(planned, 4),
        **stats.get("timings", {}),
        "store": round(time.perf_counter() - stored_from, 4),
    }
    cpu = {
        "plan": round(planned_cpu, 4),
        **stats.get("cpu", {}),
        "store": round(time.process_time() - stored_from_cpu, 4),
    }
    return run_result(
        outcome,
        series=stats.get("series", 0),
        timings=timings,
        cpu_seconds=cpu,
        peak_rss_mb=stats.get("peak_rss_mb"),
        **stats.get("result", {}),
    )


def _planned_fault(settings: Settings, job: Job | None, index: int) -> None:
    if not settings.forecast_chunk_fault or job is None:
        return
    target, failures = (int(part) for part in settings.forecast_chunk_fault.split(":"))
    attempt = fanout.attempt_of(job)
    if index == target and attempt <= failures:
        raise ChunkFault(f"planned failure of chunk {index}, attempt {attempt} (FORECAST_CHUNK_FAULT)")


def run_chunk(run_id: str, index: int, start: str, end: str, keys: list[tuple[str, int]]) -> dict[str, Any]:
    """Forecast one slice of a run's series; return its spikes and line loads to the gather."""
    job = get_current_job()
    settings = get_settings()
    bind_database_if_unbound(settings)
    _planned_fault(settings, job, index)
    if job is not None:
        fanout.hold_run(job.connection, run_id, settings)
    began, began_cpu = time.perf_counter(), time.process_time()
    plan = pipeline.Plan(date.fromisoformat(start), date.fromisoformat(end), [(k[0], int(k[1])) for k in keys])
    history = pipeline.load_history(plan_=plan)
    part = pipeline.forecast_part(
        history, settings, load_seconds=time.perf_counter() - began, load_cpu=time.process_time() - began_cpu
    )
    log.info(
        "forecast chunk %d of run %s: %d series, %d spike(s) in %.2fs",
        index,
        run_id,
        part.series,
        len(part.spikes),
        time.perf_counter() - began,
    )
    return part.as_dict()


def gather(run_id: str, chunk_ids: list[str], horizon_start: str, plan_seconds: float = 0.0) -> dict[str, Any]:
    """Finish a fanned-out run: capacity rule on the summed loads, store, record, release."""
    job = get_current_job()
    connection = job.connection
    settings = get_settings()
    bind_database_if_unbound(settings)
    attempt = fanout.attempt_of_run(job)
    fanout.hold_run(connection, run_id, settings)
    try:
        return _gather(
            run_id,
            chunk_ids,
            date.fromisoformat(horizon_start),
            (plan_seconds, float((job.meta or {}).get("plan_cpu") or 0.0)),
            connection,
            settings,
            attempt,
        )
    except StaleAttempt:
        log.warning("forecast gather of run %s: attempt %s was replaced; nothing stored", run_id, attempt)
        return {"status": "stale", "attempt": attempt}
    except Exception as exc:
        if not job.retries_left:  # the last attempt: the run fails with it
            fanout.end_run(
                connection, run_id, RunStatus.FAILED, attempt, error=f"gather failed: {type(exc).__name__}: {exc}"
            )
        raise


def _gather(
    run_id: str,
    chunk_ids: list[str],
    horizon_start: date,
    plan_seconds: tuple[float, float],
    connection: Redis,
    settings: Settings,
    attempt: int | None,
) -> dict[str, Any]:
    chunks = Job.fetch_many(chunk_ids, connection=connection)
    failures = [reason for cid, chunk in zip(chunk_ids, chunks) if (reason := fanout.chunk_failure(cid, chunk))]
    if failures:
        error = "; ".join(failures)
        fanout.end_run(connection, run_id, RunStatus.FAILED, attempt, error=error)
        return {"status": "failed", "error": error}

    merged = pipeline.merge_parts([pipeline.Part.from_dict(chunk.return_value()) for chunk in chunks])
    began, began_cpu = time.perf_counter(), time.process_time()
    with db_session():
        capacities, names = pipeline.load_lines()
        alerts = pipeline.finish(merged, horizon_start, capacities, names, settings, run_id=run_id)
        ruled, ruled_cpu = time.perf_counter(), time.process_time()
        with database.atomic():
            if attempt is not None:
                lifecycle.check_attempt(run_id, attempt)  # a replaced attempt stores nothing
            outcome = store_alerts(alerts, job_id=run_id)
        stored, stored_cpu = time.perf_counter(), time.process_time()
        run = JobRun.get_or_none(JobRun.id == run_id)
        duration = (utcnow() - run.started_at).total_seconds() if run is not None and run.started_at else None
        timings = {"plan": plan_seconds[0], **merged.timings, "store": round(stored - ruled, 4)}
        timings["rules"] = round(timings.get("rules", 0.0) + ruled - began, 4)
        cpu = {"plan": plan_seconds[1], **merged.cpu, "store": round(stored_cpu - ruled_cpu, 4)}
        cpu["rules"] = round(cpu.get("rules", 0.0) + ruled_cpu - began_cpu, 4)
        result = run_result(
            outcome,
            series=merged.series,
            timings=timings,
            cpu_seconds=cpu,
            peak_rss_mb=merged.peak_rss_mb,
            fanout={
                "chunks": len(chunk_ids),
                "chunk_size": -(-merged.series // max(1, len(chunk_ids))),
                "retried_chunks": [c.id for c in chunks if fanout.attempt_of(c) > 1],
                "workers": sorted({c.worker_name for c in chunks if c.worker_name}),
            },
            duration_seconds=round(duration, 3) if duration is not None else None,
            **pipeline.run_summary(merged),
        )
    if not fanout.end_run(connection, run_id, RunStatus.FINISHED, attempt, result=result):
        return {"status": "stale", "attempt": attempt}
    notify.notify_high_alerts(settings, outcome.created)
    log.info(
        "completed forecast run %s: %d series in %d chunks, %d alert(s) (%d new)",
        run_id,
        merged.series,
        len(chunk_ids),
        result["alerts_generated"],
        outcome.new,
    )
    return result
