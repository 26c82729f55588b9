"""Read use cases: one run's status, a job's run history and the alerts, newest first, keyset-paged.

Written once for the API, the dashboard and the operator CLI (same filters, same pages, same
JSON shapes). The filters arrive as any object with the named attributes (the API's validated
query models, or `RunFilter` / `AlertFilter`); refusals are domain errors (`RunMissing`,
`InvalidCursor`, `ValueOutOfRange`), never HTTP ones.

The pages read plain tuples (`RUN_COLUMNS`, `ALERT_COLUMNS`, converted by peewee's fields, so
SQLite and PostgreSQL give the same values) instead of model instances: building 50 model
objects per page was most of a history or alerts request. `run_json` / `alert_json` (a model
instance, for the dashboard and the CLI) go through the same row functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import peewee

from app.core.errors import RunMissing
from app.core.pagination import fetch_rows, keyset_page
from app.models import Alert, JobRun, iso

# Column order of the tuples `run_row_json` reads; enqueued_at and id stay first (the cursor's).
RUN_COLUMNS = (
    JobRun.enqueued_at,
    JobRun.id,
    JobRun.job_name,
    JobRun.status,
    JobRun.trigger,
    JobRun.queue,
    JobRun.result,
    JobRun.error,
    JobRun.started_at,
    JobRun.ended_at,
    JobRun.attempts,
    JobRun.slot,
    JobRun.retry_of,
)

# Column order of the tuples `alert_row_json` reads; created_at and id stay first (the cursor's).
ALERT_COLUMNS = (
    Alert.created_at,
    Alert.id,
    Alert.type,
    Alert.severity,
    Alert.title,
    Alert.message,
    Alert.source,
    Alert.job_id,
    Alert.subject,
    Alert.figures,
    Alert.occurrences,
    Alert.resolved,
    Alert.last_seen_at,
    Alert.state,
    Alert.last_job_id,
    Alert.acknowledged_at,
    Alert.acknowledged_by,
    Alert.resolved_at,
    Alert.resolved_by,
    Alert.comment,
    Alert.notification,
)


class PageFilter(Protocol):
    @property
    def limit(self) -> int: ...

    @property
    def cursor(self) -> str | None: ...


class HistoryFilter(PageFilter, Protocol):
    @property
    def status(self) -> str | None: ...

    @property
    def trigger(self) -> str | None: ...


class AlertsFilter(PageFilter, Protocol):
    @property
    def source(self) -> str | None: ...

    @property
    def severity(self) -> str | None: ...

    @property
    def type(self) -> str | None: ...

    @property
    def state(self) -> str | None: ...

    @property
    def since(self) -> datetime | None: ...


@dataclass(frozen=True)
class RunFilter:
    """A history page's filters, for callers without the API's query model."""

    limit: int = 50
    cursor: str | None = None
    status: str | None = None
    trigger: str | None = None


@dataclass(frozen=True)
class AlertFilter:
    """An alerts page's filters (`since`: naive UTC), for callers without the API's query model."""

    limit: int = 50
    cursor: str | None = None
    source: str | None = None
    severity: str | None = None
    type: str | None = None
    state: str | None = None
    since: datetime | None = None


def run_row_json(row: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
    (
        enqueued_at,
        run_id,
        job_name,
        status,
        trigger,
        queue,
        result,
        error,
        started_at,
        ended_at,
        attempts,
        slot,
        retry_of,
    ) = row
    return {
        "job_id": run_id,
        "job_name": job_name,
        "status": status,
        "trigger": trigger,
        "queue": queue,
        "result": result,
        "error": error,
        "enqueued_at": iso(enqueued_at),
        "started_at": iso(started_at),
        "ended_at": iso(ended_at),
        "attempts": attempts,
        "slot": iso(slot),
        "retry_of": retry_of,
    }


def alert_row_json(row: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
    (
        created_at,
        alert_id,
        type_,
        severity,
        title,
        message,
        source,
        job_id,
        subject,
        figures,
        occurrences,
        resolved,
        last_seen_at,
        state,
        last_job_id,
        acknowledged_at,
        acknowledged_by,
        resolved_at,
        resolved_by,
        comment,
        notification,
    ) = row
    return {
        "id": alert_id,
        "type": type_,
        "severity": severity,
        "title": title,
        "message": message,
        "source": source,
        "job_id": job_id,
        "subject": subject,
        "figures": figures,
        "occurrences": occurrences,
        "resolved": resolved,
        "created_at": iso(created_at),
        "last_seen_at": iso(last_seen_at),
        "state": state,
        "last_job_id": last_job_id,
        "acknowledged_at": iso(acknowledged_at),
        "acknowledged_by": acknowledged_by,
        "resolved_at": iso(resolved_at),
        "resolved_by": resolved_by,
        "comment": comment,
        "notification": notification,
    }


def run_json(run: JobRun) -> dict[str, Any]:
    return run_row_json(tuple(getattr(run, column.name) for column in RUN_COLUMNS))


def alert_json(alert: Alert) -> dict[str, Any]:
    return alert_row_json(tuple(getattr(alert, column.name) for column in ALERT_COLUMNS))


def run_status(job_name: str, run_id: str) -> dict[str, Any]:
    """One run of `job_name` as the API shows it (`run_json`'s shape), or `RunMissing`."""
    rows = fetch_rows(RUN_COLUMNS, [(JobRun.id, "=", run_id), (JobRun.job_name, "=", job_name)], 1)
    if not rows:
        raise RunMissing(run_id, job_name)
    return run_row_json(rows[0])


def history_page(job_name: str, query: HistoryFilter) -> dict[str, Any]:
    """A page of `job_name`'s runs, newest first: {"runs": [...], "next_cursor": str | None}."""
    conditions: list[tuple[peewee.Field, str, object]] = [(JobRun.job_name, "=", job_name)]
    if query.status:
        conditions.append((JobRun.status, "=", query.status))
    if query.trigger:
        conditions.append((JobRun.trigger, "=", query.trigger))
    rows, next_cursor = keyset_page(RUN_COLUMNS, conditions, query.cursor, query.limit, str)
    return {"runs": [run_row_json(r) for r in rows], "next_cursor": next_cursor}


def alerts_page(query: AlertsFilter) -> dict[str, Any]:
    """A page of alerts, newest first: {"alerts": [...], "next_cursor": str | None}."""
    conditions: list[tuple[peewee.Field, str, object]] = [
        (field, "=", value)
        for field, value in (
            (Alert.source, query.source),
            (Alert.severity, query.severity),
            (Alert.type, query.type),
            (Alert.state, query.state),
        )
        if value
    ]
    if query.since:
        conditions.append((Alert.created_at, ">=", query.since))
    rows, next_cursor = keyset_page(ALERT_COLUMNS, conditions, query.cursor, query.limit, int)
    return {"alerts": [alert_row_json(a) for a in rows], "next_cursor": next_cursor}
