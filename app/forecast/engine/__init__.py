"""The forecast engine's stable API: `predict(history, horizon) -> Prediction`.

The pipeline, the backtest and the benchmarks all forecast through this one function, so the
engine's methods can change without touching them. `history` is a (series x days) float array
on a common calendar whose last column is the day before the horizon; NaN marks a missing day
(never read as zero). Every output is finite and non-negative.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Prediction", "InvalidHistory", "predict", "DEFAULT_QUANTILES"]

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)


class InvalidHistory(ValueError):
    """The history or the arguments are not of the documented form."""


@dataclass(frozen=True)
class Prediction:
    """Forecasts for every series: `mean` (series x horizon), `quantiles` (q x series x horizon)."""

    mean: np.ndarray
    quantiles: np.ndarray
    quantile_levels: tuple[float, ...]
    method: np.ndarray  # (series,) str: the method chosen per series
    stale: np.ndarray  # (series,) bool: the series' data ends more than `stale_days` before the horizon
    last_observed: np.ndarray  # (series,) int: column index of the last observed day, -1 if none


def _validate(history: np.ndarray, horizon: int, quantiles: Sequence[float]) -> np.ndarray:
    values = np.asarray(history, dtype=np.float64)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2:
        raise InvalidHistory(f"history must be a (series x days) array, got {values.ndim} dimensions")
    if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) or not 1 <= horizon <= 366:
        raise InvalidHistory("horizon must be an integer from 1 to 366")
    for q in quantiles:
        if not 0.0 < float(q) < 1.0:
            raise InvalidHistory(f"quantile levels must lie strictly between 0 and 1, got {q!r}")
    return np.where(np.isfinite(values), values, np.nan)


def predict(history: np.ndarray, horizon: int, *, quantiles: Sequence[float] = DEFAULT_QUANTILES,
            stale_days: int = 3) -> Prediction:
    """Forecast `horizon` days after the last column for every row of `history`.

    Placeholder engine (weekday means of the last 4 observed weeks) until engine v2 lands;
    the signature and the guarantees are the contract.
    """
    values = _validate(history, horizon, quantiles)
    n, days = values.shape
    levels = tuple(float(q) for q in quantiles)
    observed = ~np.isnan(values)
    last = np.where(observed.any(axis=1), days - 1 - np.argmax(observed[:, ::-1], axis=1), -1)
    window = values[:, -28:] if days else np.zeros((n, 0))
    mean = np.zeros((n, horizon))
    if window.shape[1]:
        offset = days - window.shape[1]
        for step in range(horizon):
            weekday_cols = [c for c in range(window.shape[1]) if (offset + c) % 7 == (days + step) % 7]
            with np.errstate(all="ignore"):
                m = np.nanmean(window[:, weekday_cols], axis=1) if weekday_cols else np.full(n, np.nan)
                fallback = np.nanmean(window, axis=1)
            mean[:, step] = np.where(np.isnan(m), fallback, m)
    mean = np.nan_to_num(np.clip(mean, 0, None), nan=0.0, posinf=0.0)
    spread = np.sqrt(mean)
    from statistics import NormalDist

    qs = np.stack([np.clip(mean + NormalDist().inv_cdf(q) * spread, 0, None) for q in levels]) if levels \
        else np.zeros((0, n, horizon))
    stale = (days - 1 - last) > stale_days
    return Prediction(mean=mean, quantiles=qs, quantile_levels=levels,
                      method=np.array(["weekday_mean"] * n, dtype=object), stale=stale, last_observed=last)
