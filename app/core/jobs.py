"""Use cases on a job's runs: name a job, trigger, look up, cancel or stop, list.

Written once for the API, the dashboard and the CLI, which differ only in how they answer;
refusals are domain exceptions (`app.core.errors`), mapped by each adapter's own table.
"""

from __future__ import annotations

import enum
import re

from redis import Redis

from app import runs
from app.config import Settings
from app.connections import db_session
from app.core.catalog import JOBS, UnknownJob, get_job
from app.core.errors import InvalidRunId, RunActive, RunEnded, RunMissing, UnknownJobName
from app.models import JobRun

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
