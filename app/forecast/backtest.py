"""Rolling-origin backtest of the forecast engine on anyone's long-format CSV.

Why: accuracy claims must be measured on real data against a baseline, and users should be able
to measure them on their own data with the service's own code. The file format is the shared
data's long CSV (`dataset, series, line, date, value`, optionally gzip): an absent row or an
empty value is a missing day, never a zero. For each data set and each origin (the last
`origins` weeks, each forecasting `horizon` days), every method forecasts from the history
before the origin and is scored on what followed:

- MASE: mean absolute error over the horizon divided by the in-sample MAE of the one-week
  seasonal naive forecast (series-origins whose scale is 0 or undefined are skipped), averaged;
- sMAPE (percent, 0/0 counts as 0) over all observed forecast days;
- P10-P90 coverage: share of observed actuals inside [P10, P90]; for count series (every value
  of the history a whole number) an actual k counts by the share of [k, k+1) inside the band:
  the randomised PIT of a discrete forecast (Czado, Gneiting and Held 2009), so a band that
  merely touches a tied value (0 for an item that mostly sells nothing) is not credited in full
  (the engine's count bands are quantiles of the count spread over [k, k+1), see its core);
- capacity warnings per line: capacity = P95 of the line's daily load over the trailing 365
  days, overload = the actual load above capacity on some day of the horizon; the engine warns
  when its exceedance probability is >= `HIGH_PROBABILITY`, seasonal naive when its forecast
  peak is above capacity; recall, precision and the Brier score of the probability.

`run_backtest(path, horizon, origins, progress=callable)` returns a `BacktestResult`; `str()` of
it is the printable table. The CLI (`flask --app app backtest FILE.csv`) calls it.
"""

from __future__ import annotations

import csv
import gzip
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from app.forecast.engine import count_band_share, count_series, exceedance_probability, line_totals, predict
from app.forecast.engine.capacity import HIGH_PROBABILITY  # a high-severity warning: probability >= this

CAPACITY_QUANTILE = 0.95
CAPACITY_DAYS = 365
ORIGIN_STEP = 7  # origins one week apart
MIN_HISTORY_DAYS = 7  # an origin needs at least a week of history

Progress = Callable[[int, int], None]
Forecaster = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray | None]]


class BacktestError(ValueError):
    """The file cannot be read as the long CSV format, or holds nothing to backtest."""


@dataclass
class Dataset:
    """One data set on a common daily calendar: values (series x days), NaN = missing."""

    name: str
    series: list[str]
    lines: list[str]
    start: date
    values: np.ndarray

    @property
    def line_index(self) -> tuple[list[str], np.ndarray]:
        codes = list(dict.fromkeys(self.lines))
        pos = {c: i for i, c in enumerate(codes)}
        return codes, np.array([pos[c] for c in self.lines], dtype=np.int64)


class _Grid:
    """A data set's values filled straight into a (series x days) float32 matrix that grows by
    doubling: no per-row Python objects are kept (a full M5 file has 59 million rows)."""

    def __init__(self) -> None:
        self.series: dict[str, int] = {}
        self.lines: list[str] = []
        self.first = 0
        self.values = np.full((0, 0), np.nan, np.float32)
        self.last = -1  # highest day offset seen
        self.lo = 0  # lowest day offset seen

    def put(self, sid: str, line: str, day: int, value: float) -> None:
        row = self.series.get(sid)
        if row is None:
            row = self.series[sid] = len(self.series)
            self.lines.append(line)
        if self.values.shape[1] == 0:
            self.first = day
        off = day - self.first
        if off < 0:  # a date before the first seen: shift right
            pad = max(-off, self.values.shape[1])
            self.values = np.concatenate([np.full((self.values.shape[0], pad), np.nan, np.float32), self.values], 1)
            self.first -= pad
            self.last += pad
            self.lo += pad
            off += pad
        rows, cols = self.values.shape
        if row >= rows or off >= cols:
            grown = np.full(
                (
                    max(rows, 2 * rows if row >= rows else rows, row + 1),
                    max(cols, 2 * cols if off >= cols else cols, off + 1, 8),
                ),
                np.nan,
                np.float32,
            )
            grown[:rows, :cols] = self.values
            self.values = grown
        self.values[row, off] = value
        self.last = max(self.last, off)
        self.lo = min(self.lo, off)


