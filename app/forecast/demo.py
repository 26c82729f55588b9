"""A deterministic demo data set with labelled anomalies.

Every item has a trend, a weekly pattern (weekends low) and noise. Planted on purpose, and
returned as labels for the tests and the precision/recall benchmark:
- overloaded lines: capacity set ~15 % below the expected peak load of the horizon
  (-> high `capacity_warning`); every other line stays around 60 % (no alert);
- spiking series: two days in the last week between the spike rule's medium and high
  thresholds (-> medium `demand_spike`), placed mid-week so the forecast has settled again.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import chain, repeat
from typing import Any

import numpy as np
import peewee

from app.connections import database, db_session
from app.forecast import rules
from app.models import DemandHistory, ProductionLine, utcnow

log = logging.getLogger(__name__)

HORIZON = 14  # the horizon the capacities are planned against (the default setting)
ITEMS_PER_LINE = 25
NORMAL_UTILISATION = (0.55, 0.65)
OVERLOAD_UTILISATION = 1.15
SPIKE_SHARES = (0.3, 0.2)  # the two spike days: this share of the way from the medium to the high threshold
SPIKE_DAYS_AGO = (5, 4)
# Weekday shape (Mon..Sun), mean 0: busy weekdays, quiet weekends.
WEEK_SHAPE = np.array([0.3, 0.4, 0.4, 0.3, 0.2, -0.6, -1.0])
LINE_NAMES = ("Press shop", "Assembly", "Packaging", "Paint shop", "Machining", "Welding")
SQLITE_ROWS_PER_INSERT = 249  # 4 columns: <= 999 bound variables per statement


class _SpikeScores:
    """The default spike scores (SPIKE_MEDIUM_SCORE, SPIKE_HIGH_SCORE) the demo labels assume."""

    spike_medium_score = 4.0
    spike_high_score = 8.0


_DEFAULT_THRESHOLDS = _SpikeScores()


@dataclass(frozen=True)
class DemoData:
    lines: list[tuple[str, str, float]]  # (code, name, daily capacity)
    series: list[tuple[str, str]]  # (item, line code), one per row of `values`
    values: np.ndarray  # (items, days) daily demand
    start: date
    end: date
    overloaded_lines: list[str]
    spiking_series: list[tuple[str, str]]


def generate_demo(items: int = 12, days: int = 180, seed: int = 7, end: date | None = None) -> DemoData:
    """The demo data set as arrays (no database): same numbers for the same arguments."""
    if items < 3:
        raise ValueError("items must be >= 3 (one per line at least)")
    if days < 28:
        raise ValueError("days must be >= 28 (four weeks for a weekly pattern)")
    end = end or (utcnow().date() - timedelta(days=1))
    start = end - timedelta(days=days - 1)
    rng = np.random.default_rng(seed)
    n_lines = max(3, round(items / ITEMS_PER_LINE))
    width = max(4, len(str(items)))
    codes = [f"LINE-{i + 1:02d}" for i in range(n_lines)]
    names = [LINE_NAMES[i] if i < len(LINE_NAMES) else f"Line {i + 1}" for i in range(n_lines)]
    item_line = np.arange(items) % n_lines
    series = [(f"ITEM-{i + 1:0{width}d}", codes[item_line[i]]) for i in range(items)]

    level = rng.uniform(40, 400, items)
    slope = rng.uniform(-0.0005, 0.0015, items)  # relative growth per day
    amplitude = rng.uniform(0.10, 0.30, items)
    noise = rng.uniform(0.04, 0.08, items)
    t = np.arange(days + HORIZON)
    weekday = (start.weekday() + t) % 7
    expected = level[:, None] * (1 + slope[:, None] * t + amplitude[:, None] * WEEK_SHAPE[weekday])
    values = expected[:, :days] + rng.normal(0.0, 1.0, (items, days)) * (noise * level)[:, None]
    values = np.round(np.maximum(values, 0.0))

    n_over = max(1, n_lines // 10)
    overloaded = np.sort(rng.choice(n_lines, n_over, replace=False))
    targets = rng.uniform(*NORMAL_UTILISATION, n_lines)
    targets[overloaded] = OVERLOAD_UTILISATION
    peak_load = np.zeros((n_lines, HORIZON))
    np.add.at(peak_load, item_line, expected[:, days:])
    capacity = np.round(peak_load.max(axis=1) / targets)

    calm = np.flatnonzero(~np.isin(item_line, overloaded))
    spiking = np.sort(rng.choice(calm, min(len(calm), max(1, items // 100)), replace=False))
    stats = rules.spike_thresholds(values[spiking], _DEFAULT_THRESHOLDS)
    if stats is not None:
        _, medium, high = stats
        for ago, share in zip(SPIKE_DAYS_AGO, SPIKE_SHARES):
            k = rules.SPIKE_RECENT_DAYS - ago  # the recent day's own thresholds
            values[spiking, days - ago] = np.ceil(medium[:, k] + share * (high[:, k] - medium[:, k]))

    return DemoData(
        lines=[(codes[i], names[i], float(capacity[i])) for i in range(n_lines)],
        series=series,
        values=values,
        start=start,
        end=end,
        overloaded_lines=[codes[i] for i in overloaded],
        spiking_series=[series[i] for i in spiking],
    )


def seed_demo(
    items: int = 12, days: int = 180, seed: int = 7, replace: bool = True, end: date | None = None
) -> dict[str, Any]:
    """Write the demo data set (ending yesterday, UTC) and return its summary and anomaly labels.

    `replace` first deletes all production lines and demand history; without it the demo
    line codes must not exist yet.
    """
    data = generate_demo(items, days, seed, end)
    days_iso = [(data.start + timedelta(days=d)).isoformat() for d in range(days)]
    with db_session(), database.atomic():
        if replace and isinstance(database.obj, peewee.PostgresqlDatabase):  # 7M rows: seconds for DELETE
            database.execute_sql(f"TRUNCATE {DemandHistory._meta.table_name}, {ProductionLine._meta.table_name}")
        elif replace:
            DemandHistory.delete().execute()
            ProductionLine.delete().execute()
        elif ProductionLine.select().where(ProductionLine.code.in_([c for c, _, _ in data.lines])).exists():
            raise ValueError("demo production lines exist already (seed with replace=True)")
        ProductionLine.insert_many(
            data.lines, fields=[ProductionLine.code, ProductionLine.name, ProductionLine.daily_capacity]
        ).execute()
        line_ids = dict(ProductionLine.select(ProductionLine.code, ProductionLine.id).tuples())
        rows: list[tuple] = []
        for (item, line), row in zip(data.series, data.values):
            rows.extend(zip(repeat(item, days), repeat(line_ids[line], days), days_iso, row.tolist()))
            if len(rows) >= 100_000:
                insert_demand(rows)
                rows = []
        insert_demand(rows)
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        with db_session():
            database.execute_sql("ANALYZE demand_history")  # fresh statistics for the forecast's queries

    subjects = {f"line:{code}": "high" for code in data.overloaded_lines}
    subjects.update({f"item:{item}@{line}": "medium" for item, line in data.spiking_series})
    summary = {
        "lines": len(data.lines),
        "items": items,
        "days": days,
        "rows": items * days,
        "start": data.start.isoformat(),
        "end": data.end.isoformat(),
        "anomalies": {
            "overloaded_lines": list(data.overloaded_lines),
            "spiking_series": [{"item": item, "line": line} for item, line in data.spiking_series],
            "expected_alerts": subjects,
        },
    }
    log.info("demo: seeded %d lines, %d items, %d rows", summary["lines"], items, summary["rows"])
    return summary


def insert_demand(rows: Sequence[tuple[str, int, str, float]]) -> None:
    """Insert (item, line id, ISO day, quantity) rows in bulk.

    PostgreSQL: one COPY per call (about 4x faster than multi-row INSERTs). SQLite: one
    multi-row INSERT text per chunk size, reused with bound parameters, each under SQLite's
    classic limit of 999 variables. peewee's `insert_many` would spend ~95 % of the time
    building SQL for millions of rows.
    """
    if not rows:
        return
    meta = DemandHistory._meta
    columns = ", ".join(meta.fields[name].column_name for name in ("item", "line", "day", "quantity"))
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        buffer = io.StringIO()
        # Strings quoted, so an empty item stays '' instead of becoming NULL.
        csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC).writerows(rows)
        buffer.seek(0)
        with database.obj.cursor() as cursor:
            cursor.copy_expert(f"COPY {meta.table_name} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)
        return
    chunk = SQLITE_ROWS_PER_INSERT
    p = database.obj.param
    head = f"INSERT INTO {meta.table_name} ({columns}) VALUES "
    sql: dict[int, str] = {}
    for i in range(0, len(rows), chunk):
        part = rows[i : i + chunk]
        if len(part) not in sql:
            sql[len(part)] = head + ", ".join([f"({p}, {p}, {p}, {p})"] * len(part))
        database.execute_sql(sql[len(part)], list(chain.from_iterable(part)))
