"""The engine functions the pipeline, the rules and the CLI call beyond `predict`, in one place.

Engine v2 (app/forecast/engine/, built in parallel) provides `exceedance_probability`,
`spike_threshold` and `run_backtest`. Until a name exists there, the MARKED FALLBACK below
stands in for it, so the service works and its tests run; once the engine has the name, the
engine's function is used and the fallback is dead code (delete it then).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from app.forecast import engine as _engine
from app.forecast.engine import predict

_NORMAL = NormalDist()
PEAK_DRAWS = 4000  # Monte Carlo draws of a line's horizon path (fallback only)


def score_level(score: float) -> float:
    """The settings' spike scores (robust z-scores) as quantile levels: 4 -> 0.99997, 8 -> 1 - 6e-16."""
    return min(float(_NORMAL.cdf(float(score))), 1.0 - 1e-15)


# ---------------------------------------------------------------------------------------------
# MARKED FALLBACK (engine v2 replaces these; remove when app.forecast.engine provides them).
# ---------------------------------------------------------------------------------------------

def _fallback_exceedance_probability(line_history: np.ndarray, capacity: np.ndarray, horizon: int
                                     ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(prob (lines,), figures per line): P(load > capacity on some day of the horizon), each line
    total forecast as its own series. Per-day normal laws from the engine's P10/P90, drawn with a
    common shock per path (the days of a line move together). NaN where there is no capacity."""
    hist = np.atleast_2d(np.asarray(line_history, dtype=np.float64))
    cap = np.broadcast_to(np.asarray(capacity, dtype=np.float64), (hist.shape[0],))
    prediction = predict(hist, horizon, quantiles=(0.1, 0.5, 0.9))
    rng = np.random.default_rng(0)
    common = rng.standard_normal((PEAK_DRAWS, 1))
    own = rng.standard_normal((PEAK_DRAWS, horizon))
    shocks = 0.7 * common + 0.714142842854285 * own
    prob = np.full(hist.shape[0], np.nan)
    figures = []
    for i in range(hist.shape[0]):
        p10, p50, p90 = prediction.quantiles[:, i]
        sigma = np.maximum((p90 - p10) / (2 * 1.2815515655446004), 1e-9)
        peaks = np.maximum(p50 + sigma * shocks, 0.0).max(axis=1)
        if np.isfinite(cap[i]) and cap[i] > 0:
            prob[i] = float((peaks > cap[i]).mean())
        figures.append({"probability": None if np.isnan(prob[i]) else round(float(prob[i]), 4),
                        "peak_forecast": round(float(prediction.mean[i].max()), 3),
                        "peak_p50": round(float(np.quantile(peaks, 0.5)), 3),
                        "peak_p90": round(float(np.quantile(peaks, 0.9)), 3), "source": "fallback"})
    return prob, figures


def _fallback_spike_threshold(history: np.ndarray, level: float = 0.999) -> np.ndarray:
    """(series,) threshold for the day after the last column from the last 8 weeks (NaN = missing):
    mean plus a normal quantile of a spread at least Poisson's (counts); +inf without 14 days."""
    base = np.atleast_2d(np.asarray(history, dtype=np.float64))[:, -56:]
    with np.errstate(all="ignore"):
        median = np.nanmedian(base, axis=1)
        mad = 1.4826 * np.nanmedian(np.abs(base - median[:, None]), axis=1)
        mean = np.nanmean(base, axis=1)
    variance = np.maximum(mad ** 2, np.maximum(mean, 0.0) + 0.25)
    z = _NORMAL.inv_cdf(float(level))
    threshold = np.maximum(median, mean) + z * np.sqrt(variance)
    enough = (~np.isnan(base)).sum(axis=1) >= 14
    return np.where(enough & np.isfinite(threshold), threshold, np.inf)


def _fallback_run_backtest(path: str, horizon: int = 14, origins: int = 6,
                           progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Rolling-origin backtest of `predict` against seasonal naive on a long CSV (dataset, series,
    line, date, value): MASE, sMAPE and P10-P90 coverage per method."""
    from app.forecast.longcsv import read_long_csv

    data = read_long_csv(path)
    values = data.values
    days = values.shape[1]
    results: dict[str, dict[str, list[float]]] = {"engine": {}, "seasonal_naive": {}}
    total = origins
    for k in range(origins):
        cut = days - horizon * (origins - k)
        if cut < 14:
            if progress:
                progress(k + 1, total)
            continue
        train, actual = values[:, :cut], values[:, cut:cut + horizon]
        prediction = predict(train, horizon)
        naive = _seasonal_naive(train, horizon)
        scale = _mase_scale(train)
        for name, p50, band in (("engine", prediction.quantiles[1], prediction.quantiles[[0, 2]]),
                                ("seasonal_naive", naive, None)):
            scores = _scores(p50, band, actual, scale)
            for metric, v in scores.items():
                results[name].setdefault(metric, []).append(v)
        if progress:
            progress(k + 1, total)
    methods = {name: {m: float(np.nanmean(v)) if v else float("nan") for m, v in r.items()}
               for name, r in results.items()}
    return {"file": str(path), "series": int(values.shape[0]), "days": int(days), "horizon": horizon,
            "origins": origins, "methods": methods}


def _seasonal_naive(train: np.ndarray, horizon: int) -> np.ndarray:
    last_week = train[:, -7:]
    with np.errstate(all="ignore"):
        fill = np.nanmean(train[:, -28:], axis=1)
    last_week = np.where(np.isnan(last_week), fill[:, None], last_week)
    return np.nan_to_num(np.tile(last_week, horizon // 7 + 1)[:, :horizon])


def _mase_scale(train: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.nanmean(np.abs(train[:, 7:] - train[:, :-7]), axis=1)


def _scores(p50: np.ndarray, band: np.ndarray | None, actual: np.ndarray, scale: np.ndarray) -> dict[str, float]:
    ok = ~np.isnan(actual)
    with np.errstate(all="ignore"):
        mae = np.nanmean(np.where(ok, np.abs(actual - p50), np.nan), axis=1)
        mase = mae / np.where(scale > 0, scale, np.nan)
        denominator = np.abs(actual) + np.abs(p50)
        smape = np.where(ok & (denominator > 0), 2 * np.abs(actual - p50) / denominator, np.where(ok, 0.0, np.nan))
        out = {"mase": float(np.nanmean(mase)), "smape": float(100 * np.nanmean(smape))}
        if band is not None:
            inside = (actual >= band[0]) & (actual <= band[1])
            out["coverage"] = float(inside[ok].mean()) if ok.any() else float("nan")
    return out


# ---------------------------------------------------------------------------------------------
# The names the service calls: the engine's when it has them.
# ---------------------------------------------------------------------------------------------

exceedance_probability: Callable[..., tuple[float, dict[str, Any]]] = getattr(
    _engine, "exceedance_probability", _fallback_exceedance_probability)
spike_threshold: Callable[..., np.ndarray] = getattr(_engine, "spike_threshold", _fallback_spike_threshold)


def run_backtest(path: str, horizon: int = 14, origins: int = 6,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The engine's backtest (app.forecast.backtest.run_backtest) when it exists, else the fallback."""
    try:
        from app.forecast.backtest import run_backtest as engine_backtest
    except ImportError:
        return _fallback_run_backtest(path, horizon, origins, progress)
    return engine_backtest(path, horizon, origins, progress=progress)


def history_days(default: int) -> int:
    """How many days of history the engine looks at (its `LOOKBACK_DAYS` when it says)."""
    value = getattr(_engine, "LOOKBACK_DAYS", None)
    return int(value) if isinstance(value, (int, np.integer)) and value > 0 else default


__all__: Sequence[str] = ("exceedance_probability", "spike_threshold", "run_backtest", "history_days",
                          "score_level")
