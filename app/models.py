"""peewee models. Times are naive UTC datetimes; the API renders them as ISO 8601 with `Z`."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import peewee

from app.connections import database


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    """A stored time as ISO 8601 UTC with `Z` (stored times are naive UTC)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat() + "Z"


class JSONField(peewee.TextField):
    """JSON stored as text, so one schema serves SQLite and PostgreSQL."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, sort_keys=True, default=str)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class ProductionLine(BaseModel):
    code = peewee.CharField(max_length=64, unique=True)
    name = peewee.CharField(max_length=200)
    daily_capacity = peewee.FloatField()

    class Meta:
        table_name = "production_lines"


class DemandHistory(BaseModel):
    """One day's demand of one item made on one line."""

    item = peewee.CharField(max_length=64)
    line = peewee.ForeignKeyField(ProductionLine, backref="demand", on_delete="CASCADE")
    day = peewee.DateField()
    quantity = peewee.FloatField()

    class Meta:
        table_name = "demand_history"
        indexes = ((("item", "line", "day"), True),)


class Alert(BaseModel):
    id = peewee.AutoField()
    type = peewee.CharField(max_length=40)
    severity = peewee.CharField(max_length=10)
    title = peewee.CharField(max_length=200)
    message = peewee.TextField()
    source = peewee.CharField(max_length=40, default="scheduled_job")
    job_id = peewee.CharField(max_length=64, null=True)
    subject = peewee.CharField(max_length=200)
    figures = JSONField(default=dict)
    fingerprint = peewee.CharField(max_length=300, index=True)
    occurrences = peewee.IntegerField(default=1)
    resolved = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=utcnow)
    # Retention counts from here (an open alert seen again stays); indexed for the cleanup's batches.
    last_seen_at = peewee.DateTimeField(default=utcnow, index=True)
    last_job_id = peewee.CharField(max_length=64, null=True)  # the latest run that saw it (migration 0009)
    # An operator's work on it (migration 0009): acknowledged = someone is on it; resolved = closed,
    # so the next sighting of the condition opens (and notifies) a new alert.
    state = peewee.CharField(max_length=12, default="open")  # open | acknowledged | resolved (app.core.alerts)
    acknowledged_at = peewee.DateTimeField(null=True)
    acknowledged_by = peewee.CharField(max_length=120, null=True)
    resolved_at = peewee.DateTimeField(null=True)
    resolved_by = peewee.CharField(max_length=120, null=True)
    comment = peewee.TextField(null=True)
    # The alert webhook's delivery of this alert: {"state", "at", "error"} (app/notify.py).
    notification = JSONField(null=True)

    class Meta:
        table_name = "alerts"
        indexes = (
            (("created_at", "id"), False),
            (("source", "created_at", "id"), False),
            (("severity", "created_at", "id"), False),
            (("type", "created_at", "id"), False),
            (("state", "created_at", "id"), False),
        )


# One open alert per fingerprint (migration 0003): overlapping stores cannot both insert one.
OPEN_ALERT_INDEX = "alerts_open_fingerprint"
Alert.add_index(
    Alert.index(Alert.fingerprint, unique=True, where=peewee.SQL('"resolved" = false'), name=OPEN_ALERT_INDEX)
)


class AlertOccurrence(BaseModel):
    """One sighting of an alert's condition by a run (migration 0009): which runs saw it, when, how bad.

    `alert` is the alert's id, without a foreign key (migration 0010): PostgreSQL ran the key's
    cascade trigger once per deleted alert, a third of the cleanup's speed. The cleanup deletes
    an alert's sightings with it (`app.core.maintenance`)."""

    id = peewee.AutoField()
    alert = peewee.IntegerField(column_name="alert_id")
    job_id = peewee.CharField(max_length=64, null=True)
    seen_at = peewee.DateTimeField(default=utcnow)
    severity = peewee.CharField(max_length=10)

    class Meta:
        table_name = "alert_occurrences"
        indexes = ((("alert", "seen_at"), False),)


