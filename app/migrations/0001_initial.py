"""The first versioned schema: production lines, demand history, alerts, job runs, daily summaries.

A frozen copy of the models as they were when migrations were introduced, so this step
creates the same tables whatever app/models.py says later (later changes are later steps).
`safe=True` creates only what is missing: a database made earlier by `create_tables()`
is adopted unchanged.
"""

from __future__ import annotations

import peewee


class _Base(peewee.Model):
    class Meta:
        legacy_table_names = False


class ProductionLine(_Base):
    code = peewee.CharField(max_length=64, unique=True)
    name = peewee.CharField(max_length=200)
    daily_capacity = peewee.FloatField()

    class Meta:
        table_name = "production_lines"


class DemandHistory(_Base):
    item = peewee.CharField(max_length=64)
    line = peewee.ForeignKeyField(ProductionLine, backref="demand", on_delete="CASCADE")
    day = peewee.DateField()
    quantity = peewee.FloatField()

    class Meta:
        table_name = "demand_history"
        indexes = ((("item", "line", "day"), True),)


class Alert(_Base):
    type = peewee.CharField(max_length=40)
    severity = peewee.CharField(max_length=10)
    title = peewee.CharField(max_length=200)
    message = peewee.TextField()
    source = peewee.CharField(max_length=40)
    job_id = peewee.CharField(max_length=64, null=True)
    subject = peewee.CharField(max_length=200)
    figures = peewee.TextField()  # JSON as text
    fingerprint = peewee.CharField(max_length=300, index=True)
    occurrences = peewee.IntegerField()
    resolved = peewee.BooleanField()
    created_at = peewee.DateTimeField()
    last_seen_at = peewee.DateTimeField()

    class Meta:
        table_name = "alerts"
        indexes = (
            (("created_at", "id"), False),
            (("source", "created_at", "id"), False),
            (("severity", "created_at", "id"), False),
            (("type", "created_at", "id"), False),
        )


class JobRun(_Base):
    id = peewee.CharField(max_length=64, primary_key=True)
    job_name = peewee.CharField(max_length=40)
    queue = peewee.CharField(max_length=40)
    trigger = peewee.CharField(max_length=10)
    status = peewee.CharField(max_length=10)
    slot = peewee.DateTimeField(null=True)
    enqueued_at = peewee.DateTimeField()
    started_at = peewee.DateTimeField(null=True)
    ended_at = peewee.DateTimeField(null=True)
    attempts = peewee.IntegerField()
    result = peewee.TextField(null=True)  # JSON as text
    error = peewee.TextField(null=True)

    class Meta:
        table_name = "job_runs"
        indexes = (
            (("job_name", "enqueued_at", "id"), False),
            (("job_name", "status", "enqueued_at", "id"), False),
            (("status",), False),
        )


class DailySummary(_Base):
    day = peewee.DateField(unique=True)
    report = peewee.TextField()  # JSON as text
    job_id = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "daily_summaries"


MODELS = [ProductionLine, DemandHistory, Alert, JobRun, DailySummary]


def upgrade(ctx) -> None:
    with ctx.db.bind_ctx(MODELS):
        ctx.db.create_tables(MODELS, safe=True)
