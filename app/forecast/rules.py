"""Alert rules: turn forecasts and recent history into alert candidates.

A candidate is a dict {type, severity, title, message, subject, figures, fingerprint}; the job
stores it, deduplicating on `fingerprint` so that re-running within the same week updates the
open alert instead of adding another.

Three rules:
- `capacity_warning` (one per line): the probability that the line's load exceeds its daily
  capacity on some day of the horizon, from the distribution of the line total (the engine's
  `exceedance_probability` on the line's own daily totals); the severity follows the probability.
- `demand_spike` (one per item and line): recent raw demand, or the forecast, above an upper
  quantile of the item's count distribution over the weeks before (the engine's
  `spike_threshold`). The raw history is checked, not the engine's fit (which limits the pull
  of an outlier), so a real spike is reported while it does not distort the forecast.
- `stale_data` (one per line): some of the line's series end more than FORECAST_STALE_DAYS
  before the horizon start. Their days are missing, never zero: see `line_totals`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import Enum
from statistics import NormalDist
from typing import Any, Protocol

import numpy as np

from app.forecast.engine import exceedance_probability, spike_threshold

SPIKE_RECENT_DAYS = 7  # "recent" demand: the last week of history
SPIKE_BASELINE_DAYS = 56  # baseline: the 8 weeks before the recent week
SPIKE_MIN_BASELINE_DAYS = 14  # fewer observed days than this give no baseline, hence no spike alert
# Probability that the line's load exceeds capacity on some day of the horizon -> severity
# (defaults of CAPACITY_HIGH/MEDIUM/LOW_PROBABILITY; settings override).
CAPACITY_HIGH_PROBABILITY = 0.5
CAPACITY_MEDIUM_PROBABILITY = 0.2
CAPACITY_LOW_PROBABILITY = 0.1
DEFAULT_CAPACITY_LEVELS = (CAPACITY_HIGH_PROBABILITY, CAPACITY_MEDIUM_PROBABILITY, CAPACITY_LOW_PROBABILITY)
# A series silent for this many days (and more than FORECAST_STALE_DAYS) has ended (e.g. a
# discontinued item): it adds nothing to its line's load and raises no stale alert (counted in
# the run's result). Until then a stale series is carried in its line's load at its recent level.
ENDED_AFTER_DAYS = 28
STALE_ITEMS_LISTED = 20
_ROUND = 9  # thresholds compare rounded figures, so 0.5 exactly is 0.5 whatever the float sum
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


class AlertType(str, Enum):
    CAPACITY = "capacity_warning"
    SPIKE = "demand_spike"
    STALE = "stale_data"


class Thresholds(Protocol):
    spike_medium_score: float
    spike_high_score: float
    capacity_high_probability: float
    capacity_medium_probability: float
    capacity_low_probability: float


def capacity_levels(thresholds: Thresholds) -> tuple[float, float, float]:
    """(high, medium, low) probabilities of exceeding capacity from the settings."""
    return (
        thresholds.capacity_high_probability,
        thresholds.capacity_medium_probability,
        thresholds.capacity_low_probability,
    )


def window_id(horizon_start: date) -> str:
    """ISO year-week of the horizon's first day: stable across the runs of one week."""
    year, week, _ = horizon_start.isocalendar()
    return f"{year}-W{week:02d}"


def fingerprint(alert_type: str, subject: str, horizon_start: date) -> str:
    return f"{alert_type}|{subject}|{window_id(horizon_start)}"


