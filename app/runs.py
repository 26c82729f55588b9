"""Runs: enqueue, cancel and record runs of catalogue jobs.

A run's id is its RQ job id and its `job_runs` row's id; retries keep it. Runs of one job
never overlap: a Redis key per job name holds the id of the run that is queued or running.
It is taken atomically (a Lua script), released when the run ends, and treated as stale
when the RQ job it names has ended or vanished, so a crashed worker never blocks a job.

Attempts and fencing: an attempt takes its run with one conditional UPDATE of the row
(`mark_started`: refused once the run is canceled, so a canceled run never executes) and gets
its attempt number. Every write of that attempt's outcome is fenced by it (`end_attempt`,
`check_attempt`: `WHERE id = ? AND attempts = ? AND status = 'started'`), so an attempt a newer
one has replaced (a work-horse that outlived its worker) can neither store alerts nor end the
row. Writers that act on what they read (cancel, reconcile) compare-and-set the status and
attempt count they read (`end_if`).
"""
from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee
from redis import Redis
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Dependency, Job, JobStatus
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from app.config import Settings
from app.connections import database, db_session
from app.models import JobRun, duration_sql, utcnow
from workers.catalog import JobSpec, get_job

log = logging.getLogger(__name__)


class RunStatus(str, enum.Enum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"  # waiting for a retry
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"
    STOPPED = "stopped"
    SKIPPED = "skipped"


TERMINAL = {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.STOPPED, RunStatus.SKIPPED}
TERMINAL_VALUES = {s.value for s in TERMINAL}
# A run in one of these states never executes again. Failed and stopped runs may: an operator
# can requeue their RQ job (rq-dashboard's "requeue"), which runs it again under the same id.
NOT_STARTABLE_VALUES = {RunStatus.CANCELED.value, RunStatus.SKIPPED.value, RunStatus.FINISHED.value}
WAITING_VALUES = {RunStatus.QUEUED.value, RunStatus.SCHEDULED.value}

# RQ status -> run status (deferred: waiting on the run it was forced behind).
FROM_RQ = {
    JobStatus.QUEUED: RunStatus.QUEUED,
    JobStatus.DEFERRED: RunStatus.QUEUED,
    JobStatus.SCHEDULED: RunStatus.SCHEDULED,
    JobStatus.STARTED: RunStatus.STARTED,
    JobStatus.FINISHED: RunStatus.FINISHED,
    JobStatus.FAILED: RunStatus.FAILED,
    JobStatus.CANCELED: RunStatus.CANCELED,
    JobStatus.STOPPED: RunStatus.STOPPED,
}
RQ_ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED}

ACTIVE_KEY = "forecast-service:active:{job_name}"
PENDING_TTL = 60  # a lock taken by an enqueuer that died before enqueuing frees itself
# Which attempt a worker's work-horse took, by worker name, for the worker's own failure record.
ATTEMPT_KEY = "forecast-service:attempt:{run_id}"
ATTEMPT_KEY_TTL = 7 * 24 * 3600
# A stop asked for through the API: a later attempt of the run (its worker died before it could
# stop it, and the run was found abandoned and retried) stops at once instead of executing.
STOP_KEY = "forecast-service:stop:{run_id}"
# Reconcile cancels a waiting run whose RQ job is gone only once the row is this old: a row is
# written just before its job reaches Redis (the enqueue window; its lock is pending then too).
VANISHED_GRACE_SECONDS = 2.0
DELETED_REASON = "canceled: its RQ job was deleted from Redis (rq-dashboard delete or empty queue)"

_TAKE = """
local holder = redis.call('GET', KEYS[1])
if holder then return {holder, redis.call('TTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""
_SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1
end
return 0
"""
_CONFIRM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PERSIST', KEYS[1]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RunConflict(Exception):
    """A run of the same job is queued or running."""

    def __init__(self, job_name: str, active_id: str):
        super().__init__(f"a {job_name} run is already queued or running: {active_id}")
        self.job_name = job_name
        self.active_id = active_id


class RunNotFound(LookupError):
    """No run with that id."""


