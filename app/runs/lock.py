"""The overlap lock: runs of one job never overlap.

A Redis key per job name (`keys.ACTIVE_KEY`) holds the id of the run that is queued or
running. It is taken atomically (a Lua script) while pending (with a TTL: its enqueuer may
die), confirmed once the job reached its queue, released when the run ends, and treated as
stale when the RQ job it names has ended or vanished, so a crashed worker never blocks a job.
A fanned-out run keeps it under a lease (a TTL again) renewed by its chunks (`hold`).
"""

from __future__ import annotations

import logging
import time

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from app.connections import db_session
from app.models import JobRun, utcnow
from app.runs.keys import CONFIRM, FANOUT_KEY, HOLD, PENDING_TTL, SWAP, TAKE, active_key, release_if_owner
from app.runs.lifecycle import end_if
from app.runs.status import RQ_ENDED, TERMINAL_VALUES, WAITING_VALUES, RunConflict, RunStatus

log = logging.getLogger(__name__)

# Reconcile cancels a waiting run whose RQ job is gone only once the row is this old: a row is
# written just before its job reaches Redis (the enqueue window; its lock is pending then too).
VANISHED_GRACE_SECONDS = 2.0
# How long a forced trigger waits for the run it would queue behind to reach Redis (its enqueuer
# is writing its row); past it, the trigger is refused (409) as an unforced one would be.
FORCE_WAIT_SECONDS = 5.0
FORCE_WAIT_STEP = 0.005
DELETED_REASON = "canceled: its RQ job was deleted from Redis (rq-dashboard delete or empty queue)"


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
    key = active_key(row.job_name)
    if redis.get(key) == row.id.encode() and redis.ttl(key) >= 0:
        return False  # its enqueuer is still between writing the row and enqueuing
    if row.enqueued_at is not None and (utcnow() - row.enqueued_at).total_seconds() < grace:
        return False
    if not end_if(row.id, row.status, row.attempts, RunStatus.CANCELED, error=DELETED_REASON):
        return False
    release_slot(redis, row.job_name, row.id)
    log.warning(
        "%s run %s canceled: its RQ job was deleted",
        row.job_name,
        row.id,
        extra={"job_id": row.id, "job_name": row.job_name},
    )
    return True


def _holder_not_in_redis_yet(redis: Redis, holder: str, ttl: int) -> bool:
    """The holder's enqueuer has taken the lock (pending) but its job is not in Redis yet.

    A forced run must not queue behind it then: RQ counts a dependency missing from Redis as met
    (`Job.fetch_dependencies` drops it), so the forced run would start at once, beside the run
    the holder itself waits for. A fanned-out run's lease also has a TTL; it is no enqueuer.
    """
    if ttl < 0:
        return False
    with redis.pipeline(transaction=False) as pipe:
        pipe.exists(Job.key_for(holder))
        pipe.get(FANOUT_KEY)
        exists, fanned_out = pipe.execute()
    return not exists and fanned_out != holder.encode()


def take_slot(redis: Redis, job_name: str, run_id: str, force: bool) -> str | None:
    """Make `run_id` the job's active run; return the run it must wait for (force) or None.

    A forced run waits for a holder still on its way into Redis, and tries again when another
    trigger swapped the holder first; after FORCE_WAIT_SECONDS it is refused like an unforced one.
    """
    key = active_key(job_name)
    deadline = time.monotonic() + FORCE_WAIT_SECONDS
    while True:
        taken = redis.eval(TAKE, 1, key, run_id, PENDING_TTL)
        if not taken:
            return None
        holder, ttl = taken[0].decode(), int(taken[1])
        if _holder_is_stale(redis, holder, ttl):
            if redis.eval(SWAP, 1, key, holder, run_id, PENDING_TTL):
                return None
        elif not force:
            raise RunConflict(job_name, holder)
        elif _holder_not_in_redis_yet(redis, holder, ttl):
            time.sleep(FORCE_WAIT_STEP)
        elif redis.eval(SWAP, 1, key, holder, run_id, PENDING_TTL):
            return holder
        if time.monotonic() >= deadline:
            raise RunConflict(job_name, holder)


def release_slot(redis: Redis, job_name: str, run_id: str) -> None:
    """Free the job for new runs if `run_id` still holds it."""
    release_if_owner(redis, active_key(job_name), run_id)


def active_run_id(redis: Redis, job_name: str) -> str | None:
    value = redis.get(active_key(job_name))
    return value.decode() if value else None


def confirm_slot(redis: Redis, job_name: str, run_id: str) -> None:
    """The run reached its queue: its lock no longer expires."""
    redis.eval(CONFIRM, 1, active_key(job_name), run_id)


def hold(redis: Redis, run_id: str, seconds: int, *keys: str) -> None:
    """Renew the lease of each of `keys` that `run_id` still holds."""
    redis.eval(HOLD, len(keys), *keys, run_id, seconds)
