"""A run's states, how RQ's job states map onto them, and the run lifecycle's exceptions.

Kept apart from the code that writes rows and locks, so that readers (listings, stats, the
dashboard) can name a status without importing Redis or RQ machinery.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from rq.job import JobStatus

if TYPE_CHECKING:
    from app.models import JobRun


class RunStatus(str, enum.Enum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"  # waiting for a retry
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"
    STOPPED = "stopped"
    SKIPPED = "skipped"


class AttemptStatus(str, enum.Enum):
    """How one attempt of a run ended (`run_attempts.status`); `started` while it runs."""

    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"  # raised, or hit its time limit (RQ may retry the run: `next_retry_at`)
    STOPPED = "stopped"  # stopped by request
    CANCELED = "canceled"  # the run was canceled while no worker executed this attempt
    ABANDONED = "abandoned"  # its worker died (or a newer attempt took the run)
    INTERRUPTED = "interrupted"  # its worker shut down (SIGTERM): the run was requeued


TERMINAL = {RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.STOPPED, RunStatus.SKIPPED}
TERMINAL_VALUES = {s.value for s in TERMINAL}
# A run in one of these states never executes again: every ended run. A failed or stopped run
# is run again only as a new run linked to it (`retry_of`, app.core.jobs.retry), so nothing
# (rq-dashboard's or `rq requeue` of its RQ job included) turns a recorded failure into a success.
NOT_STARTABLE_VALUES = {
    RunStatus.CANCELED.value,
    RunStatus.SKIPPED.value,
    RunStatus.FINISHED.value,
    RunStatus.FAILED.value,
    RunStatus.STOPPED.value,
}
# The ended runs an operator may retry (a new run, trigger `retry`): every unsuccessful ending.
RETRYABLE_VALUES = {
    RunStatus.FAILED.value,
    RunStatus.STOPPED.value,
    RunStatus.CANCELED.value,
    RunStatus.SKIPPED.value,
}
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
