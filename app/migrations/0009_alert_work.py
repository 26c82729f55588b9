"""Alerts an operator can work with: acknowledge / resolve fields, sightings per run, webhook delivery state.

alerts gain state (open / acknowledged / resolved, filtered on by the listings), last_job_id (the latest run that saw the condition: an alert's run link pointed to the
run that first raised it even after ten sightings), acknowledged_at/_by, resolved_at/_by, comment
and notification (the alert webhook's delivery); daily_summaries gain delivery (the summary
webhook's). alert_occurrences keeps one row per sighting, with its run. Existing alerts get one
sighting (their first run) and last_job_id = job_id. A frozen copy of the new table; columns
added with playhouse.migrate, so SQLite and PostgreSQL both work and the step is idempotent.
"""

from __future__ import annotations

import peewee


class _Base(peewee.Model):
    class Meta:
        legacy_table_names = False


class _Alert(_Base):
    class Meta:
        table_name = "alerts"


class AlertOccurrence(_Base):
    alert = peewee.ForeignKeyField(_Alert, on_delete="CASCADE", column_name="alert_id")
    job_id = peewee.CharField(max_length=64, null=True)
    seen_at = peewee.DateTimeField()
    severity = peewee.CharField(max_length=10)

    class Meta:
        table_name = "alert_occurrences"
        indexes = ((("alert", "seen_at"), False),)


ALERT_COLUMNS = {
    "state": peewee.CharField(max_length=12, default="open"),
    "last_job_id": peewee.CharField(max_length=64, null=True),
    "acknowledged_at": peewee.DateTimeField(null=True),
    "acknowledged_by": peewee.CharField(max_length=120, null=True),
    "resolved_at": peewee.DateTimeField(null=True),
    "resolved_by": peewee.CharField(max_length=120, null=True),
    "comment": peewee.TextField(null=True),
    "notification": peewee.TextField(null=True),
}


def upgrade(ctx) -> None:
    for name, field in ALERT_COLUMNS.items():
        if not ctx.has_column("alerts", name):
            ctx.run(ctx.migrator.add_column("alerts", name, field))
    if not ctx.has_column("daily_summaries", "delivery"):
        ctx.run(ctx.migrator.add_column("daily_summaries", "delivery", peewee.TextField(null=True)))
    if not ctx.has_index("alerts", "alerts_state_created_at_id"):
        ctx.run(ctx.migrator.add_index("alerts", ("state", "created_at", "id"), False))
    created = not ctx.db.table_exists("alert_occurrences")
    with ctx.db.bind_ctx([_Alert, AlertOccurrence]):
        ctx.db.create_tables([AlertOccurrence], safe=True)
    ctx.db.execute_sql('UPDATE "alerts" SET "last_job_id" = "job_id" WHERE "last_job_id" IS NULL')
    ctx.db.execute_sql('UPDATE "alerts" SET "state" = \'resolved\' WHERE "resolved" AND "state" <> \'resolved\'')
    if created:
        ctx.db.execute_sql(
            'INSERT INTO "alert_occurrences" ("alert_id", "job_id", "seen_at", "severity") '
            'SELECT "id", "job_id", "created_at", "severity" FROM "alerts"'
        )
