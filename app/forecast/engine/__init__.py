"""The forecast engine's stable API: `predict(history, horizon) -> Prediction`.

The pipeline, the backtest and the benchmarks all forecast through this one function, so the
engine's methods can change without touching them. `history` is a (series x days) float array
on a common calendar whose last column is the day before the horizon; NaN marks a missing day
(never read as zero). Every output is finite and non-negative. How the forecasts are made (and
why) is in `core.py`; the capacity probability in `capacity.py`; the spike threshold in
`spikes.py`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.forecast.engine import core

__all__ = [
    "Prediction",
    "InvalidHistory",
    "predict",
    "DEFAULT_QUANTILES",
    "LOOKBACK_DAYS",
    "exceedance_probability",
    "spike_threshold",
    "line_totals",
    "line_total_parts",
    "finish_line_totals",
    "count_series",
    "count_band_share",
]

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
LOOKBACK_DAYS = core.LOOKBACK_DAYS  # the engine reads at most this many trailing days: load no more
_SCAN_ROWS = 8192  # rows per chunk of the first pass over the history
_POOL_ROWS = 256  # series per block and class whose backtest errors enter the pooled interval shape
T_FALLBACK = True  # normal-quantile fallback widened to Student t by the origins behind each scale
STALE_LEAD_MAX = 28  # a band grows with the days since the last observation, up to four weeks of them
COUNT_EXACT_MAX_MEAN = 50.0  # above this mean a count band is normal (with continuity), not summed pmfs
_FMAX = np.finfo(np.float64).max  # outputs are clipped here: finite whatever the input


class InvalidHistory(ValueError):
    """The history or the arguments are not of the documented form."""


@dataclass(frozen=True)
class Prediction:
    """Forecasts for every series: `mean` (series x horizon), `quantiles` (q x series x horizon)."""

    mean: np.ndarray
    quantiles: np.ndarray
    quantile_levels: tuple[float, ...]
    method: np.ndarray  # (series,) str: the method chosen per series (the best of its ensemble)
    stale: np.ndarray  # (series,) bool: the series' data ends more than `stale_days` before the horizon
    last_observed: np.ndarray  # (series,) int: column index of the last observed day, -1 if none
    intermittent: np.ndarray | None = None  # (series,) bool: classified intermittent/lumpy (ADI > 1.32)


@dataclass(frozen=True)
class Fitted:
    """`predict`'s result plus the backtest residual paths (for `exceedance_probability`)."""

    prediction: Prediction
    scale: np.ndarray  # (series,) the per-series unit of `paths`
    paths: np.ndarray  # (origins, steps, series) backtest errors of the ensemble, in units of `scale`


def _validate(history: np.ndarray, horizon: int, quantiles: Sequence[float]) -> np.ndarray:
    """The history as a 2-D array (no copy when it already is a float array) after checking the
    arguments; non-finite values are made NaN later, on the look-back window only."""
    try:
        values = np.asarray(history)
        if values.dtype.kind not in "fiub":
            values = values.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidHistory(f"history must be a numeric (series x days) array: {exc}") from None
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2:
        raise InvalidHistory(f"history must be a (series x days) array, got {values.ndim} dimensions")
    if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) or not 1 <= horizon <= 366:
        raise InvalidHistory("horizon must be an integer from 1 to 366")
    for q in quantiles:
        if not isinstance(q, (int, float, np.floating, np.integer)) or not 0.0 < float(q) < 1.0:
            raise InvalidHistory(f"quantile levels must lie strictly between 0 and 1, got {q!r}")
    return values


