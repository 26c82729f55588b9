"""The vectorised fitting core of engine v2: candidate models, rolling-origin selection, intervals.

Why it is built this way:

- **One pass over days, never a loop over series.** Every candidate model is a small state-space
  recursion whose state arrays have the shape (candidates, series); the Python loop runs over the
  days of a bounded look-back window (`LOOKBACK_DAYS`), series are processed in blocks of
  `BLOCK_SERIES` so the working set stays in cache and the memory per call stays bounded. The data
  of a block is scaled per series (by its mean observed value) and held in float32: half the
  memory traffic, and any magnitude (1e-300 .. 1e300) fits.
- **Missing is missing.** A NaN day makes no error-correction: level, season, intervals between
  demands and so on only propagate. Leading NaN and leading zeros before an item's first sale are
  cut off, so a new item starts from its first sale, not from a run of zeros.
- **Robust to outliers.** A first robust filter (level + weekly season, one-step errors clipped at
  `CLEAN_K` running mean-absolute errors) produces a cleaned copy of the history; every candidate
  is fitted on that copy, so one extreme day moves a forecast by at most a few typical errors.
  The raw history is kept for the interval residuals and for the spike rule.
- **Selection by what matters.** The recursions snapshot every candidate's 1..14-day forecast at
  rolling origins (the last `ORIGINS` weeks, same weekday as the real forecast origin) and score
  them with the mean absolute error over the whole 14-day horizon against the cleaned actuals. Each
  series gets the mean of its `ENSEMBLE` best allowed candidates: a small combination is more
  robust than picking the single best of a noisy score (the M3/M4 lesson).
- **Candidates per series class.** Smooth series: additive level + weekly season (a grid that runs
  from weekday means to seasonal naive), the same with a damped trend (only after `MIN_TREND_DAYS`
  of data), flat exponential smoothing, seasonal naive and exponentially weighted weekday means.
  Intermittent or lumpy series (Syntetos-Boylan: average inter-demand interval > 1.32): Croston-SBA,
  TSB and ADIDA (weekly buckets), each flat and with the series' own smoothed weekday profile.
- **Intervals from the backtest.** The ensemble's own rolling-origin errors are scaled per series
  (median absolute error) and per horizon step (pooled growth curve), and the pooled empirical
  quantiles of these standardised errors (per class, over all series of the call) give P10/P50/P90:
  skewed where demand is skewed, wider where the series is noisier, calibrated by construction on
  out-of-sample errors.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

PERIOD = 7
EVAL_HORIZON = 14  # the backtest horizon inside `predict`: selection and intervals look 1..14 days ahead
ORIGINS = 12  # rolling origins, one week apart, ending EVAL_HORIZON days before the last day
LOOKBACK_DAYS = 392  # days of history the engine reads (56 weeks): enough for slow smoothing and the origins
BLOCK_SERIES = 1024  # series fitted together: state + origin snapshots stay ~30 MB
MIN_TREND_DAYS = 56  # no trend before 8 weeks of data
MIN_SEASON_DAYS = 14  # no weekly pattern before two weeks of data
INIT_DAYS = 28  # the starting state comes from the first four weeks of each series
CLEAN_K = 4.0  # one-step errors beyond this many running mean-absolute errors are clipped
CLEAN_WARMUP = 14  # no clipping during a series' first two weeks (the running scale is not set yet)
SCALE_FLOOR = 0.05  # floor of the running error scale, as a share of the series' mean (constant series)
INTERMITTENT_FENCE = 3.0  # intermittent sizes above this many times their 90th percentile are cut
ADI_INTERMITTENT = 1.32  # Syntetos-Boylan cut-off on the average inter-demand interval
ENSEMBLE = 3  # forecasts of the best this-many candidates are averaged
MIN_POOLED = 200  # fewer standardised errors than this: fall back to normal quantiles
PROFILE_PRIOR_DAYS = 28.0  # shrinkage of an intermittent item's weekday profile towards flat

# Candidate grids (model families and their smoothing constants). Deliberately coarse: the
# ensemble of the best few absorbs the grid's gaps, and a coarse grid overfits less.
ETS_ALPHAS = (0.03, 0.1, 0.25, 0.5)
ETS_GAMMAS = (0.03, 0.1, 0.25)
TREND_BETA_SHARE = 0.1  # trend smoothing as a share of alpha
TREND_PHI = 0.9  # trend damping: the trend fades within about two weeks
SES_ALPHAS = (0.03, 0.1, 0.3)
WDMEAN_RHOS = (0.1, 0.25)
CROSTON_ALPHAS = (0.05, 0.15)
TSB_ALPHAS = ((0.05, 0.1), (0.15, 0.2))  # (probability, size)
ADIDA_ALPHAS = (0.1, 0.3)
PROFILE_RHO = 0.05  # weekday profile of intermittent items: a slow exponentially weighted mean


@dataclass(frozen=True)
class Candidate:
    family: str
    kind: str  # "ets", "wdmean", "croston", "tsb", "adida"
    alpha: float = 0.0
    beta: float = 0.0
    gamma: float = 0.0
    phi: float = 1.0
    seasonal: bool = True
    intermittent: bool = False
    profiled: bool = False


def _candidates() -> list[Candidate]:
    out: list[Candidate] = []
    for a in ETS_ALPHAS:
        for g in ETS_GAMMAS:
            out.append(Candidate("ets", "ets", a, 0.0, g, 1.0))
            out.append(Candidate("ets_damped", "ets", a, a * TREND_BETA_SHARE, g, TREND_PHI))
    for a in SES_ALPHAS:
        out.append(Candidate("ses", "ets", a, 0.0, 0.0, 1.0, seasonal=False))
    out.append(Candidate("seasonal_naive", "ets", 0.0, 0.0, 1.0, 1.0))
    for r in WDMEAN_RHOS:
        out.append(Candidate("weekday_mean", "wdmean", r))
    for profiled in (False, True):
        for a in CROSTON_ALPHAS:
            out.append(Candidate("croston_sba", "croston", a, intermittent=True, profiled=profiled))
        for ap, az in TSB_ALPHAS:
            out.append(Candidate("tsb", "tsb", ap, az, intermittent=True, profiled=profiled))
        for a in ADIDA_ALPHAS:
            out.append(Candidate("adida", "adida", a, intermittent=True, profiled=profiled))
    return out


CANDIDATES = _candidates()
FAMILIES = tuple(dict.fromkeys(c.family for c in CANDIDATES))


@dataclass
class BlockFit:
    """What one block of series yields before the call-wide interval calibration."""

    mean: np.ndarray  # (n, horizon) in scaled units
    method: np.ndarray  # (n,) index into FAMILIES
    intermittent: np.ndarray  # (n,) bool
    err_scale: np.ndarray  # (n,) median absolute backtest error (scaled units), NaN if none
    step_ratio: np.ndarray  # (n, H) per-step median |error| / err_scale, NaN if none
    std_errors: np.ndarray  # (O, H, n) backtest errors / err_scale, NaN where missing
    paths: np.ndarray  # (O, H, n) raw backtest errors (scaled units), for exceedance bootstraps
    fallback_scale: np.ndarray  # (n,) spread to use when there is no backtest error


def _phase(cols: np.ndarray | int, days: int) -> np.ndarray:
    """Weekly phase of a column, 0 = the first forecast day's weekday."""
    return (np.asarray(cols) - days) % PERIOD


