"""Probability that a line's daily load exceeds its capacity on at least one day of the horizon.

Why this way: the line total is forecast as its own series (not as the sum of its items' means),
so the correlation between items (a store's busy Saturday lifts all of them) is in the data the
model sees, and the variance of the total is not the (much too small) sum of independent item
variances. The distribution of the *maximum* over the horizon needs the joint behaviour of the
days: an error that persists (the level is off for two weeks) makes one overload far likelier
than independent daily errors would. So the probability comes from bootstrapped error PATHS:
the engine's own rolling-origin backtest keeps, for every origin, the whole 1..H-day error path
of the line's forecast; each path (scaled per line, pooled over the lines of the call so that a
handful of lines still gets hundreds of paths) is added to the line's mean forecast, and the
probability is the share of paths whose maximum exceeds the capacity. Within-path correlation,
skew and heavy tails come from the real errors, not from a normal assumption.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EXCEEDANCE_ORIGINS = 52  # backtest origins for line totals (lines are few: paths are cheap)
EXCEEDANCE_SPACING = 3  # days between origins: 52 origins cover about five months
MIN_PATHS = 30  # fewer complete paths than this: independent days from the P10/P90 spread instead
# Suggested severities of an overload warning by probability (the probabilities are calibrated:
# on the development data, lines given 0.6-0.8 overloaded 87% of the time, 0.2-0.4: 31%)
HIGH_PROBABILITY = 0.5
MEDIUM_PROBABILITY = 0.25
LOW_PROBABILITY = 0.1


def probability_severity(prob: float) -> str | None:
    """ "high" / "medium" / "low" for an exceedance probability, None below LOW_PROBABILITY or NaN."""
    if not prob >= LOW_PROBABILITY:  # also NaN
        return None
    return "high" if prob >= HIGH_PROBABILITY else "medium" if prob >= MEDIUM_PROBABILITY else "low"


def exceedance_probability(
    line_history: np.ndarray, capacity: np.ndarray, horizon: int
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(prob (lines,), figures per line) that each line's load exceeds `capacity` on some day of
    the next `horizon` days. `line_history` is (lines x days), NaN = missing (see `line_totals`).
    A line without a positive finite capacity gets NaN (no probability: no rule applies)."""
    from app.forecast.engine import _fit

    hist = np.asarray(line_history, dtype=np.float64)
    if hist.ndim == 1:
        hist = hist[None, :]
    cap = (
        np.broadcast_to(np.asarray(capacity, dtype=np.float64), (hist.shape[0],)).copy()
        if hist.ndim == 2
        else np.zeros(0)
    )
    fitted = _fit(
        hist, horizon, eval_horizon=horizon, origins=EXCEEDANCE_ORIGINS, spacing=EXCEEDANCE_SPACING, keep_paths=True
    )
    pred = fitted.prediction
    n = pred.mean.shape[0]
    prob = np.full(n, np.nan)
    paths = fitted.paths  # (O, H, n) in units of fitted.scale
    z = np.moveaxis(paths, -1, 0).reshape(-1, paths.shape[1])  # (O*n, H)
    z = z[np.isfinite(z).all(axis=1)]
    valid_cap = np.isfinite(cap) & (cap > 0)
    use_paths = valid_cap & (z.shape[0] >= MIN_PATHS)
    days_over = np.zeros(n)
    peak_p90 = np.zeros(n)
    _path_figures(pred.mean, fitted.scale, z, cap, np.flatnonzero(use_paths), prob, days_over, peak_p90)
    figures: list[dict[str, Any]] = []
    for i in range(n):
        mean = pred.mean[i]
        if use_paths[i]:
            source = "backtest error paths"
        elif valid_cap[i]:
            lo, hi = pred.quantiles[0, i], pred.quantiles[-1, i]
            sd = np.maximum((hi - lo) / 2.563, 1e-12)
            from statistics import NormalDist

            nd = NormalDist()
            p_day = np.array([1 - nd.cdf((cap[i] - m) / s) for m, s in zip(mean, sd)])
            prob[i] = float(1 - np.prod(1 - p_day))
            days_over[i] = float(p_day.sum())
            peak_p90[i] = float(hi.max())
            source = "independent days (too little history for paths)"
        else:
            days_over[i], peak_p90[i], source = 0.0, float(pred.quantiles[-1, i].max()), "no capacity"
        figures.append(
            {
                "probability": None if np.isnan(prob[i]) else round(float(prob[i]), 4),
                "capacity": round(float(cap[i]), 3) if np.isfinite(cap[i]) else None,
                "peak_forecast": round(float(mean.max()), 3),
                "peak_p90": round(float(peak_p90[i]), 3),
                "expected_overloaded_days": round(float(days_over[i]), 3),
                "paths": int(z.shape[0]),
                "method": str(pred.method[i]),
                "stale": bool(pred.stale[i]),
                "source": source,
            }
        )
    return prob, figures


def _path_figures(
    mean: np.ndarray,
    scale: np.ndarray,
    z: np.ndarray,
    cap: np.ndarray,
    lines: np.ndarray,
    prob: np.ndarray,
    days_over: np.ndarray,
    peak_p90: np.ndarray,
) -> None:
    """For each of `lines`: the share of error paths whose peak load exceeds the capacity, the
    mean number of days over it, and the P90 of the peak; written into `prob`, `days_over`,
    `peak_p90`.

    Every line is judged on all the pooled paths (lines x paths x horizon values), so this is
    the capacity rule's main cost. The loads are laid out day by path (the peak is then an
    element-wise maximum over the horizon's rows, not a reduction along 14-value rows) in one
    buffer reused for every line; the arithmetic is the one of `mean + scale * z` per line and
    the counts are exact, so the figures are the same to the last bit.
    """
    if not lines.size:
        return
    paths = z.shape[0]
    zt = np.ascontiguousarray(z.T)  # (horizon, paths)
    loads = np.empty(zt.shape, dtype=np.result_type(mean, scale, z))
    over = np.empty(zt.shape, dtype=bool)
    peaks = np.empty(paths, dtype=loads.dtype)
    for i in lines:
        np.multiply(scale[i], zt, out=loads)
        np.add(loads, mean[i][:, None], out=loads)
        np.max(loads, axis=0, out=peaks)
        np.greater(loads, cap[i], out=over)
        days_over[i] = np.count_nonzero(over) / paths
        prob[i] = np.count_nonzero(peaks > cap[i]) / paths
        peak_p90[i] = np.quantile(peaks, 0.9)
