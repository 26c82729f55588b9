"""job_runs.duration_s and two indexes on it, so duration percentiles need no per-row reads.

The dashboard and /api/jobs/stats took p50/p95 of `ended_at - started_at` over every finished
run of a window (one float per row to Python on SQLite, a heap read per row on PostgreSQL).
The duration is now written with `ended_at`; this step backfills the rows that ended before.
Written with raw expressions per database (SQLite's `julianday` keeps milliseconds: rounded
to them), so it does not depend on what app/models.py says later.
"""

from __future__ import annotations

import peewee

TABLE = "job_runs"
COLUMN = "duration_s"
INDEXES = (("job_name", "status", "enqueued_at", "duration_s"), ("job_name", "status", "duration_s", "enqueued_at"))

SQLITE_SECONDS = 'MAX(0.0, ROUND((julianday("ended_at") - julianday("started_at")) * 86400.0, 3))'
POSTGRES_SECONDS = 'GREATEST(EXTRACT(EPOCH FROM ("ended_at" - "started_at")), 0)'


def upgrade(ctx) -> None:
    if not ctx.has_column(TABLE, COLUMN):
        ctx.run(ctx.migrator.add_column(TABLE, COLUMN, peewee.FloatField(null=True)))
    real = getattr(ctx.db, "obj", None) or ctx.db
    seconds = SQLITE_SECONDS if isinstance(real, peewee.SqliteDatabase) else POSTGRES_SECONDS
    ctx.db.execute_sql(
        f'UPDATE "{TABLE}" SET "{COLUMN}" = {seconds} '
        f'WHERE "started_at" IS NOT NULL AND "ended_at" IS NOT NULL AND "{COLUMN}" IS NULL'
    )
    for columns in INDEXES:
        if not ctx.has_index(TABLE, "_".join((TABLE, *columns))):
            ctx.run(ctx.migrator.add_index(TABLE, columns, False))
