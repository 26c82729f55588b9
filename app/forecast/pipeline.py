"""The built-in forecast pipeline (`FORECAST_PIPELINE=app.forecast.pipeline:run_pipeline`).

A run is planned (the history window and the list of series, one cheap query), loaded (the
demand rows of those series as plain numbers, pivoted into a series x days float32 array in
which a day without a row is NaN: missing, never zero), forecast for all series at once with
`app.forecast.predict`, and passed through the rules. The per-series part (`forecast_part`) is
what a fan-out chunk runs on its slice of the series; the line-level rules need every series of
a line, so the chunks hand on each line's daily totals (`rules.LineTotals`, which add up) and
`finish` forecasts each line total as its own series for the capacity rule, raises the
stale-data alerts, and records the run's line forecasts for the accuracy score
(app/forecast/accuracy.py).

Horizon start: the day after the latest day any series has data for (`Plan.end` + 1). One run
forecasts the same days for every line, and the result depends on the data alone (a rerun or a
backtest gives the same alerts). A series whose data ends more than FORECAST_STALE_DAYS before
that is late: it is forecast from its own last observed day (the engine reads its missing tail
as missing) and its line gets a `stale_data` alert. A feed that is late for every series moves
the horizon start back with it; the run's result shows `forecast.horizon_start`.
"""

from __future__ import annotations

import io
import logging
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

from app.config import Settings
from app.connections import database, db_session, is_postgres
from app.forecast import rules
from app.forecast.engine import LOOKBACK_DAYS as ENGINE_LOOKBACK_DAYS
from app.forecast.engine import predict

log = logging.getLogger(__name__)

BUILTIN = "app.forecast.pipeline:run_pipeline"
# The engine's look-back and the spike rule's 9 weeks: only this window is loaded, as float32,
# so a chunk's memory stays small.
LOOKBACK_DAYS = max(ENGINE_LOOKBACK_DAYS, rules.SPIKE_RECENT_DAYS + rules.SPIKE_BASELINE_DAYS)
SeriesKey = tuple[str, int]  # (item, production line id), the table's own key
_CPU = "cpu_"  # prefix of a phase's CPU seconds among a chunk's timings (`Part.as_dict`)

_PG_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
# One series' days as packed by PostgreSQL's send functions: date_send (int4 days since
# 2000-01-01) then float8send (the quantity), big-endian.
_PG_DAY = np.dtype([("day", ">i4"), ("qty", ">f8")])
_PG_EPOCH = date(2000, 1, 1).toordinal()
# PostgreSQL: one COPY row per series (its index in the plan, all its days in the window as one
# bytea), so the server sends 10,000 rows instead of 3.9 million and the work-horse reads them
# with NumPy, without a Python call per day. Each series is an index scan of its own key range.
_PG_LOAD = (
    "COPY (SELECT (k.idx - 1)::int4, (SELECT string_agg(date_send(d.day) || float8send(d.quantity), ''::bytea) "
    "FROM demand_history d WHERE d.item = k.item AND d.line_id = k.line_id AND d.day BETWEEN %s AND %s) "
    "FROM unnest(%s::text[], %s::int[]) WITH ORDINALITY AS k(item, line_id, idx)) TO STDOUT (FORMAT binary)"
)


@dataclass(frozen=True)
class Plan:
    """What a run forecasts: the history window and its series, in the database's key order."""

    start: date
    end: date  # the last day with data; the forecast starts the day after
    keys: list[SeriesKey]

    @property
    def horizon_start(self) -> date:
        return self.end + timedelta(days=1)


@dataclass(frozen=True)
class History:
    """Daily demand: row i of `values` is series[i] = (item, line code); a day without a row is NaN."""

    values: np.ndarray  # (series, days) float32, NaN = missing
    series: list[tuple[str, str]]
    start: date
    end: date
    capacities: dict[str, float]  # line code -> daily capacity
    line_names: dict[str, str]


