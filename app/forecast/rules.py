"""Alert rules: turn forecasts and recent history into alert candidates.

A candidate is a dict {type, severity, title, message, subject, figures, fingerprint}; the job
stores it, deduplicating on `fingerprint` so that re-running within the same week updates the
open alert instead of adding another.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Protocol

import numpy as np

SPIKE_RECENT_DAYS = 7  # "recent" demand: the last week of history
SPIKE_BASELINE_DAYS = 56  # baseline: the 8 weeks before the recent week
SPIKE_MIN_BASELINE_DAYS = 14  # fewer days than this give no baseline, hence no spike alert
MAD_SCALE = 1.4826  # MAD -> standard deviation of a normal distribution
SPREAD_MIN_SHARE = 0.05  # spread floor: 5 % of the baseline...
SPREAD_MIN_ABS = 1.0  # ...and at least one unit, so flat series do not alert on noise
_ROUND = 9  # thresholds compare rounded figures, so 0.9 exactly is 0.9 whatever the float sum
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


class Thresholds(Protocol):
    capacity_high_utilisation: float
    capacity_medium_utilisation: float
    capacity_low_utilisation: float
    spike_medium_score: float
    spike_high_score: float


def window_id(horizon_start: date) -> str:
    """ISO year-week of the horizon's first day: stable across the runs of one week."""
    year, week, _ = horizon_start.isocalendar()
    return f"{year}-W{week:02d}"


def fingerprint(alert_type: str, subject: str, horizon_start: date) -> str:
    return f"{alert_type}|{subject}|{window_id(horizon_start)}"


