"""Use cases on the daily reports: write one (the `daily-summary` job), read them; one per UTC day.

The reports outlive Redis results and run history, so they are read from `daily_summaries`,
never from a run's result.
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import date, datetime, time, timedelta
from typing import Any

import peewee

from app import notify
from app.config import Settings
from app.connections import database
from app.core.errors import InvalidCursor, ReportMissing
from app.models import Alert, DailySummary, JobRun, utcnow

log = logging.getLogger(__name__)


def daily_report(day: date | None) -> DailySummary:
    """The report of `day`, or the latest one when None; `ReportMissing` when there is none."""
    select = DailySummary.select()
    if day is not None:
        summary = select.where(DailySummary.day == day).first()
    else:
        summary = select.order_by(DailySummary.day.desc()).first()
    if summary is None:
        raise ReportMissing(day.isoformat() if day is not None else None)
    found: DailySummary = summary
    return found


def list_reports(limit: int, cursor: str | None) -> tuple[list[DailySummary], str | None]:
    """Reports newest day first and the cursor of the next page (keyset on the unique day)."""
    select = DailySummary.select()
    if cursor:
        select = select.where(DailySummary.day < decode_cursor(cursor))
    rows = list(select.order_by(DailySummary.day.desc()).limit(limit + 1))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].day)
    return rows, next_cursor


def encode_cursor(day: date) -> str:
    return base64.urlsafe_b64encode(day.isoformat().encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> date:
    """The day after which the next page starts; anything else is `InvalidCursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if len(raw) != 10:
            raise ValueError
        return date.fromisoformat(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor() from None


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min)
    return start, start + timedelta(days=1)


def summarise_day(day: date) -> dict[str, Any]:
    """Alerts and runs of one UTC day, by type, severity and source / job and status."""
    start, end = _day_bounds(day)
    alerts = Alert.select().where((Alert.created_at >= start) & (Alert.created_at < end))
    by: dict[str, dict[str, int]] = {}
    for column in ("type", "severity", "source"):
        field = getattr(Alert, column)
        rows: Any = alerts.select(field, peewee.fn.COUNT(Alert._meta.primary_key)).group_by(field).tuples()
        by[column] = {key: count for key, count in rows}
    run_rows: Any = (
        JobRun.select(JobRun.job_name, JobRun.status, peewee.fn.COUNT(JobRun.id))
        .where((JobRun.enqueued_at >= start) & (JobRun.enqueued_at < end))
        .group_by(JobRun.job_name, JobRun.status)
        .tuples()
    )
    runs: dict[str, dict[str, int]] = {}
    for job_name, status, count in run_rows:
        runs.setdefault(job_name, {})[status] = count
    return {
        "date": day.isoformat(),
        "alerts": {
            "total": sum(by["severity"].values()),
            "by_type": by["type"],
            "by_severity": by["severity"],
            "by_source": by["source"],
        },
        "runs": runs,
    }


def report_day(run_id: str) -> date:
    """The UTC day before the run's slot (or enqueue time), so a retry after midnight reports the same day."""
    run = JobRun.get_or_none(JobRun.id == run_id)
    base: datetime = (run.slot or run.enqueued_at) if run is not None else utcnow()
    return base.date() - timedelta(days=1)


def generate_daily_report(run_id: str, settings: Settings) -> dict[str, Any]:
    """Report on the previous UTC day and post it; re-running the day replaces its stored report.

    The report is committed before the webhook is posted: a webhook failure raises (the run's
    retry policy applies), and the retry replaces the same day's report.
    """
    day = report_day(run_id)
    report = summarise_day(day)
    with database.atomic():
        DailySummary.delete().where(DailySummary.day == day).execute()
        DailySummary.create(day=day, report=report, job_id=run_id, created_at=utcnow())
    log.info("daily summary for %s: %d alerts", day, report["alerts"]["total"])
    try:
        delivered = notify.send_daily_report(settings, report, run_id)
    except notify.NotifyError as exc:
        _record_delivery(day, notify.delivery_state("failed", str(exc), job_id=run_id))
        raise
    _record_delivery(day, notify.delivery_state("delivered" if delivered else "not_configured", None, job_id=run_id))
    return {**report, "delivered": delivered}


def _record_delivery(day: date, delivery: dict[str, Any]) -> None:
    """The summary webhook's outcome on the day's report, shown with it (the dashboard's report card)."""
    DailySummary.update(delivery=delivery).where(DailySummary.day == day).execute()