def _num(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def ended_after(stale_days: int) -> int:
    return max(ENDED_AFTER_DAYS, 2 * stale_days + 1)


# --- line totals from series with missing days ------------------------------------------------


@dataclass
class LineTotals:
    """Each line's daily total over the history window, summable over slices of the series.

    A line-day is `incomplete` (missing) when one of the line's series lacks that day inside its
    own span, or lacks it at the end while the series is late but not yet stale (its feed has
    not arrived). A stale series (silent for more than FORECAST_STALE_DAYS, less than
    `ended_after`) is carried at its weekday means of its last four observed weeks, so a late
    feed neither drops the line's load nor freezes it; an ended series adds nothing.
    """

    sums: dict[str, np.ndarray] = field(default_factory=dict)  # code -> (days,) float64
    incomplete: dict[str, np.ndarray] = field(default_factory=dict)  # code -> (days,) bool
    live: dict[str, int] = field(default_factory=dict)  # code -> series not ended
    last: dict[str, int] = field(default_factory=dict)  # code -> latest observed column (-1: none)
    stale_count: dict[str, int] = field(default_factory=dict)
    stale_items: dict[str, list[list[Any]]] = field(default_factory=dict)  # code -> [[item, last col], ...]
    stale_from: dict[str, int] = field(default_factory=dict)  # code -> first column carried for a stale series
    ended: int = 0

    def add(self, other: "LineTotals") -> None:
        for code, sums in other.sums.items():
            if code in self.sums:
                self.sums[code] = self.sums[code] + sums
                self.incomplete[code] = self.incomplete[code] | other.incomplete[code]
                self.live[code] += other.live[code]
                self.last[code] = max(self.last[code], other.last[code])
            else:
                self.sums[code], self.incomplete[code] = sums.copy(), other.incomplete[code].copy()
                self.live[code], self.last[code] = other.live[code], other.last[code]
        for code, count in other.stale_count.items():
            self.stale_count[code] = self.stale_count.get(code, 0) + count
            listed = self.stale_items.setdefault(code, [])
            listed.extend(other.stale_items.get(code, [])[: max(0, STALE_ITEMS_LISTED - len(listed))])
            self.stale_from[code] = min(self.stale_from.get(code, 1 << 30), other.stale_from[code])
        self.ended += other.ended

    def history(self, code: str) -> np.ndarray:
        """The line's daily totals with missing days as NaN."""
        return np.where(self.incomplete[code], np.nan, self.sums[code])

    def actuals(self, code: str) -> np.ndarray:
        """The line's observed daily totals: also NaN where a stale series is carried at its level."""
        out = self.history(code)
        out[self.stale_from.get(code, out.size) :] = np.nan
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "sums": self.sums,
            "incomplete": self.incomplete,
            "live": self.live,
            "last": self.last,
            "stale_count": self.stale_count,
            "stale_items": self.stale_items,
            "stale_from": self.stale_from,
            "ended": self.ended,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "LineTotals":
        if not data:
            return cls()
        return cls(**{k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()})


def line_totals(values: np.ndarray, series: Sequence[tuple[str, str]], stale_days: int) -> LineTotals:
    """The line totals of some series (rows of `values`, NaN = missing); see `LineTotals`."""
    values = np.asarray(values, dtype=np.float32)
    n, days = values.shape
    out = LineTotals()
    if n == 0:
        return out
    observed = ~np.isnan(values)
    any_obs = observed.any(axis=1)
    first = np.where(any_obs, np.argmax(observed, axis=1), days)
    last = np.where(any_obs, days - 1 - np.argmax(observed[:, ::-1], axis=1), -1)
    gap = days - 1 - last
    ended = ~any_obs | (gap > ended_after(stale_days))
    stale = any_obs & ~ended & (gap > stale_days)
    late = any_obs & ~ended & ~stale & (gap > 0)
    col = np.arange(days)
    inside = (col >= first[:, None]) & (col <= last[:, None])
    trailing = col > last[:, None]
    incomplete = (~observed & inside) | (trailing & late[:, None])
    contrib = np.where(observed, values, np.float32(0.0))
    if stale.any():
        rows = np.flatnonzero(stale)
        contrib[rows] = np.where(trailing[rows], _weekday_levels(values[rows], last[rows])[:, col % 7], contrib[rows])
    contrib[ended] = 0.0
    incomplete[ended] = False

    codes = list(dict.fromkeys(line for _, line in series))
    lookup = {code: i for i, code in enumerate(codes)}
    line_index = np.array([lookup[line] for _, line in series], dtype=np.int64)
    order = np.argsort(line_index, kind="stable")
    sorted_index = line_index[order]
    starts = np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1]])
    sums = np.add.reduceat(contrib[order], starts, axis=0, dtype=np.float64)
    gaps = np.logical_or.reduceat(incomplete[order], starts, axis=0)
    for j, start in enumerate(starts):
        code = codes[sorted_index[start]]
        members = order[start : (starts[j + 1] if j + 1 < len(starts) else n)]
        out.sums[code] = sums[j]
        out.incomplete[code] = gaps[j]
        out.live[code] = int((~ended[members]).sum())
        out.last[code] = int(last[members].max())
        stale_members = members[stale[members]]
        if stale_members.size:
            out.stale_count[code] = int(stale_members.size)
            out.stale_items[code] = [[series[i][0], int(last[i])] for i in stale_members[:STALE_ITEMS_LISTED]]
            out.stale_from[code] = int(last[stale_members].min()) + 1
    out.ended = int((ended & any_obs).sum())
    return out


