"""The job functions RQ runs (enqueued by dotted path from the catalogue)."""

from __future__ import annotations

import importlib
import logging
from datetime import date, datetime, time, timedelta

import peewee

from app import notify
from app.alert_store import store_alerts
from app.config import Settings
from app.connections import database
from app.core import audit
from app.forecast import accuracy
from app.models import Alert, DailySummary, JobRun, utcnow
from app.runs.status import TERMINAL_VALUES
from app.runs.tracking import tracked

log = logging.getLogger(__name__)


class PipelineNotFound(ImportError):
    """FORECAST_PIPELINE does not name an importable `module:function`."""


def load_pipeline(path: str):
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise PipelineNotFound(f"FORECAST_PIPELINE={path!r} is not an importable module:function") from exc


@tracked("forecast")
def run_scheduled_forecast(job_id: str, settings: Settings) -> dict:
    """Run the configured pipeline and store its alerts (refreshing open ones).

    The built-in pipeline runs in `workers.forecast_chunks`: a large run is fanned out over
    the workers and finished by its gather job (this job then returns at once).
    """
    from rq import get_current_job

    from app.runs import lifecycle
    from workers import forecast_chunks

    if settings.forecast_pipeline == forecast_chunks.BUILTIN:
        return forecast_chunks.run_forecast(job_id, settings, get_current_job())
    pipeline = load_pipeline(settings.forecast_pipeline)
    log.info("running forecast pipeline %s", settings.forecast_pipeline)
    candidates = pipeline(settings)
    with database.atomic():
        attempt = lifecycle.taken_attempt(job_id)
        if attempt is not None:
            lifecycle.check_attempt(job_id, attempt)  # a replaced attempt stores nothing
        outcome = store_alerts(candidates, job_id=job_id)
    # Committed first: a webhook that fails or hangs cannot lose or hold up the alerts.
    notify.notify_high_alerts(settings, outcome.created)
    return {
        "status": "completed",
        "alerts_generated": outcome.new + outcome.updated,
        "new_alerts": outcome.new,
        "updated_alerts": outcome.updated,
        "summary": {f"{sev}_severity": n for sev, n in outcome.by_severity.items()},
    }


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min)
    return start, start + timedelta(days=1)


def summarise_day(day: date) -> dict:
    """Alerts and runs of one UTC day, by type, severity and source / job and status."""
    start, end = _day_bounds(day)
    alerts = Alert.select().where((Alert.created_at >= start) & (Alert.created_at < end))
    by = {}
    for column in ("type", "severity", "source"):
        field = getattr(Alert, column)
        rows = alerts.select(field, peewee.fn.COUNT(Alert.id)).group_by(field).tuples()
        by[column] = {key: count for key, count in rows}
    run_rows = (
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


def _report_day(job_id: str) -> date:
    """The UTC day before the run's slot (or enqueue time), so a retry after midnight reports the same day."""
    run = JobRun.get_or_none(JobRun.id == job_id)
    base = (run.slot or run.enqueued_at) if run is not None else utcnow()
    return base.date() - timedelta(days=1)


@tracked("daily-summary")
def generate_daily_summary(job_id: str, settings: Settings) -> dict:
    """Report on the previous UTC day; re-running the day replaces its stored report.

    The report is committed before the webhook is posted: a webhook failure raises, so RQ
    retries the run with its policy, and the retry replaces the same day's report.
    """
    day = _report_day(job_id)
    report = summarise_day(day)
    with database.atomic():
        DailySummary.delete().where(DailySummary.day == day).execute()
        DailySummary.create(day=day, report=report, job_id=job_id, created_at=utcnow())
    log.info("daily summary for %s: %d alerts", day, report["alerts"]["total"])
    delivered = notify.send_daily_report(settings, report, job_id)
    return {"status": "completed", **report, "delivered": delivered}


def _delete_in_batches(model, condition, batch_size: int) -> int:
    """Delete matching rows a batch per transaction, so writers never wait on one huge delete."""
    deleted = 0
    key = model._meta.primary_key
    while True:
        with database.atomic():  # one server-side statement a batch: no ids travel through Python
            batch = model.delete().where(key.in_(model.select(key).where(condition).limit(batch_size))).execute()
        if not batch:
            return deleted
        deleted += batch


@tracked("cleanup")
def cleanup_old_alerts(job_id: str, settings: Settings) -> dict:
    """Delete alerts not seen for ALERT_RETENTION_DAYS; ended runs and recorded forecasts older than
    HISTORY_RETENTION_DAYS; audit entries older than AUDIT_RETENTION_DAYS.

    Alert retention counts from `last_seen_at`, not `created_at`: an alert first raised long ago
    that a recent forecast saw again is still live (deleting it made the next forecast raise and
    notify it as new).
    """
    now = utcnow()
    alert_cutoff = now - timedelta(days=settings.alert_retention_days)
    run_cutoff = now - timedelta(days=settings.history_retention_days)
    deleted_alerts = _delete_in_batches(Alert, Alert.last_seen_at < alert_cutoff, settings.cleanup_batch_size)
    deleted_runs = _delete_in_batches(
        JobRun,
        (JobRun.enqueued_at < run_cutoff) & JobRun.status.in_(sorted(TERMINAL_VALUES)),
        settings.cleanup_batch_size,
    )
    # What past forecast runs predicted (scored for accuracy) lives as long as the run history.
    deleted_forecasts = accuracy.delete_before(run_cutoff, settings.cleanup_batch_size)
    audit_cutoff = now - timedelta(days=settings.audit_retention_days)
    deleted_audit = audit.delete_before(audit_cutoff, settings.cleanup_batch_size)
    log.info(
        "cleanup deleted %d alerts, %d runs, %d recorded forecasts and %d audit entries",
        deleted_alerts,
        deleted_runs,
        deleted_forecasts,
        deleted_audit,
    )
    return {
        "status": "completed",
        "deleted_alerts": deleted_alerts,
        "deleted_runs": deleted_runs,
        "deleted_forecasts": deleted_forecasts,
        "deleted_audit_entries": deleted_audit,
        "alert_cutoff": alert_cutoff.isoformat() + "Z",
    }