class RunNotStartable(Exception):
    """The run ended (canceled, skipped, finished) before this attempt could take it: it must not execute."""

    def __init__(self, run_id: str, status: str):
        super().__init__(f"run {run_id} is {status}; not executed")
        self.run_id = run_id
        self.status = status


class StaleAttempt(Exception):
    """A newer attempt took the run, or the run ended: this attempt may not write its outcome."""

    def __init__(self, run_id: str, attempt: int):
        super().__init__(f"attempt {attempt} of run {run_id} is no longer the run's current attempt")
        self.run_id = run_id
        self.attempt = attempt


class RunAlreadyEnded(Exception):
    """The run has ended; there is nothing to cancel."""

    def __init__(self, run: JobRun):
        super().__init__(f"run {run.id} already ended ({run.status})")
        self.run = run


@dataclass(frozen=True)
class EnqueueOutcome:
    run_id: str
    status: RunStatus
    waits_for: str | None = None  # forced runs start after this one


def new_run_id(spec: JobSpec, slot: datetime | None = None) -> str:
    """Manual runs get a random id; a scheduled slot's id is derived from it (one row per slot)."""
    if slot is not None:
        return f"{spec.name}-{slot:%Y%m%dT%H%M%S}Z"
    return uuid.uuid4().hex


def _active_key(job_name: str) -> str:
    return ACTIVE_KEY.format(job_name=job_name)


def _holder_is_stale(redis: Redis, holder: str, ttl: int) -> bool:
    """A confirmed holder whose RQ job ended, expired or was deleted no longer blocks the job.

    A waiting (queued, retry-waiting) run whose RQ job was deleted (rq-dashboard's delete or
    empty queue) can never execute: it is canceled here, with the reason, and frees the job.
    A started run whose job vanished keeps the job until it is ended (`reconcile`): its
    work-horse may still be running (Redis lost its data, not the worker).
    """
    if ttl >= 0:  # still pending: its enqueuer is between taking the lock and enqueuing
        return False
    try:
        status = Job.fetch(holder, connection=redis).get_status(refresh=False)
    except NoSuchJobError:
        status = None
    if status is not None and status not in RQ_ENDED:
        return False
    # A job can end before its run does (a fanned-out forecast finishes in its gather job).
    with db_session():
        row = JobRun.get_or_none(JobRun.id == holder)
        if row is None or row.status in TERMINAL_VALUES:
            return True
        if status is None and row.status in WAITING_VALUES and job_vanished(redis, holder, row.queue):
            return cancel_vanished(redis, row, grace=0.0)  # confirmed holder: enqueued already
    return False


def job_vanished(redis: Redis, run_id: str, queue: str) -> bool:
    """True when the run's RQ job is gone from Redis: no job hash, in no queue and no registry.

    What rq-dashboard's "delete job" and "empty queue" leave (the job hash deleted). A job still
    listed in its queue or a registry without its hash is left alone (partial Redis data loss).
    """
    with redis.pipeline(transaction=False) as pipe:
        pipe.exists(f"rq:job:{run_id}")
        pipe.lpos(f"rq:queue:{queue}", run_id)
        pipe.zscore(ScheduledJobRegistry(queue, connection=redis).key, run_id)
        pipe.zscore(DeferredJobRegistry(queue, connection=redis).key, run_id)
        exists, position, scheduled, deferred = pipe.execute()
    if exists or position is not None or scheduled is not None or deferred is not None:
        return False
    return run_id not in StartedJobRegistry(queue, connection=redis).get_job_ids()


def cancel_vanished(redis: Redis, row: JobRun, grace: float = VANISHED_GRACE_SECONDS) -> bool:
    """End a waiting run whose RQ job was deleted: canceled (reason given), the job freed.

    Safe against the enqueue window (the row is written before its job reaches Redis): a run
    whose lock is still pending is left alone, and one canceled anyway could never start
    (`mark_started` refuses a canceled run).
    """
    key = _active_key(row.job_name)
    if redis.get(key) == row.id.encode() and redis.ttl(key) >= 0:
        return False  # its enqueuer is still between writing the row and enqueuing
    if row.enqueued_at is not None and (utcnow() - row.enqueued_at).total_seconds() < grace:
        return False
    if not end_if(row.id, row.status, row.attempts, RunStatus.CANCELED, error=DELETED_REASON):
        return False
    release_slot(redis, row.job_name, row.id)
    log.warning("%s run %s canceled: its RQ job was deleted", row.job_name, row.id,
                extra={"job_id": row.id, "job_name": row.job_name})
    return True


