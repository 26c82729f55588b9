"""The run lifecycle: enqueue, take, fence, end, cancel and reconcile runs of catalogue jobs.

This package owns the lifecycle's Redis protocol (`keys`: every key and Lua script, once) and
its rows. Its modules import only downward, never this facade:

    keys, status  <-  lifecycle  <-  lock  <-  tracking  <-  fanout  <-  cancel
                                          ^-  enqueue, reconcile

The names below are the package's interface for the service layer, the scheduler and the
worker; code inside the package imports the module that defines a name.
"""

from __future__ import annotations

from app.runs.cancel import cancel_run
from app.runs.enqueue import EnqueueOutcome, _create_row, enqueue_run, new_run_id, record_skipped_slot
from app.runs.keys import ACTIVE_KEY, ATTEMPT_KEY, ATTEMPT_KEY_TTL, PENDING_TTL, STOP_KEY
from app.runs.lifecycle import (
    check_attempt,
    end_attempt,
    end_if,
    get_run,
    mark_ended,
    mark_started,
    report_attempt,
    reported_attempt,
    stop_requested,
    taken_attempt,
)
from app.runs.lock import (
    DELETED_REASON,
    VANISHED_GRACE_SECONDS,
    active_run_id,
    cancel_vanished,
    job_vanished,
    release_slot,
    take_slot,
)
from app.runs.reconcile import exception_summary, reconcile, record_failure
from app.runs.status import (
    FROM_RQ,
    NOT_STARTABLE_VALUES,
    RQ_ENDED,
    TERMINAL,
    TERMINAL_VALUES,
    WAITING_VALUES,
    AttemptStatus,
    RunAlreadyEnded,
    RunConflict,
    RunNotFound,
    RunNotStartable,
    RunStatus,
    StaleAttempt,
)
from app.runs.tracking import end_stopped_attempt

__all__ = [
    "ACTIVE_KEY",
    "ATTEMPT_KEY",
    "ATTEMPT_KEY_TTL",
    "DELETED_REASON",
    "FROM_RQ",
    "NOT_STARTABLE_VALUES",
    "PENDING_TTL",
    "RQ_ENDED",
    "STOP_KEY",
    "TERMINAL",
    "TERMINAL_VALUES",
    "VANISHED_GRACE_SECONDS",
    "WAITING_VALUES",
    "AttemptStatus",
    "EnqueueOutcome",
    "RunAlreadyEnded",
    "RunConflict",
    "RunNotFound",
    "RunNotStartable",
    "RunStatus",
    "StaleAttempt",
    "_create_row",
    "active_run_id",
    "cancel_run",
    "cancel_vanished",
    "check_attempt",
    "end_attempt",
    "end_if",
    "end_stopped_attempt",
    "enqueue_run",
    "exception_summary",
    "get_run",
    "job_vanished",
    "mark_ended",
    "mark_started",
    "new_run_id",
    "reconcile",
    "record_failure",
    "record_skipped_slot",
    "release_slot",
    "report_attempt",
    "reported_attempt",
    "stop_requested",
    "taken_attempt",
    "take_slot",
]
