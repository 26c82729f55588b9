"""Use cases on a job's runs: name a job, trigger, look up, cancel or stop, retry, list.

Written once for the API, the dashboard and the CLI, which differ only in how they answer;
refusals are domain exceptions (`app.core.errors`), mapped by each adapter's own table.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from redis import Redis

from app import runs
from app.config import Settings
from app.connections import db_session
from app.core.catalog import JOBS, UnknownJob, get_job
from app.core.errors import InvalidRunId, RunActive, RunEnded, RunMissing, RunNotRetryable, UnknownJobName
from app.models import JobRun, RunAttempt
from app.runs.status import RETRYABLE_VALUES

log = logging.getLogger(__name__)

RUN_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_RUN_ID = re.compile(RUN_ID_PATTERN)


class CancelOutcome(str, enum.Enum):
    CANCELED = "canceled"  # the run never executes
    STOPPING = "stopping"  # its worker was asked to stop it and records `stopped`


def job_name(name: str) -> str:
    """The catalogue job of that name, or `UnknownJobName`."""
    try:
        return get_job(name).name
    except UnknownJob:
        raise UnknownJobName(name, list(JOBS)) from None


def run_id(value: str) -> str:
    """A well-formed run id (what may reach SQL and Redis keys), or `InvalidRunId`."""
    if not _RUN_ID.match(value):
        raise InvalidRunId()
    return value


def list_jobs(settings: Settings) -> list[dict[str, str]]:
    return [
        {"name": spec.name, "task": spec.func, "queue": spec.queue, "cron": spec.cron(settings)}
        for spec in JOBS.values()
    ]


def trigger(redis: Redis, settings: Settings, name: str, *, force: bool = False) -> runs.EnqueueOutcome:
    """Queue a manual run of `name`; `RunActive` when one is queued or running (unless `force`)."""
    name = job_name(name)
    try:
        return runs.enqueue_run(name, redis=redis, settings=settings, trigger="manual", force=force)
    except runs.RunConflict as conflict:
        raise RunActive(conflict.job_name, conflict.active_id) from None


def get_run(name: str, run: str) -> JobRun:
    """One run of job `name`, or `RunMissing`."""
    name, run = job_name(name), run_id(run)
    with db_session():
        try:
            return runs.get_run(name, run)
        except runs.RunNotFound:
            raise RunMissing(run, name) from None


def cancel(redis: Redis, name: str, run: str) -> CancelOutcome:
    """Cancel a run that has not started, or ask its worker to stop it (`runs.cancel_run`)."""
    name, run = job_name(name), run_id(run)
    try:
        status = runs.cancel_run(name, run, redis=redis)
    except runs.RunNotFound:
        raise RunMissing(run, name) from None
    except runs.RunAlreadyEnded as ended:
        raise RunEnded(run, ended.run.status) from None
    return CancelOutcome.STOPPING if status == runs.RunStatus.STARTED else CancelOutcome.CANCELED


def cancel_by_id(redis: Redis, run: str) -> tuple[str, CancelOutcome]:
    """Cancel or stop a run known only by its id; returns its job's name and the outcome."""
    run = run_id(run)
    with db_session():
        row = JobRun.get_or_none(JobRun.id == run)
    if row is None:
        raise RunMissing(run)
    try:
        return row.job_name, cancel(redis, row.job_name, run)
    except RunMissing:
        raise RunMissing(run) from None


# --- retry ----------------------------------------------------------------------------------
# A retry is a new run (trigger `retry`, `retry_of` = the run it retries), never a new attempt
# of the ended run: the failed run keeps its status, error and attempts, so the history and
# the success rate stay true. It takes the job's overlap lock as a manual trigger does.


@dataclass(frozen=True)
class RetryOutcome:
    """What a retry did: the new run (None: nothing to retry) and the failed runs it answers for."""

    run_id: str | None
    retry_of: str | None
    status: runs.RunStatus | None = None
    waits_for: str | None = None
    covers: list[str] = field(default_factory=list)  # retry_failed: the failed runs since `since`
    created: bool = True  # False: the newest failure had a retry already (`run_id` is that retry)
    retries: list[str] = field(default_factory=list)  # retry_failed of a per-slot job: every new run, oldest first


def retry(
    redis: Redis, settings: Settings, name: str, run: str, *, force: bool = False, actor: str | None = None
) -> RetryOutcome:
    """Queue a new run of `name` that retries the ended, unsuccessful run `run`.

    `RunMissing` for an unknown run, `RunNotRetryable` unless it ended failed, stopped,
    canceled or skipped, `RunActive` while a run of the job is queued or running (unless
    `force`: the retry then starts when that run ends).
    """
    original = get_run(name, run)
    if original.status not in RETRYABLE_VALUES:
        raise RunNotRetryable(original.id, original.status)
    try:
        outcome = runs.enqueue_run(
            original.job_name,
            redis=redis,
            settings=settings,
            trigger="retry",
            force=force,
            slot=original.slot or original.enqueued_at,  # what the run worked on (the daily summary's day)
            retry_of=original.id,
        )
    except runs.RunConflict as conflict:
        raise RunActive(conflict.job_name, conflict.active_id) from None
    log.info(
        "%s run %s retries %s (by %s)",
        original.job_name,
        outcome.run_id,
        original.id,
        actor or "unknown",
        extra={"job_id": outcome.run_id, "job_name": original.job_name},
    )
    return RetryOutcome(outcome.run_id, original.id, outcome.status, outcome.waits_for, [original.id])


