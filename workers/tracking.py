"""Run tracking inside the work-horse: each attempt is counted, each outcome recorded.

Failures are recorded by the worker class after RQ has decided between retry and failure
(`ServiceWorker.handle_job_failure`), which also covers killed and stopped work-horses.
Job functions let exceptions propagate so RQ records them and retries.
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field

from rq import get_current_job

from app import runs
from app.config import get_settings
from app.connections import db_session
from app.models import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinishedLater:
    """A body's answer when follow-up jobs finish its run (a fanned-out forecast's gather job).

    The wrapper then leaves the row `started` and keeps the overlap lock; the follow-up job
    records the outcome (`runs.mark_ended`) and releases the lock (`runs.release_slot`).
    `result` is only this job's own RQ result.
    """

    result: dict = field(default_factory=dict)


def tracked(job_name: str):
    """Wrap a job body `(job_id, settings) -> dict` with the run's start/finish bookkeeping."""

    def decorator(body):
        @functools.wraps(body)
        def job_function():
            started_at = utcnow()  # the run starts now; connecting is part of its work
            job = get_current_job()
            settings = get_settings()
            job_id = job.id if job is not None else "local"
            began = time.monotonic()
            with db_session():  # one connection for the run (reused if the worker keeps one)
                if job is not None:
                    runs.mark_started(job_id, job_name, job.origin, (job.meta or {}).get("trigger", "manual"),
                                      started_at=started_at)
                log.info("started %s", job_name)
                result = body(job_id=job_id, settings=settings)
                if isinstance(result, FinishedLater):  # the row and the lock now belong to follow-up jobs
                    log.info("%s continues in follow-up jobs (%.2fs so far)", job_name, time.monotonic() - began)
                    return result.result
                result.setdefault("duration_seconds", round(time.monotonic() - began, 3))
                if job is not None:
                    runs.mark_ended(job_id, runs.RunStatus.FINISHED, result=result)
            if job is not None:
                runs.release_slot(job.connection, job_name, job_id)
            log.info("completed %s in %.2fs", job_name, time.monotonic() - began)
            return result

        return job_function

    return decorator