def _take_slot(redis: Redis, spec: JobSpec, run_id: str, force: bool) -> str | None:
    """Make `run_id` the job's active run; return the run it must wait for (force) or None."""
    key = _active_key(spec.name)
    for _ in range(5):
        taken = redis.eval(_TAKE, 1, key, run_id, PENDING_TTL)
        if not taken:
            return None
        holder, ttl = taken[0].decode(), int(taken[1])
        if _holder_is_stale(redis, holder, ttl):
            if redis.eval(_SWAP, 1, key, holder, run_id, PENDING_TTL):
                return None
            continue
        if not force:
            raise RunConflict(spec.name, holder)
        if redis.eval(_SWAP, 1, key, holder, run_id, PENDING_TTL):
            return holder
    raise RunConflict(spec.name, holder)


def release_slot(redis: Redis, job_name: str, run_id: str) -> None:
    """Free the job for new runs if `run_id` still holds it."""
    redis.eval(_RELEASE, 1, _active_key(job_name), run_id)


def active_run_id(redis: Redis, job_name: str) -> str | None:
    value = redis.get(_active_key(job_name))
    return value.decode() if value else None


def enqueue_run(
    job_name: str,
    *,
    redis: Redis,
    settings: Settings,
    trigger: str = "manual",
    force: bool = False,
    slot: datetime | None = None,
) -> EnqueueOutcome:
    """Record and enqueue a run; a scheduled firing that finds one active is recorded as skipped.

    The row is written before the job reaches Redis, so a worker never runs a job without a
    row; if the enqueue fails the row is marked failed and the lock released.
    """
    spec = get_job(job_name)
    run_id = new_run_id(spec, slot)
    try:
        waits_for = _take_slot(redis, spec, run_id, force=force and trigger == "manual")
    except RunConflict as conflict:
        if trigger != "scheduled":
            raise
        record_skipped_slot(job_name, slot, f"skipped: run {conflict.active_id} still queued or running")
        return EnqueueOutcome(run_id, RunStatus.SKIPPED, waits_for=conflict.active_id)

    try:
        with db_session():
            _create_row(run_id, spec, trigger, slot, RunStatus.QUEUED)
    except BaseException:
        release_slot(redis, spec.name, run_id)
        raise

    try:
        Queue(spec.queue, connection=redis).enqueue(
            spec.func,
            job_id=run_id,
            retry=Retry(max=settings.job_max_retries, interval=settings.job_retry_delay)
            if settings.job_max_retries
            else None,
            job_timeout=settings.job_timeout,
            result_ttl=settings.result_ttl,
            failure_ttl=max(settings.result_ttl, 24 * 3600),
            depends_on=Dependency(jobs=[waits_for], allow_failure=True) if waits_for else None,
            description=f"{spec.name} ({trigger})",
            meta={"job_name": spec.name, "trigger": trigger},
        )
        redis.eval(_CONFIRM, 1, _active_key(spec.name), run_id)
    except BaseException as exc:
        log.error("enqueue of %s run %s failed: %s", job_name, run_id, type(exc).__name__)
        try:
            with db_session():  # unless a worker took it (the job reached Redis after all)
                end_if(run_id, RunStatus.QUEUED.value, 0, RunStatus.FAILED,
                       error=f"could not enqueue: {type(exc).__name__}")
        finally:
            try:
                release_slot(redis, spec.name, run_id)
            except Exception:  # Redis is what failed; the lock frees itself (pending TTL)
                pass
        raise
    log.info("%s run %s queued (%s)%s", job_name, run_id, trigger, f" after {waits_for}" if waits_for else "",
             extra={"job_id": run_id, "job_name": job_name})
    return EnqueueOutcome(run_id, RunStatus.QUEUED, waits_for=waits_for)