def _weekday_levels(values: np.ndarray, last: np.ndarray, weeks: int = 4) -> np.ndarray:
    """(rows, 7): each row's mean by column phase (col % 7) over its last `weeks` observed weeks."""
    span = 7 * weeks
    cols = last[:, None] - np.arange(span - 1, -1, -1)
    valid = cols >= 0
    window = np.where(valid, values[np.arange(len(values))[:, None], np.clip(cols, 0, None)], np.nan)
    levels = np.empty((len(values), 7))
    with np.errstate(all="ignore"):
        overall = np.nanmean(window, axis=1)
        for phase in range(7):
            picked = np.where((cols % 7) == phase, window, np.nan)
            levels[:, phase] = np.nanmean(picked, axis=1)
    levels = np.where(np.isnan(levels), overall[:, None], levels)
    return np.nan_to_num(levels, nan=0.0).astype(np.float32)


# --- capacity -------------------------------------------------------------------------------------


def capacity_severity(probability: float, levels: tuple[float, float, float] = DEFAULT_CAPACITY_LEVELS) -> str | None:
    """Severity of a line whose load exceeds capacity with `probability`; `levels` = (high, medium, low)."""
    p = round(float(probability), _ROUND)
    high, medium, low = levels
    if p >= high:
        return "high"
    if p >= medium:
        return "medium"
    if p >= low:
        return "low"
    return None


def line_capacity_alerts(
    codes: Sequence[str],
    histories: np.ndarray,
    capacities: Sequence[float],
    horizon: int,
    horizon_start: date,
    *,
    items: Mapping[str, int] | None = None,
    bands: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
    line_names: Mapping[str, str] | None = None,
    stale: Sequence[str] = (),
    levels: tuple[float, float, float] = DEFAULT_CAPACITY_LEVELS,
) -> list[dict[str, Any]]:
    """Capacity alerts of lines whose daily totals are the rows of `histories` (NaN = missing).

    One call of the engine's `exceedance_probability` for all the lines (it pools what it learns
    about forecast errors over them). `bands` are the lines' daily (P10, P50, P90) forecasts.
    """
    if not len(codes):
        return []
    caps = np.asarray(capacities, dtype=np.float64)
    probability, figures = exceedance_probability(np.asarray(histories, dtype=np.float64), caps, horizon)
    alerts = []
    for i, code in enumerate(codes):
        p = float(probability[i]) if np.isfinite(probability[i]) else 0.0
        severity = capacity_severity(min(1.0, max(0.0, p)), levels)
        if severity is None:
            continue
        fig = figures[i] if i < len(figures) else {}
        band = (bands or {}).get(code)
        p10, p50, p90 = (
            (np.asarray(b, dtype=np.float64) for b in band)
            if band is not None
            else (np.zeros(0), np.zeros(0), np.zeros(0))
        )
        peak_p50 = float(fig.get("peak_p50", p50.max() if p50.size else fig.get("peak_forecast", 0.0)))
        peak_p90 = float(fig.get("peak_p90", p90.max() if p90.size else peak_p50))
        peak = int(np.argmax(p50)) if p50.size else 0
        peak_day = (horizon_start + timedelta(days=peak)).isoformat()
        capacity = float(caps[i])
        name = (line_names or {}).get(code)
        label = f"{code} ({name})" if name and name != code else code
        out = {
            "line": code,
            "capacity": _num(capacity),
            "probability": _num(p, 4),
            "peak_load_p50": _num(peak_p50),
            "peak_load_p90": _num(peak_p90),
            "peak_date": peak_day,
            "utilisation": _num(peak_p50 / capacity, 4),
            "expected_overloaded_days": fig.get("expected_overloaded_days"),
            "method": fig.get("method"),
            "items": int((items or {}).get(code, 0)),
            "stale": code in stale,
            "horizon_start": horizon_start.isoformat(),
            "horizon_days": int(horizon),
            "forecast": [_num(v, 1) for v in p50],
            "forecast_p10": [_num(v, 1) for v in p10],
            "forecast_p90": [_num(v, 1) for v in p90],
        }
        pct = p * 100
        title = f"Line {code}: {pct:.0f}% probability of exceeding capacity within {horizon} days"
        message = (
            f"The load on line {label} exceeds its daily capacity of {capacity:,.0f} on some day of the next "
            f"{horizon} days with probability {pct:.0f}%: peak load P50 {peak_p50:,.0f}, P90 {peak_p90:,.0f}"
            + (f" (the P50 forecast peaks on {peak_day})." if p50.size else ".")
            + (" Some of its data is stale (see the stale_data alert)." if code in stale else "")
        )
        alerts.append(_alert(AlertType.CAPACITY, severity, title, message, f"line:{code}", out, horizon_start))
    return alerts


