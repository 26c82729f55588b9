"""run_attempts and job_runs.retry_of: every attempt of a run kept, and retries as new linked runs.

A run's row showed only its last attempt (an RQ retry overwrote the error of the one before),
and the only way to run a failed job again was rq-dashboard's requeue, which rewrote the failed
run as finished. Each attempt now has a row (worker, times, status, error, traceback, when RQ
retries it), and an operator's retry is a new run whose `retry_of` names the run it retries.

A frozen copy of the table as this step made it, created with `safe=True`, so the step is
idempotent and independent of later models. Runs that ran before this step get one attempt
row: their last attempt, with the run's error (earlier attempts left no record).
"""

from __future__ import annotations

import peewee

RUNS = "job_runs"
COLUMN = "retry_of"


class _Base(peewee.Model):
    class Meta:
        legacy_table_names = False


class _JobRun(_Base):  # only referenced by the foreign key; never created here
    id = peewee.CharField(max_length=64, primary_key=True)

    class Meta:
        table_name = RUNS


class RunAttempt(_Base):
    run = peewee.ForeignKeyField(_JobRun, column_name="run_id", on_delete="CASCADE", index=False)
    number = peewee.IntegerField()
    worker = peewee.CharField(max_length=200, null=True)
    started_at = peewee.DateTimeField(null=True)
    ended_at = peewee.DateTimeField(null=True)
    status = peewee.CharField(max_length=12)
    error = peewee.TextField(null=True)
    traceback = peewee.TextField(null=True)
    next_retry_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "run_attempts"
        indexes = ((("run", "number"), True),)


# (No LIKE: psycopg2 would read its `%` as a parameter.)
# The last attempt of each run that has one, from what its row says (a run waiting for RQ's
# retry ended its last attempt failed, abandoned or interrupted; its error says which).
BACKFILL = """
INSERT INTO "run_attempts" ("run_id", "number", "started_at", "ended_at", "status", "error")
SELECT r."id", r."attempts", r."started_at",
       CASE WHEN r."status" = 'started' THEN NULL ELSE COALESCE(r."ended_at", r."started_at") END,
       CASE
         WHEN r."status" IN ('started', 'finished', 'stopped', 'canceled') THEN r."status"
         WHEN SUBSTR(r."error", 1, 9) = 'abandoned' OR SUBSTR(r."error", 1, 5) = 'lost:' THEN 'abandoned'
         WHEN SUBSTR(r."error", 1, 11) = 'interrupted' THEN 'interrupted'
         ELSE 'failed'
       END,
       r."error"
FROM "job_runs" r
WHERE r."attempts" >= 1 AND r."started_at" IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM "run_attempts" a WHERE a."run_id" = r."id" AND a."number" = r."attempts")
"""


def upgrade(ctx) -> None:
    if not ctx.has_column(RUNS, COLUMN):
        ctx.run(ctx.migrator.add_column(RUNS, COLUMN, peewee.CharField(max_length=64, null=True)))
    if not ctx.has_index(RUNS, f"{RUNS}_{COLUMN}"):
        ctx.run(ctx.migrator.add_index(RUNS, (COLUMN,), False))
    with ctx.db.bind_ctx([RunAttempt, _JobRun]):
        ctx.db.create_tables([RunAttempt], safe=True)
    ctx.db.execute_sql(BACKFILL)
