"""Model → JSON: times as ISO 8601 UTC with `Z`."""
from __future__ import annotations

from datetime import datetime

from app.models import Alert, JobRun


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat() + "Z"


def run_json(run: JobRun) -> dict:
    return {
        "job_id": run.id,
        "job_name": run.job_name,
        "status": run.status,
        "trigger": run.trigger,
        "queue": run.queue,
        "result": run.result,
        "error": run.error,
        "enqueued_at": iso(run.enqueued_at),
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "attempts": run.attempts,
        "slot": iso(run.slot),
    }


def alert_json(alert: Alert) -> dict:
    return {
        "id": alert.id,
        "type": alert.type,
        "severity": alert.severity,
        "title": alert.title,
        "message": alert.message,
        "source": alert.source,
        "job_id": alert.job_id,
        "subject": alert.subject,
        "figures": alert.figures,
        "occurrences": alert.occurrences,
        "resolved": alert.resolved,
        "created_at": iso(alert.created_at),
        "last_seen_at": iso(alert.last_seen_at),
    }
