"""Run status, history and alert listings, shared by the API and the operator CLI (same filters, same pages)."""

from __future__ import annotations

from app.api.schemas import AlertQuery, HistoryQuery
from app.api.serializers import ALERT_COLUMNS, RUN_COLUMNS, alert_row_json, run_row_json
from app.models import Alert, JobRun
from app.pagination import fetch_rows, keyset_page


def run_status(job_name: str, run_id: str) -> dict | None:
    """The API's view of one run (what `runs.get_run` + `run_json` give), None if there is none."""
    rows = fetch_rows(RUN_COLUMNS, [(JobRun.id, "=", run_id), (JobRun.job_name, "=", job_name)], 1)
    return run_row_json(rows[0]) if rows else None


def history_page(job_name: str, query: HistoryQuery) -> dict:
    conditions = [(JobRun.job_name, "=", job_name)]
    if query.status:
        conditions.append((JobRun.status, "=", query.status))
    if query.trigger:
        conditions.append((JobRun.trigger, "=", query.trigger))
    rows, next_cursor = keyset_page(RUN_COLUMNS, conditions, query.cursor, query.limit, str)
    return {"runs": [run_row_json(r) for r in rows], "next_cursor": next_cursor}


def alerts_page(query: AlertQuery) -> dict:
    conditions = [
        (getattr(Alert, column), "=", getattr(query, column))
        for column in ("source", "severity", "type", "state")
        if getattr(query, column)
    ]
    if query.since:
        conditions.append((Alert.created_at, ">=", query.since))
    rows, next_cursor = keyset_page(ALERT_COLUMNS, conditions, query.cursor, query.limit, int)
    return {"alerts": [alert_row_json(a) for a in rows], "next_cursor": next_cursor}