def read_long_csv(path: str, *, datasets: Iterable[str] | None = None) -> list[Dataset]:
    """Every data set of a long CSV file (gzip when the bytes say so). An absent row or an empty
    (or NA/NaN) value is a missing day; a repeated (series, date) keeps the last value."""
    wanted = set(datasets) if datasets is not None else None
    try:
        with open(path, "rb") as raw:
            magic = raw.read(2)
    except OSError as exc:
        raise BacktestError(f"{path}: cannot read: {exc}") from None
    opener = gzip.open if magic == b"\x1f\x8b" else open
    grids: dict[str, _Grid] = {}
    day_cache: dict[str, int] = {}
    missing = {"", "NA", "nan", "NaN", "null", "NULL"}
    lineno = 1
    try:
        with opener(path, "rt", newline="", encoding="utf-8") as fh:  # type: ignore[operator]
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            need = ("dataset", "series", "line", "date", "value")
            if any(col not in header for col in need):
                raise BacktestError(f"{path}: the header must name the columns {', '.join(need)}; got {header}")
            ids, isr, iln, idt, ivl = (header.index(c) for c in need)
            width = max(ids, isr, iln, idt, ivl)
            for lineno, row in enumerate(reader, start=2):
                if len(row) <= width:
                    if not row:
                        continue
                    raise BacktestError(f"{path}:{lineno}: expected {len(header)} fields")
                ds = row[ids]
                if wanted is not None and ds not in wanted:
                    continue
                grid = grids.get(ds)
                if grid is None:
                    grid = grids[ds] = _Grid()
                d = row[idt]
                day = day_cache.get(d)
                if day is None:
                    day = day_cache[d] = date.fromisoformat(d.strip()[:10]).toordinal()
                v = row[ivl].strip()
                grid.put(row[isr], row[iln], day, float(v) if v not in missing else np.nan)
    except BacktestError:
        raise
    except ValueError as exc:
        raise BacktestError(f"{path}:{lineno}: bad date or value: {exc}") from None
    except (OSError, UnicodeDecodeError, csv.Error, EOFError) as exc:
        raise BacktestError(f"{path}: cannot read: {exc}") from None
    out = []
    for name, grid in grids.items():
        values = np.ascontiguousarray(
            grid.values[: len(grid.series), grid.lo : grid.last + 1]
        )  # float32: half the memory
        out.append(Dataset(name, list(grid.series), grid.lines, date.fromordinal(grid.first + grid.lo), values))
    if not out:
        raise BacktestError(f"{path}: no data rows")
    return out


# --- methods ---------------------------------------------------------------------------------------


