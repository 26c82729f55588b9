"""Model → JSON: times as ISO 8601 UTC with `Z`.

The listings read plain tuples (`RUN_COLUMNS`, `ALERT_COLUMNS`, converted by peewee's fields,
so SQLite and PostgreSQL give the same values) instead of model instances: building 50 model
objects per page was most of a history or alerts request. `run_json`/`alert_json` (a model
instance, for the dashboard and the CLI) go through the same row functions.
"""

from __future__ import annotations

from app.models import Alert, DailySummary, JobRun, RunAttempt, iso

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


def run_row_json(row: tuple) -> dict:
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


def alert_row_json(row: tuple) -> dict:
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


def run_json(run: JobRun) -> dict:
    return run_row_json(tuple(getattr(run, column.name) for column in RUN_COLUMNS))


def alert_json(alert: Alert) -> dict:
    return alert_row_json(tuple(getattr(alert, column.name) for column in ALERT_COLUMNS))


def report_json(summary: DailySummary) -> dict:
    return {
        "kind": "daily",
        "date": summary.day.isoformat(),
        "job_id": summary.job_id,
        "created_at": iso(summary.created_at),
        "report": summary.report,
        "delivery": summary.delivery,
    }
