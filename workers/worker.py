"""The worker class and its start-up (`python -m workers`).

`ServiceWorker` is RQ's forking worker plus two duties: it never carries a database
connection across the fork (the work-horse opens its own), and after RQ has handled a
failure (exception, hard time limit, killed or stopped work-horse) it records the outcome
on the run's history row.
"""
from __future__ import annotations

import argparse
import logging
import sys

import redis.exceptions

from redis import Redis
from rq import Queue, Worker

from app import runs
from app.config import Settings, get_settings
from app.connections import bind_database, database, redis_connection
from app.logging_setup import setup_logging
from workers.catalog import QUEUES

log = logging.getLogger(__name__)


class ServiceWorker(Worker):
    #: seconds a run's heartbeat may be late before RQ's maintenance treats it as abandoned
    abandoned_after = 30

    def get_heartbeat_ttl(self, job) -> int:
        """RQ adds a fixed 60 s; a configurable margin bounds how long a killed worker's run waits."""
        if job.timeout and job.timeout > 0:
            remaining = job.timeout - self.current_job_working_time
            return int(min(remaining, self.job_monitoring_interval)) + self.abandoned_after
        return self.job_monitoring_interval + self.abandoned_after

    @property
    def dequeue_timeout(self) -> int:
        """Wake from an empty queue often enough to run maintenance (abandoned-run detection) on time."""
        return max(1, min(self.worker_ttl - 15, self.maintenance_interval))

    # RQ lets a Redis error in its monitoring loop end the worker while the work-horse runs
    # on (an orphan). These bookkeeping writes may fail during an outage; the run goes on.
    def maintain_heartbeats(self, job):
        try:
            super().maintain_heartbeats(job)
        except redis.exceptions.ConnectionError as exc:
            log.warning("heartbeat for run %s failed (%s); Redis unavailable", job.id, type(exc).__name__)

    def heartbeat(self, *args, **kwargs):
        try:
            return super().heartbeat(*args, **kwargs)
        except redis.exceptions.ConnectionError as exc:
            log.warning("worker heartbeat failed (%s); Redis unavailable", type(exc).__name__)

    def set_current_job_working_time(self, *args, **kwargs):
        try:
            super().set_current_job_working_time(*args, **kwargs)
        except redis.exceptions.ConnectionError:
            pass

    def fork_work_horse(self, job, queue):
        if not database.is_closed():
            database.close()
        super().fork_work_horse(job, queue)

    def heartbeat(self, timeout=None, pipeline=None):
        """RQ's heartbeat, plus this worker's CPU% and RSS for the dashboard and /metrics."""
        super().heartbeat(timeout, pipeline=pipeline)
        from app.metrics import publish_worker_resources

        publish_worker_resources(self, pipeline)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string=""):
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)
        try:
            status = runs.record_failure(job, self.connection, _last_line(exc_string))
            log.info("run %s failed attempt recorded as %s", job.id, status.value)
        except Exception:  # the row catches up on the next attempt; never crash the worker
            log.exception("could not record failure of run %s", job.id)


def _last_line(exc_string: str) -> str:
    lines = [line for line in (exc_string or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"


def preload() -> None:
    """Import job code before forking so each work-horse starts warm."""
    import numpy  # noqa: F401

    import workers.forecast_chunks  # noqa: F401
    import workers.jobs  # noqa: F401
    from app.forecast import pipeline  # noqa: F401


def build_worker(settings: Settings, connection: Redis, queues: list[str] | None = None, **kwargs) -> ServiceWorker:
    names = queues or list(QUEUES)
    worker = ServiceWorker(
        [Queue(name, connection=connection) for name in names],
        connection=connection,
        default_result_ttl=settings.result_ttl,
        job_monitoring_interval=settings.worker_heartbeat_interval,
        maintenance_interval=settings.worker_maintenance_interval,
        **kwargs,
    )
    worker.abandoned_after = settings.worker_abandoned_after
    return worker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="RQ worker for the forecast service")
    parser.add_argument("queues", nargs="*", help=f"queues in priority order (default: {' '.join(QUEUES)})")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)

    settings = get_settings()
    setup_logging(settings, process="worker")
    bind_database(settings)
    preload()
    connection = redis_connection(settings)
    worker = build_worker(settings, connection, args.queues, name=args.name)
    # Make every queue visible to `rq info` and rq-dashboard before its first job.
    connection.sadd(Queue.redis_queues_keys, *(q.key for q in worker.queues))
    log.info("worker %s listening on %s", worker.name, ", ".join(q.name for q in worker.queues))
    # with_scheduler: RQ's own scheduler brings delayed retries back from ScheduledJobRegistry.
    worker.work(with_scheduler=True, burst=args.burst, logging_level=settings.log_level.upper())
    if not args.burst and worker._shutdown_requested_date is None:
        log.error("worker loop ended unexpectedly; exiting so the process manager restarts it")
        sys.exit(1)