def record_skipped_slot(job_name: str, slot: datetime, reason: str) -> str:
    """Record a schedule slot that did not run (a run was active, or it was missed in an outage)."""
    spec = get_job(job_name)
    run_id = new_run_id(spec, slot)
    with db_session():
        _create_row(run_id, spec, "scheduled", slot, RunStatus.SKIPPED, ended_at=utcnow(), error=reason)
    log.info("%s slot %s %s", job_name, slot, reason, extra={"job_id": run_id, "job_name": job_name})
    return run_id


def _create_row(run_id, spec, trigger, slot, status, ended_at=None, error=None) -> JobRun:
    return JobRun.create(
        id=run_id, job_name=spec.name, queue=spec.queue, trigger=trigger, status=status.value,
        slot=slot, enqueued_at=utcnow(), ended_at=ended_at, error=error,
    )


def get_run(job_name: str, run_id: str) -> JobRun:
    run = JobRun.get_or_none((JobRun.id == run_id) & (JobRun.job_name == job_name))
    if run is None:
        raise RunNotFound(run_id)
    return run


# The attempt this process took last (work-horse, or a worker running runs in-process): the
# failure record after a run raised is written with it.
_taken: tuple[str, int] | None = None


def mark_started(run_id: str, job_name: str, queue: str, trigger: str = "manual",
                 started_at: datetime | None = None) -> int:
    """Take the run for a new attempt: count it, mark the row started, return the attempt number.

    One conditional UPDATE, atomic with a concurrent cancel: a run that is canceled (or
    skipped, or finished) is refused with `RunNotStartable` and must not execute. A row is
    created for a job enqueued outside the API.
    """
    global _taken
    now = started_at or utcnow()
    with database.atomic():
        updated = (
            JobRun.update(status=RunStatus.STARTED.value, started_at=now, ended_at=None, duration_s=None,
                          attempts=JobRun.attempts + 1, error=None)
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
            JobRun.create(id=run_id, job_name=job_name, queue=queue, trigger=trigger,
                          status=RunStatus.STARTED.value, started_at=now, attempts=1)
    except peewee.IntegrityError:  # created concurrently: take it as any other row
        return mark_started(run_id, job_name, queue, trigger, started_at)
    _taken = (run_id, 1)
    return 1


def taken_attempt(run_id: str) -> int | None:
    """The attempt of `run_id` this process took, if it took one."""
    return _taken[1] if _taken is not None and _taken[0] == run_id else None


def stop_requested(redis: Redis, run_id: str) -> bool:
    """Was a stop of this run asked for (202 "stopping") that no attempt has carried out yet?"""
    return bool(redis.exists(STOP_KEY.format(run_id=run_id)))


def end_stopped_attempt(redis: Redis, run_id: str, job_name: str, attempt: int) -> bool:
    """An attempt that finds a stop pending ends the run `stopped` before executing anything."""
    if not end_attempt(run_id, attempt, RunStatus.STOPPED, error="stopped by request"):
        return False
    redis.delete(STOP_KEY.format(run_id=run_id))
    release_slot(redis, job_name, run_id)
    return True


def report_attempt(redis: Redis, run_id: str, worker_name: str | None, attempt: int) -> None:
    """Tell the worker which attempt its work-horse took (for its record if the horse dies)."""
    if not worker_name:
        return
    key = ATTEMPT_KEY.format(run_id=run_id)
    with redis.pipeline(transaction=False) as pipe:
        pipe.hset(key, worker_name, attempt)
        pipe.expire(key, ATTEMPT_KEY_TTL)
        pipe.execute()


def reported_attempt(redis: Redis, run_id: str, worker_name: str) -> int | None:
    raw = redis.hget(ATTEMPT_KEY.format(run_id=run_id), worker_name)
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


def end_if(run_id: str, seen_status: str, seen_attempts: int, status: RunStatus, result=None,
           error: str | None = None) -> bool:
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


def record_failure(job: Job, redis: Redis, error: str, worker_name: str | None = None) -> RunStatus:
    """After RQ handled a failure (exception, timeout, killed or stopped horse): sync the row.

    Written with the attempt's fence: the attempt this process took, or the one the worker's
    work-horse reported. A horse that failed before taking the run only ends a waiting row.
    """
    status = FROM_RQ.get(job.get_status(refresh=True), RunStatus.FAILED)
    job_name = (job.meta or {}).get("job_name")
    attempt = taken_attempt(job.id)
    if attempt is None and worker_name:
        attempt = reported_attempt(redis, job.id, worker_name)
    error = error[-4000:] if error else None
    with db_session():
        if attempt is not None:
            written = end_attempt(job.id, attempt, status, error=error)
        else:
            written = bool(
                JobRun.update(**_ending_fields(status, error=error))
                .where((JobRun.id == job.id) & JobRun.status.in_(sorted(WAITING_VALUES)))
                .execute()
            )
    if not written:
        log.warning("run %s: failure of a replaced or ended attempt not recorded (%s)", job.id, status.value)
    elif status in TERMINAL and job_name:
        if status == RunStatus.STOPPED:
            redis.delete(STOP_KEY.format(run_id=job.id))
        release_slot(redis, job_name, job.id)
    return status


def exception_summary(exc_string: str | None) -> str | None:
    """The exception of a formatted traceback: its type and whole message (which may span lines)."""
    lines = [line for line in (exc_string or "").splitlines() if line.strip()]
    if not lines:
        return None
    frames = [i for i, line in enumerate(lines) if line.startswith("  ")]  # "  File ...", "    code"
    tail = lines[frames[-1] + 1:] if frames and frames[-1] + 1 < len(lines) else lines[-1:]
    return " ".join(line.strip() for line in tail)[-4000:]


def _rq_error(redis: Redis, run_id: str) -> str | None:
    """The exception of the RQ job's latest failure, if any (a failure the worker did not record)."""
    try:
        latest = Job.fetch(run_id, connection=redis).latest_result()
    except Exception:  # noqa: BLE001 - a reason is a nicety; the status is what matters
        return None
    return exception_summary(getattr(latest, "exc_string", None))


def reconcile(redis: Redis, settings: Settings, limit: int = 500) -> int:
    """Bring unfinished rows in line with RQ after paths no worker reported on.

    A worker killed outright leaves its run `started`; RQ's maintenance later retries it
    (queued/scheduled again) or fails it. A run that failed before any attempt took it (a
    worker that could not start it) ends `failed` with RQ's reason. A waiting run whose RQ job
    was deleted (rq-dashboard) is canceled at once (`cancel_vanished`); any other run whose job
    vanished (Redis lost its data: a work-horse may still run it) is failed once it is older
    than the hard time limit.
    Every write is a compare-and-set on what was read. Returns how many rows changed.
    """
    rows = list(
        JobRun.select(JobRun.id, JobRun.job_name, JobRun.queue, JobRun.status, JobRun.enqueued_at, JobRun.attempts)
        .where(JobRun.status.in_([RunStatus.QUEUED.value, RunStatus.SCHEDULED.value, RunStatus.STARTED.value]))
        .order_by(JobRun.enqueued_at)
        .limit(limit)
    )
    if not rows:
        return 0
    with redis.pipeline() as pipe:
        for row in rows:
            pipe.hget(f"rq:job:{row.id}", "status")
        statuses = pipe.execute()
    changed = 0
    lost_before = utcnow().timestamp() - settings.job_timeout - 60
    for row, raw in zip(rows, statuses):
        rq_status = JobStatus(raw.decode()) if raw else None
        if rq_status is None:
            if row.status in WAITING_VALUES and job_vanished(redis, row.id, row.queue):
                changed += cancel_vanished(redis, row)
            elif row.enqueued_at.timestamp() < lost_before:  # a horse may have run it: wait out its time limit
                if end_if(row.id, row.status, row.attempts, RunStatus.FAILED, error="lost: the job vanished from Redis"):
                    release_slot(redis, row.job_name, row.id)
                    changed += 1
            continue
        target = FROM_RQ.get(rq_status)
        if target is None or target == RunStatus.FINISHED or target.value == row.status:
            continue  # finished rows are written by the job itself (or a fan-out's gather step)
        if target in TERMINAL:
            error = None
            if target == RunStatus.FAILED:
                reason = _rq_error(redis, row.id)
                if row.status == RunStatus.STARTED.value:
                    error = f"abandoned: its worker died ({reason})" if reason else "abandoned: its worker died"
                else:
                    error = f"failed before it started: {reason or 'no reason recorded'}"
            if not end_if(row.id, row.status, row.attempts, target, error=error):
                continue
            release_slot(redis, row.job_name, row.id)
        elif row.status == RunStatus.STARTED.value:
            if not end_if(row.id, row.status, row.attempts, target, error="abandoned: its worker died; retrying"):
                continue
        else:
            continue
        log.warning("run %s reconciled: %s -> %s", row.id, row.status, target.value)
        changed += 1
    return changed


def cancel_run(job_name: str, run_id: str, *, redis: Redis) -> RunStatus:
    """Cancel a run that has not started, or stop one that has.

    `canceled` means the run never executes: the row goes from waiting to canceled with one
    compare-and-set, and an attempt takes a run with a conditional UPDATE that refuses a
    canceled row, so whichever comes first wins. Only then is the overlap lock released.
    `started` (the API's 202 "stopping") means an attempt had taken the run: its worker is
    asked to stop it and records `stopped`, and releases the lock then.
    """
    for _ in range(5):
        with db_session():
            run = get_run(job_name, run_id)
        if run.status in TERMINAL_VALUES:
            raise RunAlreadyEnded(run)
        try:
            job = Job.fetch(run_id, connection=redis)
            rq_status = job.get_status(refresh=False)
        except NoSuchJobError:
            job, rq_status = None, None

        if run.status == RunStatus.STARTED.value and rq_status == JobStatus.STARTED:
            from rq.command import send_stop_job_command

            try:
                redis.set(STOP_KEY.format(run_id=run_id), 1, ex=ATTEMPT_KEY_TTL)
                send_stop_job_command(redis, run_id)
                log.info("%s run %s: stop requested", job_name, run_id, extra={"job_id": run_id, "job_name": job_name})
                return RunStatus.STARTED
            except (InvalidJobOperation, NoSuchJobError):
                redis.delete(STOP_KEY.format(run_id=run_id))
                continue  # it ended meanwhile: look again
        if run.status == RunStatus.STARTED.value and rq_status == JobStatus.FINISHED:
            # The run's own job is done but its row is open: a fanned-out forecast in its chunks.
            from workers.forecast_chunks import cancel_fanout, gather_job_id, stop_gather

            if cancel_fanout(redis, run_id):
                log.info("%s run %s canceled with its chunks", job_name, run_id,
                         extra={"job_id": run_id, "job_name": job_name})
                return RunStatus.CANCELED
            if stop_gather(redis, run_id):
                return RunStatus.STARTED
            if redis.exists(Job.key_for(gather_job_id(run_id))):
                continue  # its gather is ending the run right now: look again
        # Waiting (queued, deferred, retry-waiting), or a started row whose attempt is not
        # executing (its worker died): no attempt holds it now, so it can be canceled.
        with db_session():
            canceled = end_if(run_id, run.status, run.attempts, RunStatus.CANCELED, error="canceled by request")
        if not canceled:
            continue  # an attempt took it (or it ended) meanwhile: look again
        if job is not None and rq_status not in RQ_ENDED and rq_status != JobStatus.STARTED:
            try:
                job.cancel(enqueue_dependents=True)
            except (InvalidJobOperation, NoSuchJobError):
                pass
        release_slot(redis, job_name, run_id)
        log.info("%s run %s canceled", job_name, run_id, extra={"job_id": run_id, "job_name": job_name})
        return RunStatus.CANCELED
    with db_session():
        run = get_run(job_name, run_id)
    if run.status in TERMINAL_VALUES:
        raise RunAlreadyEnded(run)
    return RunStatus.STARTED
