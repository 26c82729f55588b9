"""Additive Holt-Winters (damped trend, weekly season) fitted for many series at once.

Every series is fitted in one NumPy pass per time step: the state arrays have the shape
(parameter combos, series), so the Python loop runs over days, never over series. Each series
then keeps the combo with the smallest one-step-ahead error over its last weeks, which gives
per-series smoothing without an optimiser (and without SciPy).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

PERIOD = 7
PARAM_NAMES = ("alpha", "beta", "gamma", "phi")

# alpha: level, beta: trend (as a share of alpha), gamma: season (as a share of 1 - alpha),
# phi: trend damping. 3 x 2 x 2 x 2 = 24 combos keep 10,000 series fast.
ALPHAS = (0.05, 0.2, 0.5)
BETAS = (0.02, 0.1)
GAMMAS = (0.05, 0.3)
PHIS = (0.95, 1.0)
# An undamped trend must beat the damped one by this factor to be chosen: damped trends
# extrapolate noise less wildly, while an exact trend (zero error) still wins.
UNDAMPED_PENALTY = 1.02

FIT_DAYS = 364  # the model only looks at the last 52 weeks
EVAL_DAYS = 56  # parameters are chosen on the last 8 weeks of one-step errors
INIT_WEEKS = 4  # level, trend and season start from the first weeks of the fit window
BLOCK_CELLS = 48_000  # combos x series per block: ~12 state arrays of 384 KB


@dataclass(frozen=True)
class ForecastResult:
    """Forecasts and the fitted model of each series (rows follow the input rows)."""

    forecast: np.ndarray  # (series, horizon), clipped at 0
    params: dict[str, np.ndarray]  # name -> (series,) chosen alpha, beta, gamma, phi
    fitted_error: np.ndarray  # (series,) RMSE of the one-step errors on the evaluation window
    level: np.ndarray  # (series,) final level
    trend: np.ndarray  # (series,) final trend
    season: np.ndarray  # (series, 7) final seasonal offsets, indexed by the forecast's day phase


def param_grid() -> np.ndarray:
    """The (combos, 4) grid of (alpha, beta, gamma, phi)."""
    return np.array(list(itertools.product(ALPHAS, BETAS, GAMMAS, PHIS)), dtype=np.float64)


def forecast(history: np.ndarray, horizon: int, *, fit_days: int = FIT_DAYS,
             eval_days: int = EVAL_DAYS) -> ForecastResult:
    """Forecast `horizon` days after the last column of `history` (series x days, or one series).

    Missing values should already be filled (NaN counts as 0); only the last `fit_days` days
    are used. Returns forecasts >= 0.
    """
    y = np.asarray(history, dtype=np.float64)
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2:
        raise ValueError("history must be 1-D or 2-D (series x days)")
    if horizon < 0:
        raise ValueError("horizon must be >= 0")
    y = np.nan_to_num(y[:, -fit_days:] if fit_days else y, nan=0.0, posinf=0.0, neginf=0.0)
    n, days = y.shape
    grid = param_grid()
    if n == 0 or days == 0:
        return _empty(n, horizon, grid)

    # Series are processed in blocks only so that a block's state stays in cache (threads
    # over blocks measured no faster on 2 cores: the loop is memory-bound).
    block = max(1, BLOCK_CELLS // len(grid))
    parts = [_fit_block(y[i:i + block], grid, eval_days) for i in range(0, n, block)]
    best, level, trend, season, rmse = (np.concatenate(p) for p in zip(*parts))

    phase = (days + np.arange(horizon)) % PERIOD  # season slot of each forecast day
    phi = grid[best, 3][:, None]
    steps = np.arange(1, horizon + 1)
    damp = np.where(phi == 1.0, steps, phi * (1 - phi ** steps) / np.where(phi == 1.0, 1.0, 1 - phi))
    out = level[:, None] + damp * trend[:, None] + season[:, phase]
    np.maximum(out, 0.0, out=out)
    params = {name: grid[best, i].copy() for i, name in enumerate(PARAM_NAMES)}
    season_out = season[:, (days + np.arange(PERIOD)) % PERIOD]
    return ForecastResult(out, params, rmse, level, trend, season_out)


def _empty(n: int, horizon: int, grid: np.ndarray) -> ForecastResult:
    z = np.zeros(n)
    return ForecastResult(np.zeros((n, horizon)), {k: np.full(n, grid[0, i]) for i, k in enumerate(PARAM_NAMES)},
                          z, z.copy(), z.copy(), np.zeros((n, PERIOD)))


def _initial_state(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level (just before day 0), trend and season (by day phase) from the first weeks.

    Exact for constant, linear and purely weekly series, so those need no burn-in.
    """
    n, days = y.shape
    weeks = min(INIT_WEEKS, days // PERIOD)
    if weeks == 0:
        return y.mean(axis=1), np.zeros(n), np.zeros((n, PERIOD))
    w = y[:, :weeks * PERIOD].reshape(n, weeks, PERIOD)
    means = w.mean(axis=2)  # (n, weeks), each centred on the week's day 3
    trend = (means[:, -1] - means[:, 0]) / (PERIOD * (weeks - 1)) if weeks > 1 else np.zeros(n)
    offsets = np.arange(PERIOD) - (PERIOD - 1) / 2
    season = (w - means[:, :, None] - trend[:, None, None] * offsets).mean(axis=1)
    season -= season.mean(axis=1, keepdims=True)
    level = means[:, 0] - trend * (PERIOD + 1) / 2
    return level, trend, season


def _fit_block(y: np.ndarray, grid: np.ndarray, eval_days: int):
    """Run every combo on every series of the block; keep each series' best combo."""
    n, days = y.shape
    g = len(grid)
    level0, trend0, season0 = _initial_state(y)
    level = np.repeat(level0[None, :], g, axis=0)
    trend = np.repeat(trend0[None, :], g, axis=0)
    season = np.repeat(season0.T[:, None, :], g, axis=1).copy()  # (phase, combo, series)
    alpha = grid[:, 0:1]
    beta = grid[:, 0:1] * grid[:, 1:2]
    gamma = (1 - grid[:, 0:1]) * grid[:, 2:3]
    phi = grid[:, 3:4]

    yt = np.ascontiguousarray(y.T)
    warm = min(days, INIT_WEEKS * PERIOD)
    first_eval = max(days - eval_days, warm if days > warm else 0)
    sse = np.zeros((g, n))
    err = np.empty((g, n))
    tmp = np.empty((g, n))
    for t in range(days):
        s = season[t % PERIOD]
        np.multiply(trend, phi, out=trend)  # damped trend
        np.add(level, trend, out=level)  # one-step level forecast
        np.subtract(yt[t], level, out=err)
        np.subtract(err, s, out=err)
        np.multiply(err, alpha, out=tmp)
        np.add(level, tmp, out=level)
        np.multiply(err, beta, out=tmp)
        np.add(trend, tmp, out=trend)
        np.multiply(err, gamma, out=tmp)
        np.add(s, tmp, out=s)
        if t >= first_eval:
            np.multiply(err, err, out=tmp)
            np.add(sse, tmp, out=sse)

    score = sse * np.where(phi == 1.0, UNDAMPED_PENALTY, 1.0)
    best = np.argmin(score, axis=0)
    cols = np.arange(n)
    rmse = np.sqrt(sse[best, cols] / max(1, days - first_eval))
    return best, level[best, cols], trend[best, cols], season[:, best, cols].T, rmse