def _num(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def capacity_severity(utilisation: float, t: Thresholds) -> str | None:
    u = round(utilisation, _ROUND)
    if u >= t.capacity_high_utilisation:
        return "high"
    if u >= t.capacity_medium_utilisation:
        return "medium"
    if u >= t.capacity_low_utilisation:
        return "low"
    return None


def spike_severity(score: float, t: Thresholds) -> str | None:
    s = round(score, _ROUND)
    if s >= t.spike_high_score:
        return "high"
    if s >= t.spike_medium_score:
        return "medium"
    return None


def line_loads(forecast: np.ndarray, series_lines: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Each line's summed daily forecast and its number of series (the capacity rule's input).

    Sums add up per line, so the loads of slices of the series (fan-out chunks) add up to the
    loads of the whole.
    """
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


def capacity_warnings(forecast: np.ndarray, series_lines: Sequence[str], capacities: Mapping[str, float],
                      horizon_start: date, thresholds: Thresholds,
                      line_names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """One alert per line whose peak daily forecast load reaches the low threshold or more."""
    forecast = np.asarray(forecast, dtype=np.float64)
    if forecast.size == 0:
        return []
    loads, counts = line_loads(forecast, series_lines)
    return capacity_warnings_from_loads(loads, counts, capacities, horizon_start, thresholds, line_names)


def capacity_warnings_from_loads(loads: Mapping[str, np.ndarray], counts: Mapping[str, int],
                                 capacities: Mapping[str, float], horizon_start: date, thresholds: Thresholds,
                                 line_names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """The capacity rule on each line's summed daily forecast (lines without capacity are skipped)."""
    alerts = []
    for code, capacity in capacities.items():
        capacity = float(capacity)
        daily = loads.get(code)
        if capacity <= 0 or daily is None or not counts.get(code) or len(daily) == 0:
            continue  # no capacity on record (or no items): utilisation is undefined
        daily = np.asarray(daily, dtype=np.float64)
        util = daily / capacity
        peak = int(np.argmax(daily))
        severity = capacity_severity(util[peak], thresholds)
        if severity is None:
            continue
        over = np.flatnonzero(np.round(util, _ROUND) >= 1.0)
        first_over = (horizon_start + timedelta(days=int(over[0]))).isoformat() if over.size else None
        peak_day = (horizon_start + timedelta(days=peak)).isoformat()
        name = (line_names or {}).get(code)
        label = f"{code} ({name})" if name and name != code else code
        subject = f"line:{code}"
        figures = {
            "line": code,
            "capacity": _num(capacity),
            "peak_load": _num(daily[peak]),
            "peak_date": peak_day,
            "utilisation": _num(util[peak], 4),
            "mean_utilisation": _num(util.mean(), 4),
            "overloaded_days": int(over.size),
            "first_overloaded_date": first_over,
            "items": int(counts[code]),
            "horizon_start": horizon_start.isoformat(),
            "horizon_days": int(daily.size),
            "forecast": [_num(v, 1) for v in daily],
        }
        pct = util[peak] * 100
        title = f"Line {code} forecast at {pct:.0f}% of capacity"
        message = (
            f"Forecast load on line {label} peaks at {daily[peak]:,.0f} units on {peak_day}, "
            f"{pct:.0f}% of its daily capacity of {capacity:,.0f} "
            f"(mean {util.mean() * 100:.0f}% over the next {daily.size} days; "
            f"{over.size} day(s) at or over capacity"
            + (f", the first on {first_over})." if first_over else ").")
        )
        alerts.append(_alert("capacity_warning", severity, title, message, subject, figures, horizon_start))
    return alerts


def spike_baseline(history: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Median and robust spread of the weeks before the recent week, per series (None: too short)."""
    history = np.asarray(history, dtype=np.float64)
    base = history[:, -(SPIKE_RECENT_DAYS + SPIKE_BASELINE_DAYS):-SPIKE_RECENT_DAYS]
    if base.shape[1] < SPIKE_MIN_BASELINE_DAYS:
        return None
    median = np.median(base, axis=1)
    mad = np.median(np.abs(base - median[:, None]), axis=1)
    spread = np.maximum.reduce([MAD_SCALE * mad, SPREAD_MIN_SHARE * np.abs(median), np.full_like(median, SPREAD_MIN_ABS)])
    return median, spread


def demand_spikes(history: np.ndarray, forecast: np.ndarray, series: Sequence[tuple[str, str]],
                  horizon_start: date, thresholds: Thresholds) -> list[dict[str, Any]]:
    """One alert per (item, line) whose recent or forecast peak is far above its baseline."""
    history = np.asarray(history, dtype=np.float64)
    forecast = np.asarray(forecast, dtype=np.float64)
    if history.shape[0] == 0:
        return []
    stats = spike_baseline(history)
    if stats is None:
        return []
    baseline, spread = stats
    recent = history[:, -SPIKE_RECENT_DAYS:]
    recent_max = recent.max(axis=1)
    fc_max = forecast.max(axis=1) if forecast.shape[1] else np.full(len(history), -np.inf)
    peak = np.maximum(recent_max, fc_max)
    score = (peak - baseline) / spread
    hits = np.flatnonzero(np.round(score, _ROUND) >= min(thresholds.spike_medium_score, thresholds.spike_high_score))

    alerts = []
    for i in hits:
        severity = spike_severity(score[i], thresholds)
        if severity is None:
            continue
        item, line = series[i]
        from_recent = recent_max[i] >= fc_max[i]
        if from_recent:
            day = horizon_start - timedelta(days=SPIKE_RECENT_DAYS - int(np.argmax(recent[i])))
        else:
            day = horizon_start + timedelta(days=int(np.argmax(forecast[i])))
        source = "recent demand" if from_recent else "forecast demand"
        subject = f"item:{item}@{line}"
        figures = {
            "item": item,
            "line": line,
            "baseline": _num(baseline[i]),
            "spread": _num(spread[i]),
            "score": _num(score[i], 2),
            "peak": _num(peak[i]),
            "peak_date": day.isoformat(),
            "trigger": "recent" if from_recent else "forecast",
            "recent_max": _num(recent_max[i]),
            "forecast_max": _num(fc_max[i]),
            "horizon_start": horizon_start.isoformat(),
            "forecast": [_num(v, 1) for v in forecast[i]],
        }
        title = f"Demand spike: {item} on {line} ({score[i]:.1f} spreads above baseline)"
        message = (
            f"The {source} of {item} on line {line} peaks at {peak[i]:,.0f} on {day.isoformat()}, "
            f"{score[i]:.1f} robust spreads above its 8-week baseline of {baseline[i]:,.0f} "
            f"(spread {spread[i]:,.1f})."
        )
        alerts.append(_alert("demand_spike", severity, title, message, subject, figures, horizon_start))
    return alerts


def evaluate(history: np.ndarray, forecast: np.ndarray, series: Sequence[tuple[str, str]],
             capacities: Mapping[str, float], horizon_start: date, thresholds: Thresholds,
             line_names: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """All rules, most severe first. `series` rows are (item, line code) matching the array rows."""
    alerts = capacity_warnings(forecast, [line for _, line in series], capacities, horizon_start,
                               thresholds, line_names)
    alerts += demand_spikes(history, forecast, series, horizon_start, thresholds)
    return sort_alerts(alerts)


def sort_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most severe first, then by type and subject: the same order however the alerts were computed."""
    return sorted(alerts, key=lambda a: (_SEVERITY_ORDER[a["severity"]], a["type"], a["subject"]))


def _alert(alert_type: str, severity: str, title: str, message: str, subject: str,
           figures: dict[str, Any], horizon_start: date) -> dict[str, Any]:
    return {
        "type": alert_type,
        "severity": severity,
        "title": title[:200],
        "message": message,
        "subject": subject,
        "figures": figures,
        "fingerprint": fingerprint(alert_type, subject, horizon_start),
    }
