"""Bringing run rows in line with RQ: after a failure RQ handled, and for paths no worker reported on.

A worker records a failed, stopped or killed attempt once RQ has decided between retry and
failure (`record_failure`); `reconcile` (run by the scheduler) mends what no worker could
report: killed workers, jobs deleted from Redis, runs that failed before any attempt took them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from redis import Redis
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry

from app.config import Settings
from app.connections import db_session
from app.models import JobRun, utcnow
from app.runs.keys import stop_key
from app.runs.lifecycle import ERROR_MAX_CHARS, _ending_fields, end_attempt, end_if, reported_attempt, taken_attempt
from app.runs.lock import cancel_vanished, job_vanished, release_slot
from app.runs.status import FROM_RQ, TERMINAL, WAITING_VALUES, AttemptStatus, RunStatus

log = logging.getLogger(__name__)


def next_retry_time(redis: Redis, queue: str, run_id: str, status: RunStatus) -> datetime | None:
    """When RQ runs the job again after this failure: its time in the scheduled registry, or now."""
    if status == RunStatus.QUEUED:
        return utcnow()
    if status != RunStatus.SCHEDULED:
        return None
    score = redis.zscore(ScheduledJobRegistry(queue, connection=redis).key, run_id)
    if score is None:
        return None
    return datetime.fromtimestamp(score, timezone.utc).replace(tzinfo=None)


def record_failure(
    job: Job, redis: Redis, error: str, worker_name: str | None = None, traceback: str | None = None
) -> RunStatus:
    """After RQ handled a failure (exception, timeout, killed or stopped horse): sync the row.

    Written with the attempt's fence: the attempt this process took, or the one the worker's
    work-horse reported; the attempt's row keeps the error, the traceback and when RQ retries
    the run. A horse that failed before taking the run only ends a waiting row.
    """
    status = FROM_RQ.get(job.get_status(refresh=True), RunStatus.FAILED)
    job_name = (job.meta or {}).get("job_name")
    attempt = taken_attempt(job.id)
    if attempt is None and worker_name:
        attempt = reported_attempt(redis, job.id, worker_name)
    error = error[-ERROR_MAX_CHARS:] if error else None
    with db_session():
        if attempt is not None:
            written = end_attempt(
                job.id,
                attempt,
                status,
                error=error,
                traceback=traceback,
                next_retry_at=next_retry_time(redis, job.origin, job.id, status),
            )
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
            redis.delete(stop_key(job.id))
        release_slot(redis, job_name, job.id)
    return status


def exception_summary(exc_string: str | None) -> str | None:
    """The exception of a formatted traceback: its type and whole message (which may span lines)."""
    lines = [line for line in (exc_string or "").splitlines() if line.strip()]
    if not lines:
        return None
    frames = [i for i, line in enumerate(lines) if line.startswith("  ")]  # "  File ...", "    code"
    tail = lines[frames[-1] + 1 :] if frames and frames[-1] + 1 < len(lines) else lines[-1:]
    return " ".join(line.strip() for line in tail)[-ERROR_MAX_CHARS:]


def _rq_error(redis: Redis, run_id: str) -> str | None:
    """The exception of the RQ job's latest failure, if any (a failure the worker did not record)."""
    try:
        latest = Job.fetch(run_id, connection=redis).latest_result()
    except Exception:  # noqa: BLE001 - a reason is a nicety; the status is what matters
        return None
    return exception_summary(getattr(latest, "exc_string", None))


RECORDING_GRACE = 30.0  # seconds a worker has to record a failure RQ already holds


def _worker_recording(redis: Redis, run_id: str) -> bool:
    """True while the RQ job's latest result is a fresh failure of its own (not RQ's AbandonedJobError):
    the worker that raised it records the row right after RQ, so reconcile must not call it abandoned."""
    try:
        latest = Job.fetch(run_id, connection=redis).latest_result()
    except Exception:  # noqa: BLE001 - without a result, reconcile as before
        return False
    if latest is None or "AbandonedJobError" in (getattr(latest, "exc_string", None) or ""):
        return False
    created = latest.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return (
        datetime.now(timezone.utc) - created
    ).total_seconds() < RECORDING_GRACE and latest.type != latest.Type.SUCCESSFUL


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
                if end_if(
                    row.id,
                    row.status,
                    row.attempts,
                    RunStatus.FAILED,
                    error="lost: the job vanished from Redis",
                    attempt_status=AttemptStatus.ABANDONED,
                ):
                    release_slot(redis, row.job_name, row.id)
                    changed += 1
            continue
        target = FROM_RQ.get(rq_status)
        if target is None or target == RunStatus.FINISHED or target.value == row.status:
            continue  # finished rows are written by the job itself (or a fan-out's gather step)
        if row.status == RunStatus.STARTED.value and _worker_recording(redis, row.id):
            continue  # RQ has the failure; its live worker writes the row next (not an abandoned run)
        if target in TERMINAL:
            error = None
            if target == RunStatus.FAILED:
                reason = _rq_error(redis, row.id)
                if row.status == RunStatus.STARTED.value:
                    error = f"abandoned: its worker died ({reason})" if reason else "abandoned: its worker died"
                else:
                    error = f"failed before it started: {reason or 'no reason recorded'}"
            abandoned = AttemptStatus.ABANDONED if target == RunStatus.FAILED else None
            if not end_if(row.id, row.status, row.attempts, target, error=error, attempt_status=abandoned):
                continue
            release_slot(redis, row.job_name, row.id)
        elif row.status == RunStatus.STARTED.value:
            if not end_if(
                row.id,
                row.status,
                row.attempts,
                target,
                error="abandoned: its worker died; retrying",
                attempt_status=AttemptStatus.ABANDONED,
                next_retry_at=next_retry_time(redis, row.queue, row.id, target),
            ):
                continue
        else:
            continue
        log.warning("run %s reconciled: %s -> %s", row.id, row.status, target.value)
        changed += 1
    return changed
