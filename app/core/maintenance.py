"""The cleanup use case: delete what outlived its retention, in small transactions.

Alerts not seen for ALERT_RETENTION_DAYS; ended runs and recorded forecasts older than
HISTORY_RETENTION_DAYS. The `cleanup` job (workers/jobs.py) runs it inside the run tracking.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from peewee import SQL, Select, fn

from app.config import Settings
from app.connections import database, is_postgres
from app.core import audit
from app.forecast import accuracy
from app.models import Alert, AlertOccurrence, JobRun, OpsEvent, utcnow
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


def delete_expired_alerts(cutoff: datetime, batch_size: int) -> tuple[int, int]:
    """Delete alerts last seen before `cutoff` with their sightings, a batch per transaction; how many of each.

    The sightings have no foreign key (migration 0010: its cascade trigger ran once per alert),
    so each batch deletes them itself, in the batch's transaction. The expiry is checked again
    on the row deleted: a forecast that saw an alert again meanwhile keeps it, sightings and all.
    A batch takes the oldest expired alerts by the `last_seen_at` index: a scan in table order
    re-read every row deleted before it, slower with each batch. On PostgreSQL one statement
    does a batch (the alerts' DELETE ... RETURNING feeds the sightings'); the ids go as arrays,
    `id = ANY(ARRAY(...))`, so each index is swept once in key order (as `IN (subquery)` the
    planner hashed the whole alerts table, and probed the sightings' index in hash order: 116k
    against 208k alerts/s for 5M expired, each with a sighting). SQLite has one writer at a
    time, so its two statements see the same alerts.
    """
    expired = Alert.last_seen_at < cutoff
    oldest = Alert.select(Alert.id).where(expired).order_by(Alert.last_seen_at).limit(batch_size)
    alerts = sightings = 0
    while True:
        with database.atomic():
            if is_postgres():
                gone = Alert.delete().where((Alert.id == fn.ANY(fn.ARRAY(oldest))) & expired).returning(Alert.id)
                gone_cte = gone.cte("gone")
                gone_ids = fn.ARRAY(gone_cte.select(gone_cte.c.id))
                seen = AlertOccurrence.delete().where(AlertOccurrence.alert == fn.ANY(gone_ids))
                seen_cte = seen.returning(AlertOccurrence.id).cte("gone_sightings")
                counts = Select(
                    columns=[
                        gone_cte.select(fn.COUNT(SQL("*"))).from_(gone_cte),
                        seen_cte.select(fn.COUNT(SQL("*"))).from_(seen_cte),
                    ]
                ).with_cte(gone_cte, seen_cte)
                batch, batch_sightings = database.execute(counts).fetchone()
            else:
                batch_sightings = AlertOccurrence.delete().where(AlertOccurrence.alert.in_(oldest)).execute()
                batch = Alert.delete().where(Alert.id.in_(oldest)).execute()
        if not batch:
            return alerts, sightings
        alerts += batch
        sightings += batch_sightings


def cleanup(settings: Settings) -> dict[str, Any]:
    """Delete expired alerts (with their sightings), runs, recorded forecasts, operational events and audit entries; what was deleted and the alerts' cutoff.

    Alert retention counts from `last_seen_at`, not `created_at`: an alert first raised long ago
    that a recent forecast saw again is still live (deleting it made the next forecast raise and
    notify it as new).
    """
    now = utcnow()
    alert_cutoff = now - timedelta(days=settings.alert_retention_days)
    run_cutoff = now - timedelta(days=settings.history_retention_days)
    deleted_alerts, deleted_sightings = delete_expired_alerts(alert_cutoff, settings.cleanup_batch_size)
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
        "deleted_sightings": deleted_sightings,
        "deleted_runs": deleted_runs,
        "deleted_forecasts": deleted_forecasts,
        "deleted_audit_entries": deleted_audit,
        "deleted_ops_events": deleted_events,
        "alert_cutoff": alert_cutoff.isoformat() + "Z",
    }
