"""The built-in forecast pipeline (`FORECAST_PIPELINE=app.forecast.pipeline:run_pipeline`).

Loads the demand history with two bulk queries (numbers only, no model objects), pivots it into
a dense series x days array, forecasts every series at once and applies the alert rules.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import peewee

from app.config import Settings
from app.connections import database, db_session
from app.forecast import model, rules

log = logging.getLogger(__name__)

EPOCH = date(1970, 1, 1)
# The model fits the last 52 weeks; the spike rule needs 9. A little more costs nothing.
LOOKBACK_DAYS = model.FIT_DAYS + 7


@dataclass(frozen=True)
class History:
    """Dense daily demand: row i of `values` is series[i] = (item, line code); missing days are 0."""

    values: np.ndarray  # (series, days)
    series: list[tuple[str, str]]
    start: date
    end: date  # the last day with data; the forecast starts the day after
    capacities: dict[str, float]  # line code -> daily capacity
    line_names: dict[str, str]


def _is_postgres() -> bool:
    return isinstance(database.obj, peewee.PostgresqlDatabase)


def _day_number_sql() -> str:
    """SQL for `day` as days since 1970-01-01, so rows arrive as plain numbers."""
    if _is_postgres():
        return "(day - DATE '1970-01-01')"
    return "CAST(julianday(day) - 2440587.5 AS INTEGER)"


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def load_history(lookback_days: int | None = LOOKBACK_DAYS) -> History:
    """Demand of the last `lookback_days` days (None: all) up to the latest day in the table.

    Two reads of one snapshot: the series keys with their row counts, then (day, quantity) of
    every row in the same key order, so row i of the second read belongs to the series that
    the counts say, without a Python lookup per row.
    """
    p = database.obj.param
    with db_session():
        snapshot = database.atomic(isolation_level="REPEATABLE READ") if _is_postgres() else database.atomic()
        with snapshot:
            lines = database.execute_sql("SELECT id, code, name, daily_capacity FROM production_lines").fetchall()
            lo, hi = database.execute_sql("SELECT MIN(day), MAX(day) FROM demand_history").fetchone()
            capacities = {code: float(cap) for _, code, _, cap in lines}
            names = {code: name for _, code, name, _ in lines}
            if hi is None:
                return History(np.zeros((0, 0)), [], EPOCH, EPOCH, capacities, names)
            end, start = _as_date(hi), _as_date(lo)
            if lookback_days:
                start = max(start, end - timedelta(days=lookback_days - 1))
            where, params = f"WHERE day >= {p}", [start.isoformat()]
            keys = database.execute_sql(
                f"SELECT item, line_id, COUNT(*) FROM demand_history {where} "
                f"GROUP BY item, line_id ORDER BY item, line_id", params
            ).fetchall()
            rows = _fetch_numbers(database.execute_sql(
                f"SELECT {_day_number_sql()}, quantity FROM demand_history {where} ORDER BY item, line_id", params
            ))
    counts = np.array([count for _, _, count in keys], dtype=np.int64)
    if counts.sum() != len(rows):
        raise RuntimeError("demand history changed while it was being read; run again")
    days = (end - start).days + 1
    first = (start - EPOCH).days
    values = np.zeros((len(keys), days))
    series_index = np.repeat(np.arange(len(keys)), counts)
    np.add.at(values, (series_index, rows[:, 0].astype(np.int64) - first), rows[:, 1])
    codes = {line_id: code for line_id, code, _, _ in lines}
    return History(
        values=values,
        series=[(item, codes[line_id]) for item, line_id, _ in keys],
        start=start,
        end=end,
        capacities=capacities,
        line_names=names,
    )


def _fetch_numbers(cursor, chunk: int = 200_000, columns: int = 2) -> np.ndarray:
    """All rows of a numeric cursor as one float array, converting a chunk at a time (bounded memory)."""
    parts = []
    while batch := cursor.fetchmany(chunk):
        parts.append(np.array(batch, dtype=np.float64))
    return np.concatenate(parts) if parts else np.zeros((0, columns))


def run_pipeline(settings: Settings) -> list[dict[str, Any]]:
    """Forecast every series `forecast_horizon_days` ahead and return the alert candidates."""
    t0 = time.perf_counter()
    history = load_history()
    t1 = time.perf_counter()
    n, days = history.values.shape
    if n == 0:
        log.info("forecast: no demand history, nothing to forecast")
        return []
    log.info("forecast: loaded %d series x %d days (%s..%s) in %.2fs",
             n, days, history.start, history.end, t1 - t0)
    result = model.forecast(history.values, settings.forecast_horizon_days)
    t2 = time.perf_counter()
    log.info("forecast: fitted %d series, %d-day horizon in %.2fs", n, settings.forecast_horizon_days, t2 - t1)
    horizon_start = history.end + timedelta(days=1)
    alerts = rules.evaluate(history.values, result.forecast, history.series, history.capacities,
                            horizon_start, settings, history.line_names)
    t3 = time.perf_counter()
    counts = {s: sum(a["severity"] == s for a in alerts) for s in ("high", "medium", "low")}
    log.info("forecast: rules raised %d alert(s) %s in %.2fs (total %.2fs)",
             len(alerts), counts, t3 - t2, t3 - t0)
    return alerts