def _initial_state(y: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Level, weekly season (7, n), error scale and observed count from each series' first weeks."""
    n, days = y.shape
    idx = first[:, None] + np.arange(INIT_DAYS)[None, :]
    valid = idx < days
    vals = y[np.arange(n)[:, None], np.minimum(idx, days - 1)].astype(np.float64)
    vals[~valid] = np.nan
    obs = ~np.isnan(vals)
    cnt = obs.sum(axis=1)
    with np.errstate(all="ignore"):
        level = np.where(cnt > 0, np.nansum(vals, axis=1) / np.maximum(cnt, 1), 0.0)
        ph = _phase(idx, days)
        season = np.zeros((PERIOD, n))
        dev = np.where(obs, vals - level[:, None], 0.0)
        for p in range(PERIOD):
            m = (ph == p) & obs
            c = m.sum(axis=1)
            season[p] = np.where(c > 0, (dev * m).sum(axis=1) / np.maximum(c, 1), 0.0)
        season -= season.mean(axis=0, keepdims=True)
        season *= cnt / (cnt + PERIOD)  # few days: shrink the pattern towards flat
        fitted = level[:, None] + season[ph, np.arange(n)[:, None]]
        mae = np.where(cnt > 0, np.nansum(np.abs(vals - fitted), axis=1) / np.maximum(cnt, 1), 0.0)
    return level, season, mae, cnt


def clean(y: np.ndarray, first: np.ndarray, intermittent: np.ndarray | None = None) -> np.ndarray:
    """The history with each one-step error of a robust level + season filter clipped at CLEAN_K
    running mean-absolute errors (NaN stays NaN). y is scaled (series mean ~ 1), float32.

    Intermittent series are not filtered (their zeros and lumps are the signal, and a clipped
    lump biases the rate down); only demand sizes above INTERMITTENT_FENCE times the 90th
    percentile of the series' sizes are cut to that fence."""
    n, days = y.shape
    out = y.copy()
    if n == 0 or days == 0:
        return out
    if intermittent is not None and intermittent.any():
        rows = np.flatnonzero(intermittent)
        sub = y[rows]
        with np.errstate(all="ignore"):
            sizes = np.where(sub > 0, sub, np.nan)
            fence = INTERMITTENT_FENCE * np.nanquantile(sizes, 0.9, axis=1)
        out[rows] = np.where(sub > fence[:, None], fence[:, None], sub)
        smooth = np.flatnonzero(~intermittent)
        if smooth.size:
            out[smooth] = clean(y[smooth], first[smooth])
        return out
    level, season, mae, _ = _initial_state(y, first)
    level = level.astype(np.float32)
    season = season.astype(np.float32)
    scale = np.maximum(mae, SCALE_FLOOR).astype(np.float32)
    alpha, gamma, lam = np.float32(0.1), np.float32(0.05), np.float32(0.05)
    start = int(first.min())
    for t in range(start, days):
        p = (t - days) % PERIOD
        yt = y[:, t]
        obs = ~np.isnan(yt)
        fit = level + season[p]
        err = np.where(obs, yt - fit, 0).astype(np.float32)
        lim = CLEAN_K * scale
        warm = t < first + CLEAN_WARMUP
        clipped = np.where(warm, err, np.clip(err, -lim, lim))
        out[:, t] = np.where(obs, fit + clipped, np.nan)
        level += alpha * clipped
        season[p] += gamma * clipped
        scale = np.where(obs, np.maximum(scale + lam * (np.abs(clipped) - scale), SCALE_FLOOR), scale)
    return out


def _class_stats(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average inter-demand interval (ADI), CV^2 of demand sizes and observed days, per series."""
    obs = ~np.isnan(y)
    nobs = obs.sum(axis=1)
    pos = obs & (y > 0)
    npos = pos.sum(axis=1)
    adi = np.where(npos > 0, nobs / np.maximum(npos, 1), np.inf)
    with np.errstate(all="ignore"):
        sizes = np.where(pos, y, np.nan)
        m = np.nanmean(sizes, axis=1) if y.shape[1] else np.full(len(y), np.nan)
        v = np.nanvar(sizes, axis=1) if y.shape[1] else np.full(len(y), np.nan)
        cv2 = np.where(npos > 1, v / np.maximum(m * m, 1e-30), 0.0)
    return adi, np.nan_to_num(cv2), nobs


def fit_block(y: np.ndarray, first: np.ndarray, horizon: int, *, origins: int = ORIGINS,
              eval_horizon: int = EVAL_HORIZON, spacing: int = PERIOD) -> BlockFit:
    """Fit every candidate to every series of a block (y: n x days, scaled float32, NaN missing,
    leading zeros already cut) and combine the best ones per series."""
    n, days = y.shape
    H = eval_horizon
    cands = CANDIDATES
    C = len(cands)
    adi, _cv2, nobs = _class_stats(y)
    intermittent = adi > ADI_INTERMITTENT
    yc = clean(y, first, intermittent)
    level0, season0, _mae, _cnt = _initial_state(yc, first)

    # --- state of every family -------------------------------------------------------------
    ets = [i for i, c in enumerate(cands) if c.kind == "ets"]
    wdm = [i for i, c in enumerate(cands) if c.kind == "wdmean"]
    cro = [i for i, c in enumerate(cands) if c.kind == "croston" and not c.profiled]
    tsb = [i for i, c in enumerate(cands) if c.kind == "tsb" and not c.profiled]
    ada = [i for i, c in enumerate(cands) if c.kind == "adida" and not c.profiled]
    f32 = np.float32
    col = lambda vals: np.asarray(vals, dtype=f32)[:, None]  # noqa: E731
    e_alpha = col([cands[i].alpha for i in ets])
    e_beta = col([cands[i].beta for i in ets])
    e_gamma = col([cands[i].gamma for i in ets])
    e_phi = col([cands[i].phi for i in ets])
    e_seasonal = np.array([cands[i].seasonal for i in ets])
    g = len(ets)
    lvl = np.repeat(level0[None, :], g, axis=0).astype(f32)
    trd = np.zeros((g, n), f32)
    sea = np.repeat(season0[:, None, :], g, axis=1).astype(f32)  # (7, g, n)
    sea[:, ~e_seasonal, :] = 0
    # exponentially weighted weekday means (and the profile of intermittent items)
    rhos = col([cands[i].alpha for i in wdm] + [PROFILE_RHO])
    wd = np.repeat((level0[None, :] + season0)[:, None, :], len(rhos), axis=1).astype(f32)  # (7, r, n)
    wd = np.maximum(wd, 0)
    # Croston SBA: size z, interval x, days since the last demand q
    pos0 = np.where(np.isnan(yc), np.nan, yc)
    with np.errstate(all="ignore"):
        init_win = np.where(np.arange(days)[None, :] < (first + INIT_DAYS)[:, None], pos0, np.nan)
        zsz = np.nan_to_num(np.nanmean(np.where(init_win > 0, init_win, np.nan), axis=1), nan=1.0)
    adi0 = np.where(np.isfinite(adi), adi, 1.0)
    c_alpha = col([cands[i].alpha for i in cro])
    cz = np.repeat(zsz[None, :], len(cro), axis=0).astype(f32)
    cx = np.repeat(adi0[None, :], len(cro), axis=0).astype(f32)
    cq = np.zeros(n, f32)
    # TSB: demand probability pr, size z
    t_ap = col([cands[i].alpha for i in tsb])
    t_az = col([cands[i].beta for i in tsb])
    tp = np.repeat((1.0 / adi0)[None, :], len(tsb), axis=0).astype(f32)
    tz = np.repeat(zsz[None, :], len(tsb), axis=0).astype(f32)
    # ADIDA: weekly buckets (ending on the phase of the last day), SES on the weekly mean rate
    a_alpha = col([cands[i].alpha for i in ada])
    arate = np.repeat(np.maximum(level0, 0)[None, :], len(ada), axis=0).astype(f32)
    bsum = np.zeros(n, f32)
    bcnt = np.zeros(n, f32)

    # --- origins -----------------------------------------------------------------------------
    origin_days = [days - 1 - H - spacing * j for j in range(origins)]
    origin_days = [t for t in origin_days if t >= int(first.min()) + PERIOD]
    O = len(origin_days)
    origin_slot = {t: j for j, t in enumerate(origin_days)}
    F = np.full((C, max(O, 1), H, n), np.nan, f32)
    damp_h = np.cumsum(TREND_PHI ** np.arange(1, max(H, horizon) + 1)).astype(f32)

    def snapshot(t: int, steps: int) -> np.ndarray:
        """Every candidate's forecast for days t+1..t+steps from the current state: (C, steps, n)."""
        out = np.empty((C, steps, n), f32)
        ph = _phase(np.arange(t + 1, t + 1 + steps), days)
        hs = np.arange(1, steps + 1)
        dsum = np.where(e_phi == 1.0, hs[None, :].astype(f32), damp_h[None, :steps])  # (g, steps)
        e_fc = lvl[:, None, :] + dsum[:, :, None] * trd[:, None, :] + np.moveaxis(sea[ph], 0, 1)
        out[ets] = e_fc
        wdv = wd[ph]  # (steps, r, n)
        out[wdm] = np.moveaxis(wdv[:, :-1, :], 0, 1)
        prof_raw = wdv[:, -1, :]  # (steps, n)
        pm = wd[:, -1, :].mean(axis=0)  # (n,)
        seen = np.minimum(t + 1 - first, 10 * PROFILE_PRIOR_DAYS).astype(f32)
        w = seen / (seen + PROFILE_PRIOR_DAYS)
        with np.errstate(all="ignore"):
            prof = np.where(pm > 0, prof_raw / np.where(pm > 0, pm, 1), 1.0)
        prof = (w * prof + (1 - w)).astype(f32)  # (steps, n)
        flat_c = (1 - c_alpha / 2) * cz / np.maximum(cx, 1.0)
        flat_t = tp * tz
        flat_a = arate
        for idx_flat, flat in ((cro, flat_c), (tsb, flat_t), (ada, flat_a)):
            for k, i in enumerate(idx_flat):
                out[i] = flat[k][None, :]
                j = _profiled_index[i]
                out[j] = flat[k][None, :] * prof
        return out

    _profiled_index = {}
    for i, c in enumerate(cands):
        if c.intermittent and not c.profiled:
            _profiled_index[i] = next(j for j, d in enumerate(cands) if d.profiled and d.kind == c.kind
                                      and d.alpha == c.alpha and d.beta == c.beta)

    start = int(first.min()) if n else days
    err = np.empty((g, n), f32)
    for t in range(start, days):
        p = (t - days) % PERIOD
        yt = yc[:, t]
        obs = ~np.isnan(yt)
        y0 = np.where(obs, yt, 0).astype(f32)
        # ETS family (additive level, damped trend, weekly season)
        s = sea[p]
        np.multiply(trd, e_phi, out=trd)
        np.add(lvl, trd, out=lvl)
        np.subtract(y0, lvl, out=err)
        err -= s
        err *= obs
        lvl += e_alpha * err
        trd += e_beta * err
        s += e_gamma * err
        # weekday means
        w = wd[p]
        w += rhos * ((y0 - w) * obs)
        # Croston SBA
        cq += obs
        demand = obs & (y0 > 0)
        cz += c_alpha * ((y0 - cz) * demand)
        cx += c_alpha * ((cq - cx) * demand)
        cq = np.where(demand, 0, cq).astype(f32)
        # TSB
        tp += t_ap * ((demand.astype(f32) - tp) * obs)
        tz += t_az * ((y0 - tz) * demand)
        # ADIDA
        bsum += y0
        bcnt += obs
        if p == PERIOD - 1:
            has = bcnt > 0
            rate = np.where(has, bsum / np.maximum(bcnt, 1), 0).astype(f32)
            arate += a_alpha * ((rate - arate) * has)
            bsum[:] = 0
            bcnt[:] = 0
        j = origin_slot.get(t)
        if j is not None:
            F[:, j] = snapshot(t, H)

    final = snapshot(days - 1, horizon)  # (C, horizon, n)

    # --- selection -----------------------------------------------------------------------------
    if O:
        A_clean = np.stack([yc[:, t + 1:t + 1 + H].T for t in origin_days])  # (O, H, n)
        A_raw = np.stack([y[:, t + 1:t + 1 + H].T for t in origin_days])
        with np.errstate(all="ignore"):
            dev = F[:, :O] - A_clean[None]
            cnt = (~np.isnan(dev)).sum(axis=(1, 2))
            # smooth series: mean absolute error (robust, the MASE numerator); intermittent: mean
            # squared error, since absolute error favours forecasts biased towards zero
            np.copyto(dev, np.abs(dev), where=~intermittent[None, None, None, :])
            np.copyto(dev, dev * dev, where=intermittent[None, None, None, :])
            score = np.where(cnt > 0, np.nansum(dev, axis=(1, 2)) / np.maximum(cnt, 1), np.inf)  # (C, n)
    else:
        A_raw = np.full((1, H, n), np.nan, f32)
        score = np.full((C, n), np.inf)
    history_days = days - first  # days since the first sale (NaN days included)
    allowed = np.ones((C, n), bool)
    for i, c in enumerate(cands):
        if c.intermittent:
            allowed[i] = intermittent
        else:
            allowed[i] = ~intermittent
        if c.beta > 0 and c.kind == "ets":
            allowed[i] &= history_days >= MIN_TREND_DAYS
        if c.kind in ("ets", "wdmean") and c.seasonal and c.family != "ses":
            allowed[i] &= history_days >= MIN_SEASON_DAYS if c.family != "seasonal_naive" else history_days >= PERIOD
    score = np.where(allowed, score, np.inf)
    # default when no origin scores a series: a plain, robust choice per class (small bonus)
    default_smooth = next(i for i, c in enumerate(cands) if c.family == "ses" and c.alpha == 0.1)
    default_wd = next(i for i, c in enumerate(cands) if c.family == "weekday_mean" and c.alpha == 0.25)
    default_int = next(i for i, c in enumerate(cands) if c.family == "tsb" and not c.profiled)
    unscored = ~np.isfinite(score).any(axis=0)
    prior = np.full((C, n), np.inf)
    prior[default_int, intermittent] = 0.0
    prior[default_smooth, ~intermittent] = 1.0
    prior[default_wd, ~intermittent & (history_days >= MIN_SEASON_DAYS)] = 0.0
    score = np.where(unscored[None, :], prior, score)
    order = np.argsort(score, axis=0, kind="stable")
    k = ENSEMBLE
    top = order[:k]  # (k, n)
    top_ok = np.isfinite(np.take_along_axis(score, top, axis=0))
    top_ok[0] = True
    wts = top_ok / top_ok.sum(axis=0, keepdims=True)  # (k, n)
    cols = np.arange(n)
    mean = np.zeros((horizon, n), np.float64)
    Fe = np.zeros((max(O, 1), H, n), np.float64)
    for r in range(k):
        mean += wts[r] * final[top[r], :, cols].T
        if O:
            Fe += wts[r] * np.moveaxis(F[top[r], :O, :, cols], 0, -1)
    mean = mean.T
    method = np.array([FAMILIES.index(cands[i].family) for i in range(C)])[top[0]]

    # --- errors for the intervals ------------------------------------------------------------------
    E = (A_raw - Fe).astype(np.float32) if O else np.full((1, H, n), np.nan, np.float32)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        absE = np.abs(E)
        have = (~np.isnan(E)).sum(axis=(0, 1))
        scale = np.where(have >= 2 * PERIOD, np.nanmedian(absE.reshape(-1, n), axis=0), np.nan)
        scale = np.where(scale > 0, scale, np.where(have >= 2 * PERIOD, np.nanmean(absE.reshape(-1, n), axis=0), np.nan))
        step = np.nanmedian(absE, axis=0).T / scale[:, None]  # (n, H)
        std = E / scale[None, None, :]
        obs = ~np.isnan(yc)
        med = np.nanmedian(np.where(obs, yc, np.nan), axis=1)
        mad = np.nanmedian(np.abs(yc - med[:, None]), axis=1)
        lvl_now = np.abs(mean[:, 0])
        fallback = np.nan_to_num(np.maximum(mad, 0.25 * lvl_now), nan=0.0)
    return BlockFit(mean=mean, method=method, intermittent=intermittent, err_scale=scale,
                    step_ratio=step, std_errors=std, paths=E, fallback_scale=fallback)


_NORMAL = NormalDist()


def standard_quantiles(z: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """Quantiles of pooled standardised errors (in units of median |error|); normal if too few."""
    z = z[np.isfinite(z)]
    if z.size >= MIN_POOLED:
        return np.quantile(z, levels) if levels else np.zeros(0)
    # |N(0, s)| has median 0.6745 s
    return np.array([_NORMAL.inv_cdf(q) / 0.6745 for q in levels])