class JobRun(BaseModel):
    """One run of a job; its id is the RQ job id (retries keep it)."""

    id = peewee.CharField(max_length=64, primary_key=True)
    job_name = peewee.CharField(max_length=40)
    queue = peewee.CharField(max_length=40)
    trigger = peewee.CharField(max_length=10)  # scheduled | manual | retry
    status = peewee.CharField(max_length=10)
    slot = peewee.DateTimeField(null=True)  # the cron fire time of a scheduled run
    enqueued_at = peewee.DateTimeField(default=utcnow)
    started_at = peewee.DateTimeField(null=True)
    ended_at = peewee.DateTimeField(null=True)
    # ended_at - started_at (the last attempt), written with ended_at: percentiles read it from an index.
    duration_s = peewee.FloatField(null=True)
    attempts = peewee.IntegerField(default=0)
    result = JSONField(null=True)
    error = peewee.TextField(null=True)
    # The run this one retries (trigger `retry`); that run keeps its own status, error and attempts.
    retry_of = peewee.CharField(max_length=64, null=True, index=True)

    class Meta:
        table_name = "job_runs"
        indexes = (
            (("job_name", "enqueued_at", "id"), False),
            (("job_name", "status", "enqueued_at", "id"), False),
            (("status",), False),
            # Counts and durations of a time window without table lookups (app.core.stats.run_figures).
            (("job_name", "status", "enqueued_at", "duration_s"), False),
            # Durations in order: the k-th duration of a window is an OFFSET along it.
            (("job_name", "status", "duration_s", "enqueued_at"), False),
            # Runs that ended failed or stopped lately: the scheduler's ops step reads them each tick (0008).
            (("status", "ended_at"), False),
        )

    def save(self, *args, **kwargs):
        """Rows written through the model (tests, imports) get their duration like `mark_ended` gives it."""
        self.duration_s = run_duration(self.started_at, self.ended_at)
        return super().save(*args, **kwargs)


def run_duration(started: datetime | None, ended: datetime | None) -> float | None:
    """Seconds from start to end, never negative (hosts' clocks can disagree); None unless both are set."""
    if started is None or ended is None:
        return None
    return max(0.0, (ended - started).total_seconds())


def duration_sql(ended: datetime) -> peewee.SQL:
    """`run_duration(started_at, ended)` in SQL, for the UPDATE that ends a run (it has no started_at in hand).

    SQLite's julianday keeps milliseconds, so the result is rounded to them (backfill: migration 0002).
    """
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        return peewee.SQL('EXTRACT(EPOCH FROM (GREATEST(%s, "started_at") - "started_at"))', [ended])
    return peewee.SQL('MAX(0.0, ROUND((julianday(?) - julianday("started_at")) * 86400.0, 3))', [ended.isoformat(" ")])


TRACEBACK_MAX_CHARS = 64 * 1024  # a stored traceback keeps its end (the exception) when longer


class RunAttempt(BaseModel):
    """One attempt of a run: the worker that took it, when, and how it ended (kept for good).

    Written when an attempt takes its run (`app.runs.lifecycle.mark_started`) and ended in the
    same transaction as every write that ends that attempt, fenced by its number. RQ's own
    retries are further attempts of the same run; an operator's retry is a new run (`retry_of`).
    """

    run = peewee.ForeignKeyField(JobRun, column_name="run_id", on_delete="CASCADE", index=False)
    number = peewee.IntegerField()  # 1..n, the run's `attempts` when this attempt took it
    worker = peewee.CharField(max_length=200, null=True)
    started_at = peewee.DateTimeField(null=True)
    ended_at = peewee.DateTimeField(null=True)
    status = peewee.CharField(max_length=12)  # app.runs.status.AttemptStatus
    error = peewee.TextField(null=True)  # the exception: type and message
    traceback = peewee.TextField(null=True)  # at most TRACEBACK_MAX_CHARS
    next_retry_at = peewee.DateTimeField(null=True)  # when RQ retries the run after this attempt

    class Meta:
        table_name = "run_attempts"
        indexes = ((("run", "number"), True),)


class DailySummary(BaseModel):
    """The daily report of one UTC day; re-running the day replaces it."""

    day = peewee.DateField(unique=True)
    report = JSONField()
    job_id = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    # The summary webhook's delivery: {"state", "at", "error", "job_id"} (migration 0009).
    delivery = JSONField(null=True)

    class Meta:
        table_name = "daily_summaries"


class ForecastSnapshot(BaseModel):
    """What one forecast run forecast (its lines' P10/P50/P90 per day) and, later, how it scored.

    Scored by a later run once actuals for the whole horizon can have arrived (app/forecast/accuracy.py).
    """

    run_id = peewee.CharField(max_length=64, null=True, index=True)
    horizon_start = peewee.DateField()
    horizon_days = peewee.IntegerField()
    created_at = peewee.DateTimeField(default=utcnow)
    lines = peewee.IntegerField(default=0)
    mase = peewee.DoubleField(null=True)  # mean of the lines' MASE
    coverage = peewee.DoubleField(null=True)  # share of scored line-days inside P10..P90
    scored_points = peewee.IntegerField(default=0)  # line-days with actuals
    scored_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "forecast_snapshots"
        indexes = (
            (("scored_at", "horizon_start"), False),
            (("horizon_start", "created_at"), False),
            (("created_at",), False),
        )


