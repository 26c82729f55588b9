"""Runs: enqueue, cancel and record runs of catalogue jobs.

A run's id is its RQ job id and its `job_runs` row's id; retries keep it. Runs of one job
never overlap: a Redis key per job name holds the id of the run that is queued or running.
It is taken atomically (a Lua script), released when the run ends, and treated as stale
when the RQ job it names has ended or vanished, so a crashed worker never blocks a job.
"""
from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

import peewee
from redis import Redis
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Dependency, Job, JobStatus

from app.config import Settings
from app.connections import db_session
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
    """A confirmed holder whose RQ job ended or expired no longer blocks the job."""
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
    return row is None or row.status in TERMINAL_VALUES


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
            with db_session():
                mark_ended(run_id, RunStatus.FAILED, error=f"could not enqueue: {type(exc).__name__}")
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


def mark_started(run_id: str, job_name: str, queue: str, trigger: str = "manual",
                 started_at: datetime | None = None) -> None:
    """Count an attempt and mark the row started (creating it for a job enqueued outside the API)."""
    now = started_at or utcnow()
    updated = (
        JobRun.update(status=RunStatus.STARTED.value, started_at=now, ended_at=None, duration_s=None,
                      attempts=JobRun.attempts + 1, error=None)
        .where(JobRun.id == run_id)
        .execute()
    )
    if not updated:
        try:
            JobRun.create(id=run_id, job_name=job_name, queue=queue, trigger=trigger,
                          status=RunStatus.STARTED.value, started_at=now, attempts=1)
        except peewee.IntegrityError:  # created concurrently
            pass


def mark_ended(run_id: str, status: RunStatus, result=None, error: str | None = None) -> None:
    """Record an attempt's outcome; a terminal status also sets ended_at."""
    fields = {"status": status.value, "error": error}
    if result is not None:
        fields["result"] = result
    ended = utcnow() if status in TERMINAL else None
    fields["ended_at"] = ended
    fields["duration_s"] = duration_sql(ended) if ended else None  # what the percentiles read
    JobRun.update(**fields).where(JobRun.id == run_id).execute()


def record_failure(job: Job, redis: Redis, error: str) -> RunStatus:
    """After RQ handled a failure (exception, timeout, killed or stopped horse): sync the row."""
    status = FROM_RQ.get(job.get_status(refresh=True), RunStatus.FAILED)
    job_name = (job.meta or {}).get("job_name")
    try:
        with db_session():
            mark_ended(job.id, status, error=error[-4000:] if error else None)
    finally:
        if status in TERMINAL and job_name:
            release_slot(redis, job_name, job.id)
    return status


def reconcile(redis: Redis, settings: Settings, limit: int = 500) -> int:
    """Bring unfinished rows in line with RQ after paths no worker reported on.

    A worker killed outright leaves its run `started`; RQ's maintenance later retries it
    (queued/scheduled again) or fails it. A job that vanished from Redis (data lost) is
    failed once it is older than the hard time limit. Returns how many rows changed.
    """
    rows = list(
        JobRun.select(JobRun.id, JobRun.job_name, JobRun.status, JobRun.enqueued_at)
        .where(JobRun.status.in_([RunStatus.QUEUED.value, RunStatus.SCHEDULED.value, RunStatus.STARTED.value]))
        .order_by(JobRun.enqueued_at)
        .limit(limit)
        .tuples()
    )
    if not rows:
        return 0
    with redis.pipeline() as pipe:
        for run_id, *_ in rows:
            pipe.hget(f"rq:job:{run_id}", "status")
        statuses = pipe.execute()
    changed = 0
    lost_before = utcnow().timestamp() - settings.job_timeout - 60
    for (run_id, job_name, status, enqueued_at), raw in zip(rows, statuses):
        rq_status = JobStatus(raw.decode()) if raw else None
        if rq_status is None:
            if enqueued_at.timestamp() < lost_before:
                mark_ended(run_id, RunStatus.FAILED, error="lost: the job vanished from Redis")
                release_slot(redis, job_name, run_id)
                changed += 1
            continue
        target = FROM_RQ.get(rq_status)
        if target is None or target == RunStatus.FINISHED or target.value == status:
            continue  # finished rows are written by the job itself (or a fan-out's gather step)
        if target in TERMINAL:
            mark_ended(run_id, target, error="abandoned: its worker died" if target == RunStatus.FAILED else None)
            release_slot(redis, job_name, run_id)
        elif status == RunStatus.STARTED.value:
            mark_ended(run_id, target, error="abandoned: its worker died; retrying")
        else:
            continue
        log.warning("run %s reconciled: %s -> %s", run_id, status, target.value)
        changed += 1
    return changed


def cancel_run(job_name: str, run_id: str, *, redis: Redis) -> RunStatus:
    """Cancel a queued/deferred/retry-waiting run, or ask its worker to stop a running one.

    Returns the run's new status: `canceled`, or `started` while the stop is under way (the
    worker records `stopped`).
    """
    with db_session():
        run = get_run(job_name, run_id)
        if run.status in TERMINAL_VALUES:
            raise RunAlreadyEnded(run)
    try:
        job = Job.fetch(run_id, connection=redis)
        rq_status = job.get_status(refresh=False)
    except NoSuchJobError:
        job, rq_status = None, None

    if rq_status == JobStatus.STARTED:
        from rq.command import send_stop_job_command

        try:
            send_stop_job_command(redis, run_id)
            log.info("%s run %s: stop requested", job_name, run_id, extra={"job_id": run_id, "job_name": job_name})
            return RunStatus.STARTED
        except InvalidJobOperation:
            rq_status = job.get_status(refresh=True)
    if rq_status == JobStatus.FINISHED:
        # The run's own job is done but its row is open: a fanned-out forecast still in its chunks.
        from workers.forecast_chunks import cancel_fanout

        if cancel_fanout(redis, run_id):
            log.info("%s run %s canceled with its chunks", job_name, run_id, extra={"job_id": run_id, "job_name": job_name})
            return RunStatus.CANCELED
    if rq_status in RQ_ENDED:
        with db_session():
            raise RunAlreadyEnded(get_run(job_name, run_id))
    if job is not None:
        try:
            job.cancel(enqueue_dependents=True)
        except InvalidJobOperation:
            pass
    with db_session():
        mark_ended(run_id, RunStatus.CANCELED, error="canceled by request")
    release_slot(redis, job_name, run_id)
    log.info("%s run %s canceled", job_name, run_id, extra={"job_id": run_id, "job_name": job_name})
    return RunStatus.CANCELED