@dataclass
class Part:
    """The per-series outcome of some series: spike alerts, each line's summed forecast and totals."""

    series: int = 0
    spikes: list[dict[str, Any]] = field(default_factory=list)
    loads: dict[str, list[float]] = field(default_factory=dict)  # line code -> horizon sums of the means
    counts: dict[str, int] = field(default_factory=dict)  # line code -> series
    timings: dict[str, float] = field(default_factory=dict)  # load, fit, rules (seconds)
    cpu: dict[str, float] = field(default_factory=dict)  # the same phases' CPU seconds of this process
    peak_rss_mb: float = 0.0
    lines: rules.LineTotals = field(default_factory=rules.LineTotals)  # each line's daily history totals
    stale_series: int = 0
    summary: dict[str, Any] = field(default_factory=dict)  # set by `finish`: what the run's result shows

    def as_dict(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "spikes": self.spikes,
            "loads": self.loads,
            "counts": self.counts,
            # CPU seconds ride in the timings as cpu_<phase>: a gather of an earlier release (a
            # worker not yet redeployed) takes no unknown key, and sums these as any timing
            "timings": {**self.timings, **{_CPU + name: seconds for name, seconds in self.cpu.items()}},
            "peak_rss_mb": self.peak_rss_mb,
            "lines": self.lines.as_dict(),
            "stale_series": self.stale_series,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Part":
        data = dict(data)
        data["lines"] = rules.LineTotals.from_dict(data.get("lines"))
        timings = data.get("timings") or {}
        data["timings"] = {k: v for k, v in timings.items() if not k.startswith(_CPU)}
        data["cpu"] = {k[len(_CPU) :]: v for k, v in timings.items() if k.startswith(_CPU)}
        return cls(**data)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _snapshot():
    """One consistent view for the reads of a plan or a load."""
    return database.atomic(isolation_level="REPEATABLE READ") if is_postgres() else database.atomic()


# Every series with its first and last day. Both databases: a "loose index scan" that hops from
# one (item, line) to the next on the unique (item, line_id, day) index and reads both ends of
# each series from it: a few index probes a series instead of reading every row (PostgreSQL:
# 0.25 s instead of 1.4 s for 10,000 series x 730 days; SQLite: 20x faster than its GROUP BY
# over the covering index). SQLite seeks with single-column ranges (a row-value comparison would
# scan the current series' rows at each hop) and allows no subquery over the recursive table,
# hence the next line of the same item, else the first line of the next item.
_PG_KEYS = """
WITH RECURSIVE k(item, line_id) AS (
    (SELECT item, line_id FROM demand_history ORDER BY item, line_id LIMIT 1)
    UNION ALL
    SELECT n.item, n.line_id FROM k CROSS JOIN LATERAL (
        SELECT d.item, d.line_id FROM demand_history d WHERE (d.item, d.line_id) > (k.item, k.line_id)
        ORDER BY d.item, d.line_id LIMIT 1) n
)
SELECT k.item, k.line_id,
    (SELECT MIN(d.day) FROM demand_history d WHERE d.item = k.item AND d.line_id = k.line_id),
    (SELECT MAX(d.day) FROM demand_history d WHERE d.item = k.item AND d.line_id = k.line_id)
FROM k ORDER BY k.item, k.line_id
"""
_SQLITE_KEYS = """
WITH RECURSIVE k(item, line_id) AS (
    SELECT item, line_id FROM (SELECT item, line_id FROM demand_history ORDER BY item, line_id LIMIT 1)
    UNION ALL
    SELECT
        CASE WHEN EXISTS (SELECT 1 FROM demand_history d WHERE d.item = k.item AND d.line_id > k.line_id)
            THEN k.item ELSE (SELECT MIN(d.item) FROM demand_history d WHERE d.item > k.item) END,
        COALESCE(
            (SELECT MIN(d.line_id) FROM demand_history d WHERE d.item = k.item AND d.line_id > k.line_id),
            (SELECT MIN(d.line_id) FROM demand_history d
             WHERE d.item = (SELECT MIN(e.item) FROM demand_history e WHERE e.item > k.item)))
    FROM k WHERE k.item IS NOT NULL
)
SELECT k.item, k.line_id,
    (SELECT MIN(d.day) FROM demand_history d WHERE d.item = k.item AND d.line_id = k.line_id),
    (SELECT MAX(d.day) FROM demand_history d WHERE d.item = k.item AND d.line_id = k.line_id)
FROM k WHERE k.item IS NOT NULL ORDER BY k.item, k.line_id
"""


def plan(lookback_days: int | None = LOOKBACK_DAYS) -> Plan | None:
    """The window (the last `lookback_days` days up to the latest day; None: all) and its series.

    A series belongs to the plan when it has a row in the window. None when there is no history.
    """
    with db_session(), _snapshot():
        rows = database.execute_sql(_PG_KEYS if is_postgres() else _SQLITE_KEYS).fetchall()
    if not rows:
        return None
    firsts = [_as_date(first) for _, _, first, _ in rows]
    lasts = [_as_date(last) for _, _, _, last in rows]
    end, start = max(lasts), min(firsts)
    if lookback_days:
        start = max(start, end - timedelta(days=lookback_days - 1))
    keys = [(item, int(line_id)) for (item, line_id, _, _), last in zip(rows, lasts) if last >= start]
    return Plan(start, end, keys)


def load_history(lookback_days: int | None = LOOKBACK_DAYS, *, plan_: Plan | None = None) -> History:
    """The demand of the plan's series over its window (default: plan the last `lookback_days`).

    Rows are read by joining the table with the list of keys, so there is no per-row Python
    lookup and no sort: PostgreSQL sends one binary COPY row per series with its days and
    quantities packed (`_PG_LOAD`), read straight into NumPy; SQLite joins a temporary table of
    the keys and returns (series index, day number, quantity) rows.
    """
    return _load(plan(lookback_days) if plan_ is None else plan_)


def _load(plan_: Plan | None) -> History:
    """The plan's history (None: there is no demand history)."""
    with db_session(), _snapshot():
        lines = _lines()
        capacities = {code: float(cap) for _, code, _, cap in lines}
        names = {code: name for _, code, name, _ in lines}
        if plan_ is None:
            return History(
                np.zeros((0, 0), dtype=np.float32), [], date(1970, 1, 1), date(1970, 1, 1), capacities, names
            )
        days = (plan_.end - plan_.start).days + 1
        values = np.full((len(plan_.keys), days), np.nan, dtype=np.float32)
        if plan_.keys:
            if is_postgres():
                _load_postgres(plan_, values)
            else:
                _load_sqlite(plan_, values)
    codes = {line_id: code for line_id, code, _, _ in lines}
    missing = {line_id for _, line_id in plan_.keys} - codes.keys()
    if missing:
        raise RuntimeError("production lines were deleted while the history was read; run again")
    return History(
        values, [(item, codes[line_id]) for item, line_id in plan_.keys], plan_.start, plan_.end, capacities, names
    )


def _lines() -> list[tuple[int, str, str, float]]:
    return database.execute_sql("SELECT id, code, name, daily_capacity FROM production_lines").fetchall()


def load_lines() -> tuple[dict[str, float], dict[str, str]]:
    """Daily capacity and name of every production line, by line code."""
    with db_session():
        lines = _lines()
    return {code: float(cap) for _, code, _, cap in lines}, {code: name for _, code, name, _ in lines}


def _load_postgres(plan_: Plan, values: np.ndarray) -> None:
    items = [item for item, _ in plan_.keys]
    line_ids = [line_id for _, line_id in plan_.keys]
    with database.obj.cursor() as cursor:
        sql = cursor.mogrify(_PG_LOAD, (plan_.start, plan_.end, items, line_ids))
        buffer = io.BytesIO()
        cursor.copy_expert(sql, buffer)
    first = plan_.start.toordinal() - _PG_EPOCH
    data = buffer.getbuffer()
    for index, start, size in _pg_binary_rows(data):
        days = np.frombuffer(data, dtype=_PG_DAY, count=size // _PG_DAY.itemsize, offset=start)
        values[index, days["day"] - first] = days["qty"]


def _pg_binary_rows(data: memoryview) -> list[tuple[int, int, int]]:
    """(int4, bytea) tuples of a binary COPY as (value, offset of the bytes, their length);
    a NULL bytea (a series without rows in the window, deleted since the plan) is skipped."""
    if bytes(data[:11]) != _PG_COPY_SIGNATURE:
        raise RuntimeError("unexpected COPY output (not PostgreSQL binary format)")
    offset = 19 + int.from_bytes(data[15:19], "big")
    end = len(data) - 2  # the trailer is an int16 -1
    if bytes(data[end:]) != b"\xff\xff":
        raise RuntimeError("unexpected COPY output (truncated)")
    rows = []
    while offset < end:
        header = bytes(data[offset : offset + 14])  # field count, int4 length and value, bytea length
        if len(header) < 14 or header[:6] != b"\x00\x02\x00\x00\x00\x04":
            raise RuntimeError("unexpected COPY output (not the (int4, bytea) rows asked for)")
        index = int.from_bytes(header[6:10], "big", signed=True)
        size = int.from_bytes(header[10:14], "big", signed=True)
        offset += 14
        if size >= 0:
            if size % _PG_DAY.itemsize or offset + size > end:
                raise RuntimeError("unexpected COPY output (a series' days are truncated)")
            rows.append((index, offset, size))
            offset += size
    if offset != end:
        raise RuntimeError("unexpected COPY output (truncated)")
    return rows


def _load_sqlite(plan_: Plan, values: np.ndarray, chunk: int = 200_000) -> None:
    database.execute_sql(
        "CREATE TEMP TABLE IF NOT EXISTS forecast_keys "
        "(idx INTEGER PRIMARY KEY, item TEXT NOT NULL, line_id INTEGER NOT NULL)"
    )
    database.execute_sql("DELETE FROM forecast_keys")
    try:
        database.cursor().executemany(
            "INSERT INTO forecast_keys (idx, item, line_id) VALUES (?, ?, ?)",
            [(i, item, line_id) for i, (item, line_id) in enumerate(plan_.keys)],
        )
        first = plan_.start.toordinal()
        cursor = database.execute_sql(
            "SELECT k.idx, CAST(julianday(d.day) - ? AS INTEGER), d.quantity FROM forecast_keys k "
            "JOIN demand_history d ON d.item = k.item AND d.line_id = k.line_id WHERE d.day BETWEEN ? AND ?",
            [first + 1721424.5, plan_.start.isoformat(), plan_.end.isoformat()],
        )
        while batch := cursor.fetchmany(chunk):
            rows = np.array(batch, dtype=np.float64)
            values[rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64)] = rows[:, 2]
    finally:
        database.execute_sql("DELETE FROM forecast_keys")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def forecast_part(history: History, settings: Settings, load_seconds: float = 0.0, load_cpu: float = 0.0) -> Part:
    """Forecast the history's series and apply the per-series rules; sum each line's forecast and totals."""
    t0, c0 = time.perf_counter(), time.process_time()
    horizon = settings.forecast_horizon_days
    n, days = history.values.shape
    if n and days:
        prediction = predict(history.values, horizon, stale_days=settings.forecast_stale_days)
        mean, stale = prediction.mean, int(np.count_nonzero(prediction.stale))
    else:
        mean, stale = np.zeros((n, horizon)), 0
    t1, c1 = time.perf_counter(), time.process_time()
    spikes = rules.demand_spikes(history.values, mean, history.series, history.end + timedelta(days=1), settings)
    lines = [line for _, line in history.series]
    loads, counts = rules.line_loads(mean, lines)
    totals = (
        rules.line_totals(history.values, history.series, settings.forecast_stale_days)
        if n and days
        else rules.LineTotals()
    )
    t2, c2 = time.perf_counter(), time.process_time()
    log.info(
        "forecast: fitted %d series x %d days in %.2fs, %d spike(s), %d stale", n, days, t1 - t0, len(spikes), stale
    )
    return Part(
        series=n,
        spikes=spikes,
        loads={code: load.tolist() for code, load in loads.items()},
        counts=counts,
        timings={"load": round(load_seconds, 4), "fit": round(t1 - t0, 4), "rules": round(t2 - t1, 4)},
        cpu={"load": round(load_cpu, 4), "fit": round(c1 - c0, 4), "rules": round(c2 - c1, 4)},
        peak_rss_mb=peak_rss_mb(),
        lines=totals,
        stale_series=stale,
    )


def merge_parts(parts: Sequence[Part]) -> Part:
    """One part for many: spikes concatenated, line loads, totals and counts summed, timings summed."""
    merged = Part()
    for part in parts:
        merged.series += part.series
        merged.spikes.extend(part.spikes)
        for code, load in part.loads.items():
            current = merged.loads.get(code)
            merged.loads[code] = load if current is None else (np.add(current, load)).tolist()
            merged.counts[code] = merged.counts.get(code, 0) + part.counts.get(code, 0)
        for name, seconds in part.timings.items():
            merged.timings[name] = round(merged.timings.get(name, 0.0) + seconds, 4)
        for name, seconds in part.cpu.items():
            merged.cpu[name] = round(merged.cpu.get(name, 0.0) + seconds, 4)
        merged.peak_rss_mb = max(merged.peak_rss_mb, part.peak_rss_mb)
        merged.lines.add(part.lines)
        merged.stale_series += part.stale_series
    return merged


def line_forecasts(
    totals: rules.LineTotals, horizon: int, stale_days: int
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each line total forecast as its own series: (P10, P50, P90) per day, all lines in one call."""
    codes = [code for code in sorted(totals.sums) if totals.live.get(code)]
    if not codes:
        return {}
    prediction = predict(
        np.vstack([totals.history(code) for code in codes]), horizon, quantiles=(0.1, 0.5, 0.9), stale_days=stale_days
    )
    return {
        code: (prediction.quantiles[0, i], prediction.quantiles[1, i], prediction.quantiles[2, i])
        for i, code in enumerate(codes)
    }


def finish(
    part: Part,
    horizon_start: date,
    capacities: dict[str, float],
    line_names: dict[str, str],
    settings: Settings,
    *,
    run_id: str | None = None,
    record: bool = True,
) -> list[dict[str, Any]]:
    """The run's alerts: capacity warnings and stale-data alerts from the line totals, plus the parts' spikes.

    With `record` (the default), the line forecasts are kept for the accuracy score and earlier
    runs whose horizon has passed are scored (app/forecast/accuracy.py); `run_id` names the run.
    """
    from app.forecast import accuracy

    horizon = settings.forecast_horizon_days
    bands = line_forecasts(part.lines, horizon, settings.forecast_stale_days)
    alerts = rules.capacity_warnings(
        part.lines,
        capacities,
        horizon,
        horizon_start,
        line_names,
        bands,
        counts=part.counts,
        levels=rules.capacity_levels(settings),
    )
    stale = rules.stale_alerts(part.lines, horizon_start, settings.forecast_stale_days, line_names)
    part.summary = {
        "horizon_start": horizon_start.isoformat(),
        "stale_series": int(sum(part.lines.stale_count.values())),
        "stale_lines": sorted(a["figures"]["line"] for a in stale),
        "ended_series": int(part.lines.ended),
    }
    if record and bands:
        with db_session():
            part.summary["accuracy"] = accuracy.record_and_score(
                run_id, horizon_start, horizon, part.lines, bands, wait_days=settings.forecast_stale_days
            )
    return rules.sort_alerts(alerts + stale + part.spikes)


def run_summary(part: Part) -> dict[str, Any]:
    """What the run's result shows of the forecast: horizon start, stale series and lines, accuracy."""
    return {"forecast": part.summary} if part.summary else {}


def run_builtin(
    settings: Settings, plan_: Plan | None = None, stats: dict[str, Any] | None = None, *, run_id: str | None = None
) -> list[dict[str, Any]]:
    """The whole pipeline in this process; `stats` (if given) receives series count, timings and summary."""
    t0, c0 = time.perf_counter(), time.process_time()
    history = _load(plan() if plan_ is None else plan_)
    t1, c1 = time.perf_counter(), time.process_time()
    n, days = history.values.shape
    if n == 0:
        log.info("forecast: no demand history, nothing to forecast")
        alerts: list[dict[str, Any]] = []
        part = Part(
            timings={"load": round(t1 - t0, 4), "fit": 0.0, "rules": 0.0},
            cpu={"load": round(c1 - c0, 4), "fit": 0.0, "rules": 0.0},
            peak_rss_mb=peak_rss_mb(),
        )
    else:
        log.info("forecast: loaded %d series x %d days (%s..%s) in %.2fs", n, days, history.start, history.end, t1 - t0)
        part = forecast_part(history, settings, load_seconds=t1 - t0, load_cpu=c1 - c0)
        horizon_start, capacities, names = history.end + timedelta(days=1), history.capacities, history.line_names
        del history  # the line totals are in the part; free the array before the line forecasts
        t2, c2 = time.perf_counter(), time.process_time()
        alerts = finish(part, horizon_start, capacities, names, settings, run_id=run_id)
        part.timings["rules"] = round(part.timings["rules"] + time.perf_counter() - t2, 4)
        part.cpu["rules"] = round(part.cpu["rules"] + time.process_time() - c2, 4)
    counts = {s: sum(a["severity"] == s for a in alerts) for s in ("high", "medium", "low")}
    log.info("forecast: rules raised %d alert(s) %s (total %.2fs)", len(alerts), counts, time.perf_counter() - t0)
    if stats is not None:
        stats.update(
            series=part.series,
            timings=part.timings,
            cpu=part.cpu,
            peak_rss_mb=part.peak_rss_mb,
            result=run_summary(part),
        )
    return alerts


def run_pipeline(settings: Settings) -> list[dict[str, Any]]:
    """Forecast every series `forecast_horizon_days` ahead and return the alert candidates."""
    return run_builtin(settings)
