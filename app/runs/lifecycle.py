"""A run's row through its attempts: taking it (`mark_started`), fencing and ending it.

An attempt takes its run with one conditional UPDATE of the row (`mark_started`: refused once
the run is canceled, so a canceled run never executes) and gets its attempt number. Every write
of that attempt's outcome is fenced by it (`end_attempt`, `check_attempt`:
`WHERE id = ? AND attempts = ? AND status = 'started'`), so an attempt a newer one has replaced
(a work-horse that outlived its worker) can neither store alerts nor end the row. Writers that
act on what they read (cancel, reconcile) compare-and-set the status and attempt count they
read (`end_if`). Only the database and the attempt/stop keys are touched here; the overlap
lock lives in `lock`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import peewee
from redis import Redis

from app.connections import database
from app.models import JobRun, duration_sql, utcnow
from app.runs.keys import ATTEMPT_KEY_TTL, attempt_key, stop_key
from app.runs.status import NOT_STARTABLE_VALUES, TERMINAL, RunNotFound, RunNotStartable, RunStatus, StaleAttempt


def create_row(
    run_id: str,
    job_name: str,
    queue: str,
    trigger: str,
    slot: datetime | None,
    status: RunStatus,
    ended_at: datetime | None = None,
    error: str | None = None,
) -> JobRun:
    return JobRun.create(
        id=run_id,
        job_name=job_name,
        queue=queue,
        trigger=trigger,
        status=status.value,
        slot=slot,
        enqueued_at=utcnow(),
        ended_at=ended_at,
        error=error,
    )


def get_run(job_name: str, run_id: str) -> JobRun:
    run = JobRun.get_or_none((JobRun.id == run_id) & (JobRun.job_name == job_name))
    if run is None:
        raise RunNotFound(run_id)
    return run


# The attempt this process took last (work-horse, or a worker running runs in-process): the
# failure record after a run raised is written with it.
_taken: tuple[str, int] | None = None


def mark_started(
    run_id: str, job_name: str, queue: str, trigger: str = "manual", started_at: datetime | None = None
) -> int:
    """Take the run for a new attempt: count it, mark the row started, return the attempt number.

    One conditional UPDATE, atomic with a concurrent cancel: a run that is canceled (or
    skipped, or finished) is refused with `RunNotStartable` and must not execute. A row is
    created for a job enqueued outside the API.
    """
    global _taken
    now = started_at or utcnow()
    with database.atomic():
        updated = (
            JobRun.update(
                status=RunStatus.STARTED.value,
                started_at=now,
                ended_at=None,
                duration_s=None,
                attempts=JobRun.attempts + 1,
                error=None,
            )
            .where((JobRun.id == run_id) & JobRun.status.not_in(sorted(NOT_STARTABLE_VALUES)))
            .execute()
        )
        if updated:
            # Same transaction: the row is locked (PostgreSQL) or the database is (SQLite).
            attempt = JobRun.select(JobRun.attempts).where(JobRun.id == run_id).scalar()
            _taken = (run_id, attempt)
            return attempt
        row = JobRun.get_or_none(JobRun.id == run_id)
        if row is not None:
            raise RunNotStartable(run_id, row.status)
    try:
        with database.atomic():
            JobRun.create(
                id=run_id,
                job_name=job_name,
                queue=queue,
                trigger=trigger,
                status=RunStatus.STARTED.value,
                started_at=now,
                attempts=1,
            )
    except peewee.IntegrityError:  # created concurrently: take it as any other row
        return mark_started(run_id, job_name, queue, trigger, started_at)
    _taken = (run_id, 1)
    return 1


def taken_attempt(run_id: str) -> int | None:
    """The attempt of `run_id` this process took, if it took one."""
    return _taken[1] if _taken is not None and _taken[0] == run_id else None


def report_attempt(redis: Redis, run_id: str, worker_name: str | None, attempt: int) -> None:
    """Tell the worker which attempt its work-horse took (for its record if the horse dies)."""
    if not worker_name:
        return
    key = attempt_key(run_id)
    with redis.pipeline(transaction=False) as pipe:
        pipe.hset(key, worker_name, attempt)
        pipe.expire(key, ATTEMPT_KEY_TTL)
        pipe.execute()


def reported_attempt(redis: Redis, run_id: str, worker_name: str) -> int | None:
    raw = redis.hget(attempt_key(run_id), worker_name)
    return int(raw) if raw is not None else None


def _ending_fields(status: RunStatus, result: Any = None, error: str | None = None) -> dict:
    fields: dict[str, Any] = {"status": status.value, "error": error}
    if result is not None:
        fields["result"] = result
    ended = utcnow() if status in TERMINAL else None
    fields["ended_at"] = ended
    fields["duration_s"] = duration_sql(ended) if ended else None  # what the percentiles read
    return fields


def mark_ended(run_id: str, status: RunStatus, result=None, error: str | None = None) -> None:
    """Record an outcome without a fence (a row no attempt has taken yet: enqueue failures, tests)."""
    JobRun.update(**_ending_fields(status, result, error)).where(JobRun.id == run_id).execute()


def end_attempt(run_id: str, attempt: int, status: RunStatus, result=None, error: str | None = None) -> bool:
    """Record attempt `attempt`'s outcome if it is still the run's current, started attempt.

    False (nothing written): a newer attempt took the run, or the run ended meanwhile.
    """
    fence = (JobRun.id == run_id) & (JobRun.attempts == attempt) & (JobRun.status == RunStatus.STARTED.value)
    return bool(JobRun.update(**_ending_fields(status, result, error)).where(fence).execute())


def end_if(
    run_id: str, seen_status: str, seen_attempts: int, status: RunStatus, result=None, error: str | None = None
) -> bool:
    """Compare-and-set: record `status` only if the row is still as it was read."""
    fence = (JobRun.id == run_id) & (JobRun.status == seen_status) & (JobRun.attempts == seen_attempts)
    return bool(JobRun.update(**_ending_fields(status, result, error)).where(fence).execute())


def check_attempt(run_id: str, attempt: int) -> None:
    """Inside the caller's transaction: raise `StaleAttempt` unless `attempt` is still current.

    A no-op UPDATE under the fence: it locks the row (PostgreSQL) or the database (SQLite)
    until the caller's transaction ends, so no cancel or newer attempt can slip in between this
    check and the writes that follow it in the same transaction (alerts).
    """
    fence = (JobRun.id == run_id) & (JobRun.attempts == attempt) & (JobRun.status == RunStatus.STARTED.value)
    if not JobRun.update(attempts=JobRun.attempts).where(fence).execute():
        raise StaleAttempt(run_id, attempt)


def stop_requested(redis: Redis, run_id: str) -> bool:
    """Was a stop of this run asked for (202 "stopping") that no attempt has carried out yet?"""
    return bool(redis.exists(stop_key(run_id)))
