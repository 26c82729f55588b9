"""Run history and alert listings, shared by the API and the operator CLI (same filters, same pages)."""
from __future__ import annotations

from app.api.schemas import AlertQuery, HistoryQuery
from app.api.serializers import alert_json, run_json
from app.models import Alert, JobRun
from app.pagination import keyset_page


def history_page(job_name: str, query: HistoryQuery) -> dict:
    select = JobRun.select().where(JobRun.job_name == job_name)
    if query.status:
        select = select.where(JobRun.status == query.status)
    if query.trigger:
        select = select.where(JobRun.trigger == query.trigger)
    rows, next_cursor = keyset_page(select, JobRun.enqueued_at, JobRun.id, query.cursor, query.limit, str)
    return {"runs": [run_json(r) for r in rows], "next_cursor": next_cursor}


def alerts_page(query: AlertQuery) -> dict:
    select = Alert.select()
    for column in ("source", "severity", "type"):
        value = getattr(query, column)
        if value:
            select = select.where(getattr(Alert, column) == value)
    if query.since:
        select = select.where(Alert.created_at >= query.since)
    rows, next_cursor = keyset_page(select, Alert.created_at, Alert.id, query.cursor, query.limit, int)
    return {"alerts": [alert_json(a) for a in rows], "next_cursor": next_cursor}
