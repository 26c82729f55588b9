"""Starting runs: record a run of a catalogue job and put it on its queue, or record a skipped slot.

A run's id is its RQ job id and its `job_runs` row's id; RQ's retries keep it (attempts of
the same run). An operator's retry of an ended run is a new run (trigger `retry`) whose
`retry_of` names the run it retries. The row is written before the job reaches Redis, so a
worker never runs a job without a row; the overlap lock (`lock`) is taken first, pending, and
confirmed once the job is queued.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from redis import Redis
from rq import Queue, Retry
from rq.job import Dependency

from app.config import Settings
from app.connections import db_session
from app.core.catalog import JobSpec, get_job
from app.models import utcnow
from app.runs.lifecycle import create_row, end_if
from app.runs.lock import confirm_slot, release_slot, take_slot
from app.runs.status import RunConflict, RunStatus

log = logging.getLogger(__name__)


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


def enqueue_run(
    job_name: str,
    *,
    redis: Redis,
    settings: Settings,
    trigger: str = "manual",
    force: bool = False,
    slot: datetime | None = None,
    retry_of: str | None = None,
) -> EnqueueOutcome:
    """Record and enqueue a run; a scheduled firing that finds one active is recorded as skipped.

    The row is written before the job reaches Redis, so a worker never runs a job without a
    row; if the enqueue fails the row is marked failed and the lock released. A retry
    (`retry_of`) keeps the slot of the run it retries (what a job such as the daily summary
    works on) under an id of its own.
    """
    spec = get_job(job_name)
    run_id = new_run_id(spec, slot if trigger == "scheduled" else None)
    try:
        waits_for = take_slot(redis, spec.name, run_id, force=force and trigger != "scheduled")
    except RunConflict as conflict:
        if trigger != "scheduled":
            raise
        record_skipped_slot(job_name, slot, f"skipped: run {conflict.active_id} still queued or running")
        return EnqueueOutcome(run_id, RunStatus.SKIPPED, waits_for=conflict.active_id)

    try:
        with db_session():
            _create_row(run_id, spec, trigger, slot, RunStatus.QUEUED, retry_of=retry_of)
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
            meta={"job_name": spec.name, "trigger": trigger, **({"retry_of": retry_of} if retry_of else {})},
        )
        confirm_slot(redis, spec.name, run_id)
    except BaseException as exc:
        log.error("enqueue of %s run %s failed: %s", job_name, run_id, type(exc).__name__)
        try:
            with db_session():  # unless a worker took it (the job reached Redis after all)
                end_if(
                    run_id,
                    RunStatus.QUEUED.value,
                    0,
                    RunStatus.FAILED,
                    error=f"could not enqueue: {type(exc).__name__}",
                )
        finally:
            try:
                release_slot(redis, spec.name, run_id)
            except Exception:  # Redis is what failed; the lock frees itself (pending TTL)
                pass
        raise
    log.info(
        "%s run %s queued (%s)%s%s",
        job_name,
        run_id,
        trigger,
        f" retrying {retry_of}" if retry_of else "",
        f" after {waits_for}" if waits_for else "",
        extra={"job_id": run_id, "job_name": job_name},
    )
    return EnqueueOutcome(run_id, RunStatus.QUEUED, waits_for=waits_for)


def record_skipped_slot(job_name: str, slot: datetime, reason: str) -> str:
    """Record a schedule slot that did not run (a run was active, or it was missed in an outage)."""
    spec = get_job(job_name)
    run_id = new_run_id(spec, slot)
    with db_session():
        _create_row(run_id, spec, "scheduled", slot, RunStatus.SKIPPED, ended_at=utcnow(), error=reason)
    log.info("%s slot %s %s", job_name, slot, reason, extra={"job_id": run_id, "job_name": job_name})
    return run_id


def _create_row(
    run_id: str,
    spec: JobSpec,
    trigger: str,
    slot: datetime | None,
    status: RunStatus,
    ended_at: datetime | None = None,
    error: str | None = None,
    retry_of: str | None = None,
):
    return create_row(
        run_id, spec.name, spec.queue, trigger, slot, status, ended_at=ended_at, error=error, retry_of=retry_of
    )
