"""ops_events and webhook_deliveries: operational events and the outbox of their webhook posts.

An event (a run failed for good, stopped or abandoned; a schedule overdue; a worker lost) is
recorded once per `dedup_key`; each webhook post of it is a delivery row the scheduler's ops
step retries with backoff, recording attempts, the last error and when it was delivered
(app/core/ops_events.py). A frozen copy of the models as this step made them, created with
`safe=True`, so the step is idempotent and independent of later models. It also indexes
job_runs by (status, ended_at): the ops step finds the runs that ended lately along it.
"""

from __future__ import annotations

import peewee


class _Base(peewee.Model):
    class Meta:
        legacy_table_names = False


class OpsEvent(_Base):
    kind = peewee.CharField(max_length=40)
    dedup_key = peewee.CharField(max_length=200, unique=True)
    subject = peewee.CharField(max_length=200)
    job_name = peewee.CharField(max_length=40, null=True)
    run_id = peewee.CharField(max_length=64, null=True, index=True)
    run_attempts = peewee.IntegerField(null=True)  # a run's event is per attempt count: a retried run may fail again
    message = peewee.TextField()
    details = peewee.TextField()  # JSON as text
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "ops_events"
        indexes = (
            (("created_at", "id"), False),
            (("kind", "created_at"), False),
        )


class WebhookDelivery(_Base):
    event = peewee.ForeignKeyField(OpsEvent, on_delete="CASCADE")
    target = peewee.CharField(max_length=200)
    status = peewee.CharField(max_length=10)
    attempts = peewee.IntegerField()
    next_attempt_at = peewee.DateTimeField()
    last_error = peewee.TextField(null=True)
    delivered_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "webhook_deliveries"
        indexes = (
            (("status", "next_attempt_at"), False),
            (("created_at",), False),
        )


MODELS = [OpsEvent, WebhookDelivery]


RUNS_INDEX = "job_runs_status_ended_at"  # the runs that ended lately, read by the ops step each tick


def upgrade(ctx) -> None:
    with ctx.db.bind_ctx(MODELS):
        ctx.db.create_tables(MODELS, safe=True)
    if not ctx.has_index("job_runs", RUNS_INDEX):
        ctx.db.execute_sql(f'CREATE INDEX "{RUNS_INDEX}" ON "job_runs" ("status", "ended_at")')
