"""A run's row through its attempts: taking it (`mark_started`), fencing and ending it.

An attempt takes its run with one conditional UPDATE of the row (`mark_started`: refused once
the run is canceled, so a canceled run never executes) and gets its attempt number. Every write
of that attempt's outcome is fenced by it (`end_attempt`, `check_attempt`:
`WHERE id = ? AND attempts = ? AND status = 'started'`), so an attempt a newer one has replaced
(a work-horse that outlived its worker) can neither store alerts nor end the row. Writers that
act on what they read (cancel, reconcile) compare-and-set the status and attempt count they
read (`end_if`). Only the database and the attempt/stop keys are touched here; the overlap
lock lives in `lock`.

Each attempt also has its own row (`run_attempts`): inserted by `mark_started` in the
transaction that takes the run, and ended in the transaction of whichever write ends that
attempt (`end_attempt`, or `end_if` on a started row), with its error and traceback. Nothing
ever rewrites an ended attempt, so every failure stays in the history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import peewee
from redis import Redis

from app.connections import database
from app.models import TRACEBACK_MAX_CHARS, JobRun, RunAttempt, duration_sql, utcnow
from app.runs.keys import ATTEMPT_KEY_TTL, attempt_key, stop_key
from app.runs.status import (
    NOT_STARTABLE_VALUES,
    TERMINAL,
    AttemptStatus,
    RunNotFound,
    RunNotStartable,
    RunStatus,
    StaleAttempt,
)

ERROR_MAX_CHARS = 4000  # a stored error (the exception's type and message) keeps its end
REPLACED_ERROR = "abandoned: a newer attempt took the run (its worker died or lost it)"

# How an attempt ended, by the run status the write that ended it records (a run waiting for
# RQ's retry ended its last attempt `failed`); writers that know better say so.
ATTEMPT_ENDING = {
    RunStatus.FINISHED: AttemptStatus.FINISHED,
    RunStatus.FAILED: AttemptStatus.FAILED,
    RunStatus.STOPPED: AttemptStatus.STOPPED,
    RunStatus.CANCELED: AttemptStatus.CANCELED,
    RunStatus.SKIPPED: AttemptStatus.CANCELED,
    RunStatus.QUEUED: AttemptStatus.FAILED,
    RunStatus.SCHEDULED: AttemptStatus.FAILED,
}


def create_row(
    run_id: str,
    job_name: str,
    queue: str,
    trigger: str,
    slot: datetime | None,
    status: RunStatus,
    ended_at: datetime | None = None,
    error: str | None = None,
    retry_of: str | None = None,
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
        retry_of=retry_of,
    )


def get_run(job_name: str, run_id: str) -> JobRun:
    run = JobRun.get_or_none((JobRun.id == run_id) & (JobRun.job_name == job_name))
    if run is None:
        raise RunNotFound(run_id)
    return run


# The attempt this process took last (work-horse, or a worker running runs in-process): the
# failure record after a run raised is written with it.
_taken: tuple[str, int] | None = None


def _begin_attempt_row(run_id: str, number: int, worker: str | None, started_at: datetime) -> None:
    """Inside the transaction that took the run: close what earlier attempts left open, open this one.

    An earlier attempt still `started` lost the run without ending it (its worker died and RQ
    ran the run again before `reconcile` saw it): it is recorded abandoned.
    """
    RunAttempt.update(status=AttemptStatus.ABANDONED.value, ended_at=started_at, error=REPLACED_ERROR).where(
        (RunAttempt.run == run_id) & (RunAttempt.number < number) & (RunAttempt.status == AttemptStatus.STARTED.value)
    ).execute()
    fields = {
        "worker": worker[:200] if worker else None,
        "started_at": started_at,
        "ended_at": None,
        "status": AttemptStatus.STARTED.value,
        "error": None,
        "traceback": None,
        "next_retry_at": None,
    }
    RunAttempt.insert(run=run_id, number=number, **fields).on_conflict(
        conflict_target=[RunAttempt.run, RunAttempt.number], update=fields
    ).execute()


def _end_attempt_row(
    run_id: str,
    number: int,
    status: AttemptStatus,
    error: str | None,
    traceback: str | None = None,
    next_retry_at: datetime | None = None,
) -> None:
    """Inside the transaction that ended attempt `number` on the run's row: end its attempt row too."""
    RunAttempt.update(
        status=status.value,
        ended_at=utcnow(),
        error=error[-ERROR_MAX_CHARS:] if error else None,
        traceback=traceback[-TRACEBACK_MAX_CHARS:] if traceback else None,
        next_retry_at=next_retry_at,
    ).where(
        (RunAttempt.run == run_id) & (RunAttempt.number == number) & (RunAttempt.status == AttemptStatus.STARTED.value)
    ).execute()


def mark_started(
    run_id: str,
    job_name: str,
    queue: str,
    trigger: str = "manual",
    started_at: datetime | None = None,
    worker: str | None = None,
) -> int:
    """Take the run for a new attempt: count it, mark the row started, return the attempt number.

    One conditional UPDATE, atomic with a concurrent cancel: a run that is canceled (or
    skipped, or ended) is refused with `RunNotStartable` and must not execute. A row is
    created for a job enqueued outside the API. The attempt's row (`run_attempts`) is
    written in the same transaction, with the worker that took it.
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
            _begin_attempt_row(run_id, attempt, worker, now)
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
            _begin_attempt_row(run_id, 1, worker, now)
    except peewee.IntegrityError:  # created concurrently: take it as any other row
        return mark_started(run_id, job_name, queue, trigger, started_at, worker)
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


def end_attempt(
    run_id: str,
    attempt: int,
    status: RunStatus,
    result=None,
    error: str | None = None,
    *,
    traceback: str | None = None,
    attempt_status: AttemptStatus | None = None,
    next_retry_at: datetime | None = None,
) -> bool:
    """Record attempt `attempt`'s outcome if it is still the run's current, started attempt.

    The attempt's own row ends in the same transaction (`attempt_status`, by default what
    `status` implies; its error, traceback and the time RQ retries the run).
    False (nothing written): a newer attempt took the run, or the run ended meanwhile.
    """
    fence = (JobRun.id == run_id) & (JobRun.attempts == attempt) & (JobRun.status == RunStatus.STARTED.value)
    with database.atomic():
        if not JobRun.update(**_ending_fields(status, result, error)).where(fence).execute():
            return False
        _end_attempt_row(
            run_id, attempt, attempt_status or ATTEMPT_ENDING[status], error, traceback, next_retry_at=next_retry_at
        )
    return True


def end_if(
    run_id: str,
    seen_status: str,
    seen_attempts: int,
    status: RunStatus,
    result=None,
    error: str | None = None,
    *,
    attempt_status: AttemptStatus | None = None,
    next_retry_at: datetime | None = None,
) -> bool:
    """Compare-and-set: record `status` only if the row is still as it was read.

    A started row read this way has an attempt no worker reported on (its worker died, or its
    fan-out is ended from outside): that attempt's row ends with it.
    """
    fence = (JobRun.id == run_id) & (JobRun.status == seen_status) & (JobRun.attempts == seen_attempts)
    with database.atomic():
        if not JobRun.update(**_ending_fields(status, result, error)).where(fence).execute():
            return False
        if seen_status == RunStatus.STARTED.value:
            ending = attempt_status or ATTEMPT_ENDING[status]
            _end_attempt_row(run_id, seen_attempts, ending, error, next_retry_at=next_retry_at)
    return True


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
