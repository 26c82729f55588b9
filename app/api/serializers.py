"""Model → JSON for the adapters: times as ISO 8601 UTC with `Z`.

A run's and an alert's JSON shape belong to the service layer's read use cases
(`app.core.listings`), which the API, the dashboard and the CLI all show; they are re-exported
here beside the report's shape so an adapter has one place to import them from.
"""

from __future__ import annotations

from app.core.listings import ALERT_COLUMNS, RUN_COLUMNS, alert_json, alert_row_json, run_json, run_row_json
from app.models import DailySummary, iso

__all__ = [
    "ALERT_COLUMNS",
    "RUN_COLUMNS",
    "alert_json",
    "alert_row_json",
    "iso",
    "report_json",
    "run_json",
    "run_row_json",
]


def report_json(summary: DailySummary) -> dict:
    return {
        "kind": "daily",
        "date": summary.day.isoformat(),
        "job_id": summary.job_id,
        "created_at": iso(summary.created_at),
        "report": summary.report,
    }