def job_of_run(run: str) -> str:
    """The job of a run known only by its id, or `RunMissing`."""
    run = run_id(run)
    with db_session():
        row = JobRun.get_or_none(JobRun.id == run)
    if row is None:
        raise RunMissing(run)
    return str(row.job_name)


def retry_by_id(
    redis: Redis, settings: Settings, run: str, *, force: bool = False, actor: str | None = None
) -> RetryOutcome:
    """`retry` of a run known only by its id (the dashboard, rq-dashboard's requeue)."""
    return retry(redis, settings, job_of_run(run), run, force=force, actor=actor)


def failed_since(name: str, since: datetime) -> list[JobRun]:
    """The failed runs of `name` enqueued at or after `since` (naive UTC), newest first."""
    name = job_name(name)
    with db_session():
        return list(
            JobRun.select()
            .where(
                (JobRun.job_name == name)
                & (JobRun.status == runs.RunStatus.FAILED.value)
                & (JobRun.enqueued_at >= since)
            )
            .order_by(JobRun.enqueued_at.desc(), JobRun.id.desc())
        )


def retry_failed(
    redis: Redis,
    settings: Settings,
    name: str,
    since: datetime,
    *,
    force: bool = False,
    actor: str | None = None,
) -> RetryOutcome:
    """Make sure the newest failure of `name` since `since` is retried: one new run for all of them.

    A job's runs do not overlap (its lock), and each run does the job's whole work as of now,
    so one retry answers for every failure since `since`: the newest failed run is retried
    and `covers` lists them all. Nothing is queued when there is no failure, or when the
    newest one has a retry already (that retry is returned, `created` False; if it failed in
    turn it is itself the newest failure, and is retried). A job whose runs depend on their
    slot (the daily summary: `JobSpec.per_slot`) has each failed slot retried instead.
    """
    failed = failed_since(name, since)
    if not failed:
        return RetryOutcome(None, None, covers=[], created=False)
    if get_job(name).per_slot:
        return _retry_each_slot(redis, settings, failed, force=force, actor=actor)
    newest = failed[0]
    covers = [r.id for r in failed]
    with db_session():
        earlier = (
            JobRun.select()
            .where(JobRun.retry_of == newest.id)
            .order_by(JobRun.enqueued_at.desc(), JobRun.id.desc())
            .first()
        )
    if earlier is not None:
        return RetryOutcome(earlier.id, newest.id, runs.RunStatus(earlier.status), covers=covers, created=False)
    outcome = retry(redis, settings, newest.job_name, newest.id, force=force, actor=actor)
    return RetryOutcome(outcome.run_id, newest.id, outcome.status, outcome.waits_for, covers)


def _retry_each_slot(
    redis: Redis, settings: Settings, failed: list[JobRun], *, force: bool, actor: str | None
) -> RetryOutcome:
    """A per-slot job (the daily summary: each run reports its slot's day): every failed run
    since the time that has no retry yet is retried, oldest first, each queued behind the one
    before (the job's runs never overlap). The first takes the lock like a trigger (`RunActive`
    unless `force`); a failure whose retry exists already is answered by that retry."""
    covers = [r.id for r in failed]
    with db_session():
        retried = {r.retry_of for r in JobRun.select(JobRun.retry_of).where(JobRun.retry_of.in_(covers))}
    pending = [r for r in reversed(failed) if r.id not in retried]
    if not pending:
        with db_session():
            latest = JobRun.select().where(JobRun.retry_of == failed[0].id).order_by(JobRun.enqueued_at.desc()).first()
        status = runs.RunStatus(latest.status) if latest is not None else None
        return RetryOutcome(latest.id if latest else None, failed[0].id, status, covers=covers, created=False)
    created: list[RetryOutcome] = []
    for number, run in enumerate(pending):
        created.append(retry(redis, settings, run.job_name, run.id, force=force or number > 0, actor=actor))
    last = created[-1]
    return RetryOutcome(
        last.run_id,
        last.retry_of,
        last.status,
        created[0].waits_for,
        covers,
        retries=[c.run_id for c in created if c.run_id],
    )


@dataclass(frozen=True)
class RunHistory:
    """A run's attempts, oldest first, and the runs linked to it by retries."""

    run: JobRun
    attempts: list[RunAttempt]
    retried_by: list[str]  # newest first


def run_history(name: str, run: str) -> RunHistory:
    """Every attempt of one run of `name` (with errors and tracebacks) and its retry links, or `RunMissing`."""
    row = get_run(name, run)
    with db_session():
        attempts = list(RunAttempt.select().where(RunAttempt.run == row.id).order_by(RunAttempt.number))
        retried_by = [
            r.id
            for r in JobRun.select(JobRun.id)
            .where(JobRun.retry_of == row.id)
            .order_by(JobRun.enqueued_at.desc(), JobRun.id.desc())
        ]
    return RunHistory(row, attempts, retried_by)