class ForecastLine(BaseModel):
    """One line's forecast in a snapshot: daily P10/P50/P90 over the horizon, its MASE scale and score."""

    snapshot = peewee.ForeignKeyField(ForecastSnapshot, backref="line_forecasts", on_delete="CASCADE")
    line = peewee.CharField(max_length=64)
    scale = peewee.DoubleField(null=True)  # in-sample MAE of the weekly seasonal naive forecast
    p10 = JSONField()
    p50 = JSONField()
    p90 = JSONField()
    mase = peewee.DoubleField(null=True)
    coverage = peewee.DoubleField(null=True)
    scored_points = peewee.IntegerField(default=0)

    class Meta:
        table_name = "forecast_lines"
        indexes = ((("snapshot", "line"), True),)


class AuditEntry(BaseModel):
    """One operator action, or its refusal: who, what, on what, from where (app/core/audit.py)."""

    id = peewee.AutoField()
    at = peewee.DateTimeField(default=utcnow)
    actor = peewee.CharField(max_length=100)  # user or token name, "cli:<os user>", "scheduler", "anonymous"
    role = peewee.CharField(max_length=20, default="")  # viewer / operator; empty when unauthenticated
    action = peewee.CharField(max_length=100)  # e.g. run.cancel, schedule.pause, rq.requeue
    target = peewee.CharField(max_length=300, default="")  # e.g. "job:forecast run:<id>"
    outcome = peewee.CharField(max_length=10)  # ok, refused, failed
    reason = peewee.CharField(max_length=300, default="")  # why refused or failed (never a secret)
    source = peewee.CharField(max_length=20)  # api, dashboard, rq-dashboard, cli
    remote_addr = peewee.CharField(max_length=64, default="")
    request_id = peewee.CharField(max_length=64, default="")

    class Meta:
        table_name = "audit_log"
        indexes = (
            (("at", "id"), False),
            (("actor", "at", "id"), False),
            (("action", "at", "id"), False),
            (("source", "at", "id"), False),
        )


class OpsEvent(BaseModel):
    """An operational event (a run failed for good, stopped or abandoned; a schedule overdue; a worker lost).

    `dedup_key` is unique: detection may run again and again (several schedulers, restarts) and
    still records each event once (app/core/ops_events.py). Its webhook deliveries hang off it.
    """

    id = peewee.AutoField()
    kind = peewee.CharField(max_length=40)
    dedup_key = peewee.CharField(max_length=200, unique=True)
    subject = peewee.CharField(max_length=200)  # run id, schedule name or worker name
    job_name = peewee.CharField(max_length=40, null=True)
    run_id = peewee.CharField(max_length=64, null=True, index=True)
    run_attempts = peewee.IntegerField(null=True)  # a run's event is per attempt count: a retried run may fail again
    message = peewee.TextField()
    details = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "ops_events"
        indexes = (
            (("created_at", "id"), False),
            (("kind", "created_at"), False),
        )


class WebhookDelivery(BaseModel):
    """One event's post to the ops webhook: an outbox row the scheduler's delivery step works off."""

    id = peewee.AutoField()
    event = peewee.ForeignKeyField(OpsEvent, backref="deliveries", on_delete="CASCADE")
    event_id: int
    target = peewee.CharField(max_length=200)  # scheme://host[:port] only: the URL is a secret
    status = peewee.CharField(max_length=10, default="pending")  # pending | delivered | failed
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.DateTimeField(default=utcnow)
    last_error = peewee.TextField(null=True)
    delivered_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "webhook_deliveries"
        indexes = (
            (("status", "next_attempt_at"), False),
            (("created_at",), False),
        )


ALL_MODELS = [
    ProductionLine,
    DemandHistory,
    Alert,
    AlertOccurrence,
    JobRun,
    RunAttempt,
    DailySummary,
    ForecastSnapshot,
    ForecastLine,
    AuditEntry,
    OpsEvent,
    WebhookDelivery,
]


def create_tables() -> None:
    """Create missing tables and indexes (idempotent; the `release` process runs it)."""
    with database.atomic():
        database.create_tables(ALL_MODELS, safe=True)
