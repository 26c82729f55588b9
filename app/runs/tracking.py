"""Run tracking inside the work-horse: each attempt is counted, each outcome recorded.

An attempt takes its run with `lifecycle.mark_started` (refused when the run was canceled
first: the body then never executes) and records its outcome fenced by its attempt number, so
an attempt a newer one replaced can never end the row. Failures are recorded by the worker
class after RQ has decided between retry and failure (`ServiceWorker.handle_job_failure`,
`reconcile.record_failure`), which also covers killed and stopped work-horses. Job functions
let exceptions propagate so RQ records them and retries.

Job functions bind the database themselves when the process has not (a plain `rq worker`),
so they run under any RQ worker.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field

from redis import Redis
from rq import get_current_job

from app.config import Settings, get_settings
from app.connections import bind_database, database, db_session
from app.models import utcnow
from app.runs.keys import stop_key
from app.runs.lifecycle import end_attempt, mark_started, report_attempt, stop_requested
from app.runs.lock import release_slot
from app.runs.status import RunNotStartable, RunStatus, StaleAttempt

log = logging.getLogger(__name__)


def bind_database_if_unbound(settings: Settings | None = None) -> None:
    """Bind the models to the configured database unless this process did already."""
    if database.obj is None:
        bind_database(settings or get_settings())


@dataclass(frozen=True)
class FinishedLater:
    """A body's answer when follow-up jobs finish its run (a fanned-out forecast's gather job).

    The wrapper then leaves the row `started` and keeps the overlap lock; the follow-up job
    records the outcome (`lifecycle.end_attempt`) and releases the lock (`lock.release_slot`).
    `result` is only this job's own RQ result.
    """

    result: dict = field(default_factory=dict)


def end_stopped_attempt(redis: Redis, run_id: str, job_name: str, attempt: int) -> bool:
    """An attempt that finds a stop pending ends the run `stopped` before executing anything."""
    if not end_attempt(run_id, attempt, RunStatus.STOPPED, error="stopped by request"):
        return False
    redis.delete(stop_key(run_id))
    release_slot(redis, job_name, run_id)
    return True


def tracked(job_name: str):
    """Wrap a job body `(job_id, settings) -> dict` with the run's start/finish bookkeeping."""

    def decorator(body):
        @functools.wraps(body)
        def job_function():
            started_at = utcnow()  # the run starts now; connecting is part of its work
            job = get_current_job()
            settings = get_settings()
            bind_database_if_unbound(settings)
            job_id = job.id if job is not None else "local"
            began = time.monotonic()
            attempt = None
            with db_session():  # one connection for the run (reused if the worker keeps one)
                if job is not None:
                    try:
                        attempt = mark_started(
                            job_id,
                            job_name,
                            job.origin,
                            (job.meta or {}).get("trigger", "manual"),
                            started_at=started_at,
                            worker=job.worker_name,
                        )
                    except RunNotStartable as refused:
                        log.warning("%s", refused)
                        return {"status": "not_executed", "reason": str(refused)}
                    report_attempt(job.connection, job_id, job.worker_name, attempt)
                    if stop_requested(job.connection, job_id):  # asked while an earlier attempt ran
                        end_stopped_attempt(job.connection, job_id, job_name, attempt)
                        log.warning("%s run %s stopped by request before attempt %s began", job_name, job_id, attempt)
                        return {"status": "stopped", "reason": "stopped by request"}
                log.info("started %s (attempt %s)", job_name, attempt)
                try:
                    result = body(job_id=job_id, settings=settings)
                except StaleAttempt as stale:  # not a failure of the run: nothing to retry
                    log.warning("%s", stale)
                    return {"status": "not_recorded", "reason": str(stale)}
                if isinstance(result, FinishedLater):  # the row and the lock now belong to follow-up jobs
                    log.info("%s continues in follow-up jobs (%.2fs so far)", job_name, time.monotonic() - began)
                    return result.result
                result.setdefault("duration_seconds", round(time.monotonic() - began, 3))
                if job is not None and not end_attempt(job_id, attempt, RunStatus.FINISHED, result=result):
                    log.warning(
                        "%s run %s: attempt %s was replaced or the run ended; outcome not recorded",
                        job_name,
                        job_id,
                        attempt,
                    )
                    return result
            if job is not None:
                release_slot(job.connection, job_name, job_id)
            log.info("completed %s in %.2fs", job_name, time.monotonic() - began)
            return result

        return job_function

    return decorator