def engine_forecaster(history: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    p = predict(history, horizon, quantiles=(0.1, 0.9))
    return p.mean, p.quantiles


def seasonal_naive(history: np.ndarray, horizon: int) -> tuple[np.ndarray, None]:
    """Last observed value of the same weekday (up to 4 weeks back), else the last observed value."""
    n, days = history.shape
    out = np.full((n, horizon), np.nan)
    obs = ~np.isnan(history)
    last_idx = np.where(obs.any(axis=1), days - 1 - np.argmax(obs[:, ::-1], axis=1), -1)
    last_val = np.where(last_idx >= 0, history[np.arange(n), np.maximum(last_idx, 0)], 0.0)
    for h in range(horizon):
        for back in range(1, 5):
            col = days + (h % 7) - 7 * back
            if 0 <= col < days:
                v = history[:, col]
                out[:, h] = np.where(np.isnan(out[:, h]), v, out[:, h])
        out[:, h] = np.where(np.isnan(out[:, h]), last_val, out[:, h])
    return np.maximum(np.nan_to_num(out), 0.0), None


METHODS: dict[str, Forecaster] = {"engine": engine_forecaster, "seasonal_naive": seasonal_naive}


# --- metrics ---------------------------------------------------------------------------------------


def snaive_scale(history: np.ndarray) -> np.ndarray:
    """In-sample MAE of the 7-day seasonal naive forecast per series (NaN pairs skipped)."""
    if history.shape[1] <= 7:
        return np.full(history.shape[0], np.nan)
    d = np.abs(history[:, 7:] - history[:, :-7])
    with np.errstate(all="ignore"):
        return np.nanmean(d, axis=1)


@dataclass
class Scores:
    abs_err: list[np.ndarray] = field(default_factory=list)  # per origin: (n,) MASE values
    smape_num: float = 0.0
    smape_cnt: int = 0
    cover_in: float = 0.0
    cover_cnt: int = 0
    seconds: float = 0.0
    series_fits: int = 0
    probs: list[float] = field(default_factory=list)
    events: list[bool] = field(default_factory=list)

    def add(
        self,
        fc: np.ndarray,
        q: np.ndarray | None,
        actual: np.ndarray,
        scale: np.ndarray,
        counts: np.ndarray | None = None,
    ) -> None:
        obs = ~np.isnan(actual)
        with np.errstate(all="ignore"):
            err = np.where(obs, np.abs(fc - actual), np.nan)
            mae = np.nanmean(err, axis=1)
            mase = mae / scale
        self.abs_err.append(np.where(np.isfinite(mase), mase, np.nan))
        denom = np.abs(actual) + np.abs(fc)
        sm = np.where(obs & (denom > 0), 200.0 * np.abs(fc - actual) / np.where(denom > 0, denom, 1.0), 0.0)
        self.smape_num += float(sm[obs].sum())
        self.smape_cnt += int(obs.sum())
        if q is not None:
            inside = ((actual >= q[0] - 1e-9) & (actual <= q[-1] + 1e-9)).astype(np.float64)
            if counts is not None and counts.any():
                share = count_band_share(actual, q[0], q[-1])
                inside = np.where(counts[:, None], share, inside)
            self.cover_in += float(np.where(obs, inside, 0.0).sum())
            self.cover_cnt += int(obs.sum())

    def summary(self) -> dict[str, float | None]:
        m = np.concatenate(self.abs_err) if self.abs_err else np.zeros(0)
        m = m[np.isfinite(m)]
        tp = sum(p >= HIGH_PROBABILITY and e for p, e in zip(self.probs, self.events))
        fp = sum(p >= HIGH_PROBABILITY and not e for p, e in zip(self.probs, self.events))
        fn = sum(p < HIGH_PROBABILITY and e for p, e in zip(self.probs, self.events))
        return {
            "mase": float(m.mean()) if m.size else None,
            "smape": self.smape_num / self.smape_cnt if self.smape_cnt else None,
            "coverage": self.cover_in / self.cover_cnt if self.cover_cnt else None,
            "seconds_per_series": self.seconds / self.series_fits if self.series_fits else None,
            "overloads": int(sum(self.events)),
            "line_origins": len(self.events),
            "warned": int(tp + fp),  # high-severity warnings (probability >= HIGH_PROBABILITY)
            "warned_hits": int(tp),  # ... followed by an overload
            "recall": tp / (tp + fn) if tp + fn else None,
            "precision": tp / (tp + fp) if tp + fp else None,
            "brier": float(np.mean((np.array(self.probs) - np.array(self.events, dtype=float)) ** 2))
            if self.events
            else None,
        }


@dataclass
class BacktestResult:
    horizon: int
    origins: int
    datasets: dict[str, dict[str, dict[str, Any]]]  # data set -> method -> metric -> value
    info: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "origins": self.origins, "datasets": self.datasets, "info": self.info}

    def __str__(self) -> str:
        return format_table(self)


def _fmt(v: Any, spec: str) -> str:
    if v is None:
        width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
        return "-".rjust(width)
    return format(v, spec)


def format_table(result: BacktestResult) -> str:
    lines = []
    for name, methods in result.datasets.items():
        info = result.info.get(name, {})
        lines.append(
            f"\n{name}: {info.get('series')} series x {info.get('days')} days, "
            f"{info.get('origins')} origin(s), horizon {result.horizon}, {info.get('lines')} line(s)"
        )
        lines.append(
            f"{'method':<18}{'MASE':>8}{'rel':>7}{'sMAPE':>8}{'P10-P90':>9}{'s/series':>11}"
            f"{'recall':>8}{'prec':>7}{'Brier':>7}{'overloads':>11}"
        )
        base = methods.get("seasonal_naive", {}).get("mase")
        for meth, s in methods.items():
            rel = s["mase"] / base if s.get("mase") is not None and base else None
            lines.append(
                f"{meth:<18}{_fmt(s.get('mase'), '8.3f')}{_fmt(rel, '7.3f')}{_fmt(s.get('smape'), '8.2f')}"
                f"{_fmt(s.get('coverage'), '9.3f')}{_fmt(s.get('seconds_per_series'), '11.2e')}"
                f"{_fmt(s.get('recall'), '8.2f')}{_fmt(s.get('precision'), '7.2f')}"
                f"{_fmt(s.get('brier'), '7.3f')}"
                f"{s.get('overloads', 0):>5}/{s.get('line_origins', 0):<5}"
            )
    return "\n".join(lines)


def origin_cuts(days: int, horizon: int, origins: int, step: int = ORIGIN_STEP) -> list[int]:
    """Column indices where the forecast starts (history = [:cut]), newest first."""
    cuts = [days - horizon - step * j for j in range(origins)]
    return [c for c in cuts if c >= MIN_HISTORY_DAYS]


