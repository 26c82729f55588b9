"""The cleanup use case: delete what outlived its retention, in small transactions.

Alerts not seen for ALERT_RETENTION_DAYS; ended runs and recorded forecasts older than
HISTORY_RETENTION_DAYS. The `cleanup` job (workers/jobs.py) runs it inside the run tracking.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.config import Settings
from app.connections import database
from app.core import audit
from app.forecast import accuracy
from app.models import Alert, JobRun, OpsEvent, utcnow
from app.runs.status import TERMINAL_VALUES


def delete_in_batches(model: Any, condition: Any, batch_size: int) -> int:
    """Delete matching rows a batch per transaction, so writers never wait on one huge delete."""
    deleted = 0
    key = model._meta.primary_key
    while True:
        with database.atomic():  # one server-side statement a batch: no ids travel through Python
            batch: int = model.delete().where(key.in_(model.select(key).where(condition).limit(batch_size))).execute()
        if not batch:
            return deleted
        deleted += batch


def cleanup(settings: Settings) -> dict[str, Any]:
    """Delete expired alerts, runs, recorded forecasts, operational events and audit entries; what was deleted and the alerts' cutoff.

    Alert retention counts from `last_seen_at`, not `created_at`: an alert first raised long ago
    that a recent forecast saw again is still live (deleting it made the next forecast raise and
    notify it as new).
    """
    now = utcnow()
    alert_cutoff = now - timedelta(days=settings.alert_retention_days)
    run_cutoff = now - timedelta(days=settings.history_retention_days)
    deleted_alerts = delete_in_batches(Alert, Alert.last_seen_at < alert_cutoff, settings.cleanup_batch_size)
    deleted_runs = delete_in_batches(
        JobRun,
        (JobRun.enqueued_at < run_cutoff) & JobRun.status.in_(sorted(TERMINAL_VALUES)),
        settings.cleanup_batch_size,
    )
    # What past forecast runs predicted (scored for accuracy) lives as long as the run history.
    deleted_forecasts: int = accuracy.delete_before(run_cutoff, settings.cleanup_batch_size)
    # Operational events (and their webhook deliveries, deleted with them) live as long as the runs.
    deleted_events = delete_in_batches(OpsEvent, OpsEvent.created_at < run_cutoff, settings.cleanup_batch_size)
    audit_cutoff = now - timedelta(days=settings.audit_retention_days)
    deleted_audit: int = audit.delete_before(audit_cutoff, settings.cleanup_batch_size)
    return {
        "deleted_alerts": deleted_alerts,
        "deleted_runs": deleted_runs,
        "deleted_forecasts": deleted_forecasts,
        "deleted_audit_entries": deleted_audit,
        "deleted_ops_events": deleted_events,
        "alert_cutoff": alert_cutoff.isoformat() + "Z",
    }