def _last_observed(values: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Column of each row's last finite value (-1 if none), reading the full history only for
    rows with nothing in the window (in blocks: no full-size temporary)."""
    n, days = values.shape
    if days == 0:
        return np.full(n, -1, np.int64)
    wdays = window.shape[1]
    obs = np.isfinite(window)
    last = np.where(obs.any(axis=1), days - 1 - np.argmax(obs[:, ::-1], axis=1), -1).astype(np.int64)
    rest = np.flatnonzero(last < 0)
    if rest.size and days > wdays:
        for b in range(0, rest.size, 4096):
            rows = rest[b : b + 4096]
            o = np.isfinite(values[rows, : days - wdays])
            last[rows] = np.where(o.any(axis=1), days - wdays - 1 - np.argmax(o[:, ::-1], axis=1), -1)
    return last


def predict(
    history: np.ndarray,
    horizon: int,
    *,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    stale_days: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> Prediction:
    """Forecast `horizon` days after the last column for every row of `history`.

    Rows with no observed positive value forecast 0 (method "no_data" / "zero"); a stale row is
    still forecast from its last observed state (never as zero). `progress(done, total)` is
    called after each block of series.
    """
    return _fit(history, horizon, quantiles=quantiles, stale_days=stale_days, progress=progress).prediction


def _quiet_numpy(fit: Callable[..., Fitted]) -> Callable[..., Fitted]:
    """Run `fit` with NumPy's empty-slice warnings silenced (all-NaN rows are expected input)."""

    @functools.wraps(fit)
    def quiet(*args: Any, **kwargs: Any) -> Fitted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fit(*args, **kwargs)

    return quiet


@_quiet_numpy
def _fit(
    history: np.ndarray,
    horizon: int,
    *,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    stale_days: int = 3,
    progress: Callable[[int, int], None] | None = None,
    origins: int | None = None,
    spacing: int = core.PERIOD,
    eval_horizon: int = core.EVAL_HORIZON,
    keep_paths: bool = False,
) -> Fitted:
    values = _validate(history, horizon, quantiles)
    origins = core.ORIGINS if origins is None else origins
    n, days = values.shape
    levels = tuple(float(q) for q in quantiles)
    wdays = min(days, core.LOOKBACK_DAYS)

    def window_of(rows: np.ndarray | slice) -> np.ndarray:
        """The look-back window of some rows as float64, non-finite -> NaN, negative -> 0."""
        with np.errstate(all="ignore"):
            w = np.asarray(values[rows, days - wdays :], dtype=np.float64)
            w = np.where(np.isfinite(w), w, np.nan)
            return np.where(w < 0, 0.0, w)

    # a first pass in chunks (no full-size temporaries): last observed day, any positive value
    last = np.full(n, -1, np.int64)
    has_pos = np.zeros(n, bool)
    for c0 in range(0, n, _SCAN_ROWS):
        chunk = slice(c0, min(n, c0 + _SCAN_ROWS))
        w = window_of(chunk)
        last[chunk] = _last_observed(values[chunk], w)
        has_pos[chunk] = (w > 0).any(axis=1) if wdays else False
    has_obs = last >= 0
    stale = (days - 1 - last) > stale_days

    mean = np.zeros((n, horizon))
    spread_scale = np.zeros(n)  # per-series spread (original units)
    method = np.array(["no_data"] * n, dtype=object)
    intermittent = np.zeros(n, bool)
    count = np.zeros(n, bool)  # every observed value a whole number
    dispersion = np.full(n, np.nan)  # variance / mean of the NB band (short count series only)
    z_pool: dict[bool, list[tuple[np.ndarray, np.ndarray]]] = {False: [], True: []}
    path_parts: list[tuple[np.ndarray, np.ndarray]] = []
    method[has_obs & ~has_pos] = "zero"
    active = np.flatnonzero(has_pos)
    total = len(active)
    for b0 in range(0, total, core.BLOCK_SERIES):
        rows = active[b0 : b0 + core.BLOCK_SERIES]
        y = window_of(rows)
        pos = ~np.isnan(y) & (y > 0)
        first = np.argmax(pos, axis=1)
        y[np.arange(wdays)[None, :] < first[:, None]] = np.nan  # leading NaN / zeros cut off
        with np.errstate(all="ignore"):
            top = np.nanmax(y, axis=1)
            y1 = y / top[:, None]
            m1 = np.nanmean(y1, axis=1)
        ys = (y1 / m1[:, None]).astype(np.float32)
        scale = top * m1
        counts_b = count_series(y)
        count[rows] = counts_b
        with np.errstate(all="ignore"):
            unit = np.where(counts_b & (scale > 0), 1.0 / scale, 0.0)
        fit = core.fit_block(
            ys, first, horizon, origins=origins, spacing=spacing, eval_horizon=eval_horizon, count_unit=unit
        )
        mean[rows] = np.clip(np.nan_to_num(fit.mean * scale[:, None], nan=0.0, posinf=_FMAX), 0, _FMAX)
        method[rows] = np.array(core.FAMILIES, dtype=object)[fit.method]
        intermittent[rows] = fit.intermittent
        s = np.where(np.isfinite(fit.err_scale), fit.err_scale * scale, _fallback_spread(y, mean[rows]))
        spread_scale[rows] = s
        short = ~np.isfinite(fit.err_scale) & counts_b
        if short.any():  # counts too short for a backtest: a negative binomial around the mean
            dispersion[rows[short]] = _count_dispersion(y[short])
        for cls in (False, True):
            sel = np.flatnonzero(fit.intermittent == cls)
            if sel.size:
                keep = sel[np.linspace(0, sel.size - 1, min(sel.size, _POOL_ROWS)).astype(np.int64)]
                z_pool[cls].append((fit.std_errors[:, :, keep], fit.step_ratio[keep]))
        if keep_paths:
            path_parts.append((rows, fit.paths * (scale / np.where(s > 0, s, 1.0))[None, None, :]))
        if progress is not None:
            progress(min(b0 + core.BLOCK_SERIES, total), total)

    # --- call-wide interval calibration, per class -------------------------------------------------
    quant = np.zeros((len(levels), n, horizon))
    hs = np.arange(1, horizon + 1)
    for cls in (False, True):
        members = np.flatnonzero(intermittent == cls)
        members = members[has_pos[members]] if members.size else members
        if not members.size:
            continue
        ratios = np.concatenate([r for _, r in z_pool[cls]]) if z_pool[cls] else np.full((1, eval_horizon), np.nan)
        with np.errstate(all="ignore"):
            r_h = np.nanmedian(ratios, axis=0) if np.isfinite(ratios).any() else np.full(eval_horizon, np.nan)
        n_z = sum(int(np.isfinite(std).sum()) for std, _ in z_pool[cls])
        if n_z >= core.MIN_POOLED:  # many series: a weekday x growth curve, and pooled quantiles
            week_h, grow_h = _step_curve(r_h)
        else:  # few: the conservative envelope, and Student-t quantiles
            week_h, grow_h = np.ones(eval_horizon), _monotone_ratio(r_h)
        r_h = week_h * grow_h
        zs = [(std / r_h[None, :, None]).ravel() for std, _ in z_pool[cls]]
        z = np.concatenate(zs) if zs else np.zeros(0)
        dofs = [np.isfinite(std).any(axis=1).sum(axis=0) for std, _ in z_pool[cls]]
        dof_all = np.concatenate(dofs) if dofs else np.zeros(0)
        dof = float(np.median(dof_all[dof_all > 0])) if (dof_all > 0).any() else float(np.inf)
        qz = core.standard_quantiles(z, levels, dof if T_FALLBACK else float(np.inf))
        # step h of a series whose last observed day is `gap` days before the horizon is h + gap
        # days ahead of its last observation: its band grows as that lead, on the target
        # day's weekday (a late feed widens the band, never narrows it)
        gap = np.clip(days - 1 - last[members], 0, STALE_LEAD_MAX)
        lead = hs[None, :] + gap[:, None]  # (m, horizon)
        grow = _growth_at(grow_h, lead)
        wk = week_h[(hs - 1) % min(core.PERIOD, eval_horizon)] if week_h.size else np.ones(horizon)
        spread = spread_scale[members][:, None] * grow * wk[None, :]  # (m, horizon)
        for k in range(len(levels)):
            quant[k][members] = mean[members] + qz[k] * spread
    zero = np.flatnonzero(has_obs & ~has_pos)
    if zero.size and levels:  # nothing but zeros: surely 0, i.e. U(0, 1) in the spread-count view
        quant[:, zero] = np.asarray(levels)[:, None, None]
    nb = np.flatnonzero(np.isfinite(dispersion))
    if nb.size and levels:
        var = mean[nb] * dispersion[nb][:, None]
        quant[:, nb] = count_quantiles(mean[nb], var, levels)
    quant = np.clip(np.nan_to_num(quant, nan=0.0, posinf=_FMAX, neginf=0.0), 0.0, _FMAX)
    if len(levels) > 1:  # ordered in level even after clipping
        order = np.argsort(levels)
        quant[order] = np.maximum.accumulate(quant[order], axis=0)
    prediction = Prediction(
        mean=mean,
        quantiles=quant,
        quantile_levels=levels,
        method=method,
        stale=stale,
        last_observed=last,
        intermittent=intermittent,
    )
    paths = np.full((max(origins, 1), eval_horizon, n), np.nan, np.float32)
    if keep_paths:
        for part_rows, p in path_parts:
            paths[: p.shape[0], :, part_rows] = p
    return Fitted(prediction=prediction, scale=spread_scale, paths=paths)


def _fallback_spread(y: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Spread unit (median absolute error) for series too short for a backtest: the spread of
    their observed days, for counts at least the Poisson spread of the forecast mean, and at
    least 10% of the mean (in original units; y: series x days, NaN missing)."""
    with np.errstate(all="ignore"):
        level = np.abs(mean).mean(axis=1)
        sd = np.nan_to_num(np.nanstd(y, axis=1))
        counts = np.all(np.isnan(y) | (np.abs(y - np.round(y)) < 1e-9), axis=1)
        sd = np.maximum(sd, np.where(counts, np.sqrt(level), 0.0))
        spread: np.ndarray = 0.6745 * np.maximum(sd, 0.1 * level)
        return spread


def count_series(y: np.ndarray) -> np.ndarray:
    """(n,) True where every observed value of a row is a whole number (and one is observed):
    count data, whose bands the engine, the backtest and the production scoring treat alike."""
    with np.errstate(all="ignore"):
        whole = np.isnan(y) | (np.abs(y - np.round(y)) < 1e-9)
    out: np.ndarray = whole.all(axis=1) & (~np.isnan(y)).any(axis=1)
    return out


def count_band_share(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per count actual k, the share of [k, k+1) inside [lo, hi]: the expected randomised PIT
    (Czado, Gneiting and Held 2009), so an inclusive band gets no tie at its edge for free."""
    out: np.ndarray = np.clip(np.minimum(actual + 1.0, hi) - np.maximum(actual, lo), 0.0, 1.0)
    return out


def _count_dispersion(y: np.ndarray) -> np.ndarray:
    """Variance-to-mean ratio (>= 1: at least Poisson) of short count series, inflated by
    1 + 1/days for the error of a mean estimated from so few days."""
    with np.errstate(all="ignore"):
        cnt = (~np.isnan(y)).sum(axis=1)
        m = np.nanmean(y, axis=1)
        v = np.nanvar(y, axis=1, ddof=1)
        d = np.where((m > 0) & np.isfinite(v), v / np.where(m > 0, m, 1.0), 1.0)
        out: np.ndarray = np.maximum(d, 1.0) * (1.0 + 1.0 / np.maximum(cnt, 1))
    return out


def count_quantiles(mu: np.ndarray, var: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Quantiles (len(levels), *mu.shape) of a count X (negative binomial with mean mu and
    variance var >= mu; Poisson at var == mu) spread uniformly over [k, k+1): X + U, U ~ U(0, 1).
    Continuous, so a band holds its nominal share of the randomised PIT (Czado, Gneiting and
    Held 2009) with no ties on whole numbers; floor() of a quantile is the count quantile."""
    mu = np.maximum(np.asarray(mu, np.float64), 0.0)
    var = np.maximum(np.asarray(var, np.float64), mu)
    out = np.broadcast_to(np.asarray(levels, np.float64).reshape((-1,) + (1,) * mu.ndim), (len(levels),) + mu.shape)
    out = out.copy()  # mean 0: surely 0, spread over [0, 1)
    big = mu > COUNT_EXACT_MAX_MEAN
    for k, q in enumerate(levels):  # large means: normal + continuity, never ties
        out[k] = np.where(big, mu + np.sqrt(var) * core.student_t_quantile(float(q), np.inf) + 0.5, out[k])
    small = ~big & (mu > 0)
    if not small.any():
        return out
    m, v = mu[small], var[small]
    nbin = v > m * (1 + 1e-9)
    p = np.where(nbin, m / np.where(nbin, v, 1.0), 1.0)
    r = np.where(nbin, m * m / np.maximum(v - m, 1e-300), np.inf)
    with np.errstate(all="ignore"):
        pmf = np.exp(np.where(nbin, r * np.log(p), -m))
    cdf_prev = np.zeros_like(m)
    res = np.full((len(levels), m.size), np.nan)
    top = float(max(levels)) if levels else 0.0
    live = np.arange(m.size)  # values whose highest quantile is not found yet: most counts are small
    kmax = int(np.ceil(np.max(m + 12 * np.sqrt(v) + 20)))
    for j in range(kmax + 1):
        cdf = cdf_prev + pmf
        for k, q in enumerate(levels):
            hit = np.isnan(res[k, live]) & (cdf >= q)
            if hit.any():
                with np.errstate(all="ignore"):
                    res[k, live[hit]] = j + (q - cdf_prev[hit]) / np.where(pmf[hit] > 0, pmf[hit], 1.0)
        go = cdf < top
        if not go.any():
            break
        live, cdf, pmf = live[go], cdf[go], pmf[go]
        nb_l, r_l, p_l, m_l = nbin[live], r[live], p[live], m[live]
        with np.errstate(all="ignore"):
            pmf = pmf * np.where(nb_l, (j + r_l) / (j + 1) * (1 - p_l), m_l / (j + 1))
        cdf_prev = cdf
    res = np.where(np.isnan(res), (m + np.sqrt(v) * 3)[None, :], res)
    out[:, small] = res
    return out


def _step_curve(r_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-step spread ratio split into a weekday factor (period 7, mean 1 in logs) and a
    non-decreasing growth with the lead: (factor of each step, growth of each step), whose
    product fits r_h in logs. The backtest origins fall on the forecast origin's weekday, so step
    h of the backtest is step h's weekday of the real forecast: where demand is higher (a
    weekend), so are its errors, and a monotone curve alone smeared that over the steps (the
    quiet weekday's band too wide, the busy one's too narrow). Horizons shorter than two weeks
    cannot tell the two apart: growth only. For calls with enough errors to pool (MIN_POOLED):
    with a few series the per-step ratios are too noisy for 14 free values (`_monotone_ratio`)."""
    r = _isotonic(_filled_ratio(r_h))
    H = r.size
    per = core.PERIOD
    if H < 2 * per or not (np.isfinite(r_h) & (r_h > 0)).any():
        return np.ones(H), r
    raw = np.where(np.isfinite(r_h) & (r_h > 0), r_h, np.nan)
    lr = np.log(np.where(np.isfinite(raw), raw, np.nanmedian(raw)))
    ph = np.arange(H) % per
    lw = np.zeros(per)
    lg = lr.copy()
    for _ in range(20):  # alternate: growth = isotonic(r / weekday), weekday = mean(r / growth)
        lg = _isotonic(lr - lw[ph])
        res = lr - lg
        lw = np.array([res[ph == p].mean() for p in range(per)])
        lw -= lw.mean()
    lg = _isotonic(lr - lw[ph])
    return np.exp(lw[ph]), np.exp(lg)


def _growth_at(grow_h: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """The growth curve at any lead (days ahead of the last observation): grow_h within the
    backtest's steps; beyond them the line fitted to the squared growth (variance linear in the
    lead, as for a level that moves like a random walk; flat for stationary noise), never below
    the last step's value."""
    H = grow_h.size
    lead = np.maximum(np.asarray(lead), 1)
    out: np.ndarray = grow_h[np.minimum(lead, H) - 1]
    if (lead > H).any():
        steps = np.arange(1, H + 1, dtype=np.float64)
        g2 = grow_h.astype(np.float64) ** 2
        slope = max(0.0, float(np.polyfit(steps, g2, 1)[0])) if H >= 2 else 0.0
        far = np.sqrt(np.maximum(g2[-1] + slope * (lead - H), g2[-1]))
        out = np.where(lead > H, far, out)
    return out


def _filled_ratio(r_h: np.ndarray) -> np.ndarray:
    """The per-step ratios, positive, their median where unknown, 1 when none is known."""
    r = np.where(np.isfinite(r_h) & (r_h > 0), r_h, np.nan)
    if not np.isfinite(r).any():
        return np.ones_like(r_h, dtype=np.float64)
    out: np.ndarray = np.where(np.isfinite(r), r, np.nanmedian(r)).astype(np.float64)
    return out


def _monotone_ratio(r_h: np.ndarray) -> np.ndarray:
    """Per-step spread growth of a small call (too few errors to pool): the running maximum of
    the per-step ratios, an upper envelope that no noisy low step can pull down (with one to
    three series a step's ratio is the median of a few errors: electricity read 0.31 at step
    3). Together with the normal-theory (Student t) quantile it is what held 0.79-0.83 of the
    actuals on the small real sets; a least-squares curve there held 0.62-0.73."""
    return np.maximum.accumulate(_filled_ratio(r_h))


def _isotonic(x: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to x in least squares (pool adjacent violators)."""
    means: list[float] = []
    sizes: list[int] = []
    for v in x:
        means.append(float(v))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m, c = means.pop(), sizes.pop()
            means[-1] = (means[-1] * sizes[-1] + m * c) / (sizes[-1] + c)
            sizes[-1] += c
    return np.repeat(np.asarray(means), sizes)


def line_total_parts(
    history: np.ndarray, line_index: np.ndarray, lines: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Additive pieces of the line loads of some item rows: (sum of observed values, items
    observed, items active) per line and day, each (lines x days). Pieces of the chunks of a
    fanned-out run add up; `finish_line_totals` turns the sums into loads."""
    history = np.asarray(history, dtype=np.float64)
    line_index = np.asarray(line_index, dtype=np.int64)
    if lines is None:
        lines = int(line_index.max()) + 1 if line_index.size else 0
    days = history.shape[1] if history.ndim == 2 else 0
    obs = ~np.isnan(history)
    started = np.maximum.accumulate(obs, axis=1) if days else obs
    total = np.zeros((lines, days))
    seen = np.zeros((lines, days))
    active = np.zeros((lines, days))
    np.add.at(total, line_index, np.where(obs, history, 0.0))
    np.add.at(seen, line_index, obs)
    np.add.at(active, line_index, started)
    return total, seen, active


def finish_line_totals(
    total: np.ndarray, seen: np.ndarray, active: np.ndarray, *, min_share: float = 0.9
) -> np.ndarray:
    """Line loads from summed pieces: NaN on a day when fewer than `min_share` of the line's
    active items (those with data on or before that day) reported."""
    with np.errstate(all="ignore"):
        return np.where((active > 0) & (seen >= min_share * active), total, np.nan)


def line_totals(history: np.ndarray, line_index: np.ndarray, *, min_share: float = 0.9) -> np.ndarray:
    """Each line's daily load (lines x days) from item rows: the sum of the items observed that
    day, NaN when fewer than `min_share` of the line's active items (those with data on or before
    that day) reported, so a late feed is a missing day, not a low load."""
    return finish_line_totals(*line_total_parts(history, line_index), min_share=min_share)


from app.forecast.engine.capacity import exceedance_probability  # noqa: E402
from app.forecast.engine.spikes import spike_threshold  # noqa: E402