def backtest_dataset(
    ds: Dataset,
    horizon: int,
    origins: int,
    methods: dict[str, Forecaster] | None = None,
    progress: Progress | None = None,
    capacity: bool = True,
) -> tuple[dict[str, dict], dict]:
    """Scores of every method on one data set, and facts about the data set."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _backtest_dataset(ds, horizon, origins, methods, progress, capacity)


def _backtest_dataset(
    ds: Dataset,
    horizon: int,
    origins: int,
    methods: dict[str, Forecaster] | None,
    progress: Progress | None,
    capacity: bool,
) -> tuple[dict[str, dict], dict]:
    methods = METHODS if methods is None else methods
    values = ds.values
    n, days = values.shape
    cuts = origin_cuts(days, horizon, origins)
    codes, lidx = ds.line_index
    loads = line_totals(values, lidx)
    scores = {m: Scores() for m in methods}
    total = len(cuts) * len(methods)
    done = 0
    for cut in cuts:
        hist = values[:, :cut]
        actual = values[:, cut : cut + horizon]
        scale = snaive_scale(hist)
        counts = count_series(hist)
        cap = over = None
        if capacity:
            lh = loads[:, max(0, cut - CAPACITY_DAYS) : cut]
            with np.errstate(all="ignore"):
                cap = np.where(
                    np.isfinite(lh).sum(axis=1) >= 28,
                    np.nanquantile(lh, CAPACITY_QUANTILE, axis=1) if lh.shape[1] else np.nan,
                    np.nan,
                )
            la = loads[:, cut : cut + horizon]
            over = (la > cap[:, None]).any(axis=1)
            judged = np.isfinite(cap) & np.isfinite(la).any(axis=1) & (cap > 0)
        for name, fn in methods.items():
            t0 = time.perf_counter()
            fc, q = fn(hist, horizon)
            scores[name].seconds += time.perf_counter() - t0
            scores[name].series_fits += n
            scores[name].add(fc, q, actual, scale, counts)
            if capacity and cap is not None and judged.any():
                if name == "engine":
                    prob, _ = exceedance_probability(loads[:, :cut], np.nan_to_num(cap, nan=0.0), horizon)
                else:
                    line_fc = np.zeros((len(codes), horizon))
                    np.add.at(line_fc, lidx, fc)
                    prob = (line_fc.max(axis=1) > cap).astype(float)
                for i in np.flatnonzero(judged):
                    if np.isfinite(prob[i]):
                        scores[name].probs.append(float(prob[i]))
                        scores[name].events.append(bool(over[i]))
            done += 1
            if progress is not None:
                progress(done, total)
    info = {"series": n, "days": days, "origins": len(cuts), "lines": len(codes), "start": ds.start.isoformat()}
    return {m: s.summary() for m, s in scores.items()}, info


def run_backtest(
    path: str,
    horizon: int = 14,
    origins: int = 6,
    progress: Progress | None = None,
    *,
    methods: dict[str, Forecaster] | None = None,
    datasets: Iterable[str] | None = None,
    capacity: bool = True,
) -> BacktestResult:
    """Backtest every data set of the long CSV at `path`; `progress(done, total)` per method-origin."""
    if not isinstance(horizon, int) or not 1 <= horizon <= 366:
        raise BacktestError("horizon must be an integer from 1 to 366")
    if not isinstance(origins, int) or origins < 1:
        raise BacktestError("origins must be a positive integer")
    sets = read_long_csv(path, datasets=datasets)
    result: dict[str, dict[str, dict[str, Any]]] = {}
    info: dict[str, dict[str, Any]] = {}
    for k, ds in enumerate(sets):
        cb = None
        if progress is not None:

            def cb(done: int, total: int, _k: int = k) -> None:
                progress(_k * 1000 + int(1000 * done / max(total, 1)), 1000 * len(sets))

        result[ds.name], info[ds.name] = backtest_dataset(ds, horizon, origins, methods, cb, capacity)
        base = result[ds.name].get("seasonal_naive", {}).get("mase")
        for s in result[ds.name].values():
            s["rel_mase"] = s["mase"] / base if s.get("mase") is not None and base else None
    return BacktestResult(horizon, origins, result, info)


def _main() -> None:  # pragma: no cover - a convenience for developers
    import sys

    print(
        run_backtest(
            sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 14, int(sys.argv[3]) if len(sys.argv) > 3 else 6
        )
    )


if __name__ == "__main__":  # pragma: no cover
    _main()