def capacity_warnings(
    totals: LineTotals,
    capacities: Mapping[str, float],
    horizon: int,
    horizon_start: date,
    line_names: Mapping[str, str] | None = None,
    bands: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
    counts: Mapping[str, int] | None = None,
    levels: tuple[float, float, float] = DEFAULT_CAPACITY_LEVELS,
) -> list[dict[str, Any]]:
    """One alert per line likely to exceed its capacity (lines without capacity or data are skipped)."""
    codes = [
        code
        for code in sorted(capacities)
        if float(capacities[code]) > 0
        and code in totals.sums
        and totals.live.get(code)
        and np.isfinite(totals.history(code)).any()
    ]
    if not codes:
        return []
    histories = np.vstack([totals.history(code) for code in codes])
    return line_capacity_alerts(
        codes,
        histories,
        [float(capacities[c]) for c in codes],
        horizon,
        horizon_start,
        items=counts or totals.live,
        bands=bands,
        line_names=line_names,
        stale=[c for c in codes if c in totals.stale_count],
        levels=levels,
    )


# --- stale data -----------------------------------------------------------------------------------


def stale_alerts(
    totals: LineTotals, horizon_start: date, stale_days: int, line_names: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One `stale_data` alert per line with stale series (or no live series at all)."""
    alerts = []
    end = horizon_start - timedelta(days=1)
    days = next(iter(totals.sums.values())).size if totals.sums else 0
    first_day = end - timedelta(days=days - 1)
    for code in sorted(totals.sums):
        count = totals.stale_count.get(code, 0)
        dead = totals.live.get(code, 0) == 0
        if not count and not dead:
            continue
        items = sorted(totals.stale_items.get(code, []), key=lambda pair: (pair[1], pair[0]))
        listed = [
            {"item": item, "last_observed": (first_day + timedelta(days=int(col))).isoformat()} for item, col in items
        ]
        line_last = totals.last.get(code, -1)
        last_day = (first_day + timedelta(days=line_last)).isoformat() if line_last >= 0 else None
        oldest = listed[0]["last_observed"] if listed else last_day
        missing = (end - date.fromisoformat(oldest)).days if oldest else None
        name = (line_names or {}).get(code)
        label = f"{code} ({name})" if name and name != code else code
        figures = {
            "line": code,
            "stale_series": count,
            "live_series": int(totals.live.get(code, 0)),
            "stale_days": int(stale_days),
            "oldest_last_observed": oldest,
            "days_missing": missing,
            "line_last_observed": last_day,
            "horizon_start": horizon_start.isoformat(),
            "items": listed,
        }
        if dead:
            title = f"Line {code}: no current data"
            message = (
                f"No series of line {label} has data after {last_day}; its load is not forecast "
                f"(the horizon starts {horizon_start.isoformat()})."
            )
        else:
            title = f"Line {code}: {count} series with stale data"
            shown = ", ".join(f"{i['item']} (last {i['last_observed']})" for i in listed[:5])
            more = f" and {count - min(count, 5)} more" if count > 5 else ""
            message = (
                f"{count} series of line {label} have no data for more than {stale_days} day(s) before "
                f"the horizon start {horizon_start.isoformat()}: {shown}{more}. Their missing days are "
                f"not read as zero; they are forecast from their last data and carried in the line's "
                f"load at their recent level."
            )
        alerts.append(_alert(AlertType.STALE, "medium", title, message, f"line:{code}", figures, horizon_start))
    return alerts


# --- spikes ---------------------------------------------------------------------------------------


def score_level(score: float) -> float:
    """A spike score setting (a robust z-score) as a quantile level: 4 -> 0.99997, 8 -> 1 - 1e-15."""
    return min(NormalDist().cdf(float(score)), 1.0 - 1e-15)


def _day_thresholds(history: np.ndarray, k: int, levels: Sequence[float]) -> list[np.ndarray]:
    """Thresholds at `levels` for recent day k of each row, from the 8 weeks before that day."""
    days = history.shape[1]
    cut = days - SPIKE_RECENT_DAYS + k
    window = history[:, max(0, cut - SPIKE_BASELINE_DAYS) : cut]
    enough = (~np.isnan(window)).sum(axis=1) >= SPIKE_MIN_BASELINE_DAYS
    out = []
    for level in levels:
        limit = np.asarray(spike_threshold(window, level), dtype=np.float64)
        out.append(np.where(enough & np.isfinite(limit), limit, np.inf))
    return out


def spike_thresholds(history: np.ndarray, thresholds: Thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(baseline median (series,), medium (series, 7), high (series, 7)) thresholds, or None when
    the history is too short.

    Column k is the threshold for recent day k (the 7 last columns), from the engine's count
    distribution of the 8 weeks before that day, so each day is judged against its own weekday;
    a forecast day j is judged against column j % 7 (the same weekday). The levels are the
    SPIKE_*_SCORE settings read as normal scores (4 -> one day in 30,000). A series with fewer
    than SPIKE_MIN_BASELINE_DAYS observed days before a day gets +inf: no alert.
    """
    history = np.asarray(history, dtype=np.float64)
    n, days = history.shape
    if days < SPIKE_RECENT_DAYS + SPIKE_MIN_BASELINE_DAYS:
        return None
    levels = (score_level(thresholds.spike_medium_score), score_level(thresholds.spike_high_score))
    medium, high = np.empty((n, SPIKE_RECENT_DAYS)), np.empty((n, SPIKE_RECENT_DAYS))
    for k in range(SPIKE_RECENT_DAYS):
        medium[:, k], high[:, k] = _day_thresholds(history, k, levels)
    return _baseline_median(history), medium, high


def _baseline_median(history: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.nan_to_num(
            np.nanmedian(history[:, -(SPIKE_RECENT_DAYS + SPIKE_BASELINE_DAYS) : -SPIKE_RECENT_DAYS], axis=1)
        )


def demand_spikes(
    history: np.ndarray,
    forecast: np.ndarray,
    series: Sequence[tuple[str, str]],
    horizon_start: date,
    thresholds: Thresholds,
) -> list[dict[str, Any]]:
    """One alert per (item, line) whose recent raw demand or forecast exceeds its count thresholds.

    A day is a spike when it is at or above its threshold (see `spike_thresholds`) and above every
    observed day of the seven weeks before the recent week (a new high: a level already seen
    then is no spike now). That gate is cheap, so the thresholds are computed only for the days
    it lets through: 10,000 series cost a few hundredths of a second instead of seconds.
    """
    history = np.asarray(history, dtype=np.float64)
    forecast = np.asarray(forecast, dtype=np.float64)
    n, days = history.shape
    if n == 0 or days < SPIKE_RECENT_DAYS + SPIKE_MIN_BASELINE_DAYS:
        return []
    common = history[:, max(0, days - SPIKE_BASELINE_DAYS) : days - SPIKE_RECENT_DAYS]
    observed = ~np.isnan(common)
    gate = np.where(observed, common, -np.inf).max(axis=1)
    gate = np.where(observed.sum(axis=1) > 0, gate, np.inf)  # nothing before: nothing to compare with
    recent = history[:, -SPIKE_RECENT_DAYS:]
    steps = forecast.shape[1]
    phase = np.arange(steps) % SPIKE_RECENT_DAYS
    # Every day as a column: the recent week's raw values, then the forecast's.
    value = np.hstack([np.where(np.isnan(recent), -np.inf, recent), forecast])
    candidate = value > gate[:, None]
    if not candidate.any():
        return []
    levels = (score_level(thresholds.spike_medium_score), score_level(thresholds.spike_high_score))
    med = np.full(value.shape, np.inf)
    hi = np.full(value.shape, np.inf)
    for k in range(SPIKE_RECENT_DAYS):
        columns = np.r_[k, SPIKE_RECENT_DAYS + np.flatnonzero(phase == k)]
        rows = np.flatnonzero(candidate[:, columns].any(axis=1))
        if rows.size:
            medium_k, high_k = _day_thresholds(history[rows], k, levels)
            med[np.ix_(rows, columns)] = medium_k[:, None]
            hi[np.ix_(rows, columns)] = high_k[:, None]
    over = candidate & (np.round(value, _ROUND) >= np.round(med, _ROUND))
    hits = np.flatnonzero(over.any(axis=1))
    baseline = _baseline_median(history[hits]) if hits.size else np.zeros(0)

    alerts = []
    for b, i in enumerate(hits):
        # The day furthest above its medium threshold (relative to the medium-high gap) is the peak.
        with np.errstate(invalid="ignore"):
            width = hi[i] - med[i]
            gap = np.where(np.isfinite(width) & (width > 0), width, 1.0)
            excess = np.where(over[i], (value[i] - med[i]) / gap, -np.inf)
        j = int(np.argmax(excess))
        severity = "high" if round(value[i, j], _ROUND) >= round(hi[i, j], _ROUND) else "medium"
        item, line = series[i]
        from_recent = j < SPIKE_RECENT_DAYS
        day = horizon_start + timedelta(days=j - SPIKE_RECENT_DAYS)
        recent_max = float(np.nanmax(recent[i])) if np.isfinite(recent[i]).any() else None
        figures = {
            "item": item,
            "line": line,
            "baseline": _num(baseline[b]),
            "previous_max": _num(gate[i]),
            "medium_threshold": _num(med[i, j]),
            "high_threshold": _num(hi[i, j]) if np.isfinite(hi[i, j]) else None,
            "peak": _num(value[i, j]),
            "peak_date": day.isoformat(),
            "trigger": "recent" if from_recent else "forecast",
            "recent_max": _num(recent_max) if recent_max is not None else None,
            "forecast_max": _num(forecast[i].max()) if steps else None,
            "horizon_start": horizon_start.isoformat(),
            "forecast": [_num(v, 1) for v in forecast[i]],
        }
        threshold = hi[i, j] if severity == "high" else med[i, j]
        source = "recent demand" if from_recent else "forecast demand"
        title = f"Demand spike: {item} on {line} ({value[i, j]:,.0f} against a usual at most {med[i, j]:,.0f})"
        message = (
            f"The {source} of {item} on line {line} reaches {value[i, j]:,.0f} on {day.isoformat()}, above the "
            f"{severity} threshold of {threshold:,.1f} from its count distribution over the 8 weeks before "
            f"(median {baseline[b]:,.0f}; highest of the 7 weeks before the last one: {gate[i]:,.0f})."
        )
        alerts.append(_alert(AlertType.SPIKE, severity, title, message, f"item:{item}@{line}", figures, horizon_start))
    return alerts


# --- all rules --------------------------------------------------------------------------------------


def line_loads(forecast: np.ndarray, series_lines: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Each line's summed daily mean forecast and its number of series (sums of slices add up)."""
    forecast = np.asarray(forecast, dtype=np.float64)
    codes = list(dict.fromkeys(series_lines))
    if not codes:
        return {}, {}
    index = {code: i for i, code in enumerate(codes)}
    rows = np.array([index[code] for code in series_lines], dtype=np.int64)
    load = np.zeros((len(codes), forecast.shape[1]))
    np.add.at(load, rows, forecast)
    counts = np.bincount(rows, minlength=len(codes))
    return {code: load[i] for i, code in enumerate(codes)}, {code: int(counts[i]) for i, code in enumerate(codes)}


def evaluate(
    history: np.ndarray,
    forecast: np.ndarray,
    series: Sequence[tuple[str, str]],
    capacities: Mapping[str, float],
    horizon_start: date,
    thresholds: Thresholds,
    line_names: Mapping[str, str] | None = None,
    stale_days: int = 3,
) -> list[dict[str, Any]]:
    """All rules on in-memory arrays, most severe first (`series` rows are (item, line code))."""
    totals = line_totals(history, series, stale_days)
    horizon = int(np.asarray(forecast).shape[1])
    _, counts = line_loads(forecast, [line for _, line in series])
    alerts = capacity_warnings(
        totals, capacities, horizon, horizon_start, line_names, counts=counts, levels=capacity_levels(thresholds)
    )
    alerts += stale_alerts(totals, horizon_start, stale_days, line_names)
    alerts += demand_spikes(history, forecast, series, horizon_start, thresholds)
    return sort_alerts(alerts)


def sort_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most severe first, then by type and subject: the same order however the alerts were computed."""
    return sorted(alerts, key=lambda a: (_SEVERITY_ORDER[a["severity"]], a["type"], a["subject"]))


def _alert(
    alert_type: AlertType,
    severity: str,
    title: str,
    message: str,
    subject: str,
    figures: dict[str, Any],
    horizon_start: date,
) -> dict[str, Any]:
    return {
        "type": alert_type.value,
        "severity": severity,
        "title": title[:200],
        "message": message,
        "subject": subject,
        "figures": figures,
        "fingerprint": fingerprint(alert_type.value, subject, horizon_start),
    }
