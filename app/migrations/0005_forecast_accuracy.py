"""forecast_snapshots and forecast_lines: what each forecast run forecast, and how it scored.

Each run keeps its lines' daily P10/P50/P90 (one row per line, the horizon as JSON lists) so
that later runs can score it against the actuals that arrived (MASE and P10-P90 coverage, per
run and per line; app/forecast/accuracy.py). A frozen copy of the models as this step made
them, created with `safe=True`, so the step is idempotent and independent of later models.
"""

from __future__ import annotations

import peewee


class _Base(peewee.Model):
    class Meta:
        legacy_table_names = False


class ForecastSnapshot(_Base):
    run_id = peewee.CharField(max_length=64, null=True, index=True)
    horizon_start = peewee.DateField()
    horizon_days = peewee.IntegerField()
    created_at = peewee.DateTimeField()
    lines = peewee.IntegerField()
    mase = peewee.DoubleField(null=True)
    coverage = peewee.DoubleField(null=True)
    scored_points = peewee.IntegerField()
    scored_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "forecast_snapshots"
        indexes = (
            (("scored_at", "horizon_start"), False),
            (("horizon_start", "created_at"), False),
            (("created_at",), False),
        )


class ForecastLine(_Base):
    snapshot = peewee.ForeignKeyField(ForecastSnapshot, on_delete="CASCADE")
    line = peewee.CharField(max_length=64)
    scale = peewee.DoubleField(null=True)
    p10 = peewee.TextField()  # JSON lists as text
    p50 = peewee.TextField()
    p90 = peewee.TextField()
    mase = peewee.DoubleField(null=True)
    coverage = peewee.DoubleField(null=True)
    scored_points = peewee.IntegerField()

    class Meta:
        table_name = "forecast_lines"
        indexes = ((("snapshot", "line"), True),)


MODELS = [ForecastSnapshot, ForecastLine]


def upgrade(ctx) -> None:
    with ctx.db.bind_ctx(MODELS):
        ctx.db.create_tables(MODELS, safe=True)
