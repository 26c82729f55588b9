"""Model → JSON for the adapters: times as ISO 8601 UTC with `Z`.

A run's and an alert's JSON shape belong to the service layer's read use cases
(`app.core.listings`), which the API, the dashboard and the CLI all show; they are re-exported
here beside the report's and the attempts' shapes so an adapter has one place to import them from.
"""

from __future__ import annotations

from app.core.listings import ALERT_COLUMNS, RUN_COLUMNS, alert_json, alert_row_json, run_json, run_row_json
from app.models import DailySummary, JobRun, RunAttempt, iso

__all__ = [
    "ALERT_COLUMNS",
    "RUN_COLUMNS",
    "alert_json",
    "alert_row_json",
    "attempt_json",
    "iso",
    "report_json",
    "run_attempts_json",
    "run_json",
    "run_row_json",
]


def attempt_json(attempt: RunAttempt) -> dict:
    """One attempt of a run, with its whole traceback."""
    return {
        "number": attempt.number,
        "status": attempt.status,
        "worker": attempt.worker,
        "started_at": iso(attempt.started_at),
        "ended_at": iso(attempt.ended_at),
        "error": attempt.error,
        "traceback": attempt.traceback,
        "next_retry_at": iso(attempt.next_retry_at),
    }


def run_attempts_json(run: JobRun, attempts: list[RunAttempt], retried_by: list[str]) -> dict:
    """A run with every attempt (oldest first) and its retry links (`retried_by` newest first)."""
    return {**run_json(run), "attempts_detail": [attempt_json(a) for a in attempts], "retried_by": retried_by}


def report_json(summary: DailySummary) -> dict:
    return {
        "kind": "daily",
        "date": summary.day.isoformat(),
        "job_id": summary.job_id,
        "created_at": iso(summary.created_at),
        "report": summary.report,
        "delivery": summary.delivery,
    }
