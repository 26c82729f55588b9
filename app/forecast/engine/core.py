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
  them with the mean absolute error over the whole 14-day horizon against the cleaned actuals
  (intermittent series: squared error, as absolute error rewards forecasts biased to zero). Each
  series gets the mean of its `ENSEMBLE` best allowed candidates: a small combination is more
  robust than picking the single best of a noisy score (the M3/M4 lesson). For smooth series with
  12+ weeks of data the last member is instead the candidate with the smallest one-step error
  over the whole window, ranked by AICc (Gaussian likelihood of the one-step errors plus the
  parameter penalty, what AutoETS selects by; development data at 6 origins: bike 1.337 -> 1.325,
  pedestrians 2.445 -> 2.426, wikipv2 1.087 -> 1.078, the other sets unchanged): 12 weeks of origins are
  a noisy judge of slow, long-run behaviour (development data: relative MASE 0.862 -> 0.853).
  That member may also be a persistent-level model (alpha 0.9 + weekly season), the form AutoETS
  picks for electricity demand and price-like series (relative MASE, 6 / 12 / 24 origins:
  electricity 0.830 / 0.889 / 0.895 -> 0.801 / 0.866 / 0.887, m4 daily 0.781 -> 0.759 at 6
  origins, the other sets within 0.001).
- **Candidates per series class.** Smooth series: additive level + weekly season (a grid that runs
  from weekday means to seasonal naive), the same with a damped trend (only after `MIN_TREND_DAYS`
  of data), both again with a multiplicative weekly season, flat exponential smoothing, seasonal
  naive and exponentially weighted weekday means; for series without a weekly pattern (most M4
  daily series, AutoETS's ETS(A,N,N) with alpha ~1 or ETS(M,A,N) with a tiny beta) a persistent
  level (alpha 0.9) and that level plus a slow drift (beta 0.01: an exponentially weighted mean
  of the daily changes, the random walk with drift). Development data, M4 daily with every
  series scored (--align-ends, 6 origins): MASE 0.962 -> 0.947; the other sets within 0.002.
- **Per-series constants for the one-step member.** The grid is coarse (steps of 2.5-3x); the
  one-step member's constants are refined per series by one coordinate step (`_refine`: alpha,
  then gamma or the trend's beta, x1.6 up and down; one more pass over the days with a few
  (moves x series) states, the constants per series), kept where the AICc drops. Development
  data (relative MASE geometric mean, sets at/below AutoETS): 6 origins 0.8114 -> 0.8113,
  12 origins 0.8516 -> 0.8538 but 5 -> 6 of 7 sets (pedestrians 1.666 -> 1.645, electricity
  0.655 -> 0.665), M4 --align-ends 0.947 -> 0.935. Requiring the refined member to be no
  worse by the 14-day backtest too kept neither gain (tried, removed).
  Intermittent or lumpy series (Syntetos-Boylan: average inter-demand interval > 1.32): Croston-SBA,
  TSB and ADIDA (weekly buckets), each flat and with the series' own smoothed weekday profile.
- **Intervals from honest backtest errors.** At each origin, the ensemble chosen on the OLDER
  origins only forecasts the next 14 days (errors of a selection scored on the same origins are
  too small: bands built on them held ~68% instead of 80%). These errors, scaled per series (their
  median absolute value) and per horizon step (pooled growth curve), give the interval shape:
  pooled empirical quantiles per class over all series of the call when there are enough
  (`MIN_POOLED`), else Student-t quantiles of the same per-series scale (degrees of freedom: the
  origins the scale comes from). Skewed where demand is skewed, wider where the series is noisier.
  The pooled errors are standardised leave-one-origin-out (each origin by the scale of the
  series' other origins), so they carry the error of estimating a scale from a few weeks, as the
  real forecast's band does; both changes widen bands that held too little on real data
  (development data, 6 origins: electricity 0.738 -> 0.762, wiki10 0.782 -> 0.805, wikipv2
  0.726 -> 0.770, bike 0.778 -> 0.798 of actuals inside P10-P90).
  A regime shock (a lockdown, a feed change) after the honest origins would still get the calm
  band: the robust filter's running error scale (about three weeks of memory) is compared with
  its mean over the span of the honest origins, and a series noisier now gets its band scale
  multiplied by the square root of that ratio (the geometric mean of the two noise levels;
  widen only: a calm spell is no promise that the next two weeks stay calm). Pedestrian counts
  through the 2021 lockdown: 0.488 -> 0.583.
- **Count data.** An interval for whole numbers with ties (an item that mostly sells 0) is
  scored and built as the interval of the count spread uniformly over [k, k+1) (X + U: the
  randomised PIT of a discrete forecast, Czado, Gneiting and Held 2009): the honest backtest
  errors of a count series get a fixed-seed U(0, 1) added before the quantiles, a count series
  too short to backtest gets the quantiles of a negative binomial around its mean (dispersion
  from its own days, at least Poisson, inflated by 1 + 1/days for the estimated mean), an item
  that only ever sold 0 gets U(0, 1). floor() of such a quantile is the count quantile. An
  inclusive band on whole numbers otherwise "holds" every tie at its edge (m5_short: 0.95 of
  actuals inside, 0.84 by the randomised PIT once the bands are built this way).
- **No yearly seasonality (not tried)**: the window is 56 weeks (memory and speed at M5 scale),
  a yearly component needs two years per series, and over 14 days the level and weekly pattern
  follow the slow yearly swing. Holidays are the visible cost (bike, Christmas week).
"""

from __future__ import annotations

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
CLEAN_K = 2.5  # one-step errors beyond this many running mean-absolute errors (about 2 sigma, Huber) are clipped
CLEAN_WARMUP = 14  # no clipping during a series' first two weeks (the running scale is not set yet)
SCALE_FLOOR = 0.05  # floor of the running error scale, as a share of the series' mean (constant series)
INTERMITTENT_FENCE = 3.0  # intermittent sizes above this many times their 90th percentile are cut
ADI_INTERMITTENT = 1.32  # Syntetos-Boylan cut-off on the average inter-demand interval
ENSEMBLE = 3  # forecasts of the best this-many candidates are averaged
ONE_STEP_CRITERION = "aicc"  # the one-step member: "aicc" (Gaussian likelihood, as AutoETS) or "mae"
ONE_STEP_MEMBER = True  # smooth series: one ensemble member is the best by whole-window one-step error
ORIGIN_DECAY = 1.0  # weight of each older origin in the selection score (1: all origins count alike)
MIN_SELECT_ORIGINS = 4  # honest interval errors need at least this many older origins to select on
VOLATILITY_WEIGHT = 0.5  # band scale x (current noise / noise over the honest origins) ** this, widen only
VOLATILITY_MAX = 9.0  # the noise ratio is capped here
LOO_STANDARDISE = True  # pooled standardised errors use leave-one-origin-out scales (see _loo_standardise)
MIN_POOLED = 1000  # fewer standardised errors than this: fall back to normal quantiles
COUNT_JITTER = True  # interval errors of count series are those of y + U(0, 1) (see _fit_class)
JITTER_SEED = 20261130  # fixed: the same history always gets the same bands
PROFILE_PRIOR_DAYS = 28.0  # shrinkage of an intermittent item's weekday profile towards flat

# Candidate grids (model families and their smoothing constants). Deliberately coarse: the
# ensemble of the best few absorbs the grid's gaps, and a coarse grid overfits less.
ETS_ALPHAS = (0.03, 0.1, 0.25, 0.5)
ETS_GAMMAS = (0.03, 0.1, 0.25)
TREND_ALPHAS = (0.1, 0.25, 0.5)
TREND_GAMMAS = (0.03, 0.15)
TREND_BETA_SHARE = 0.1  # trend smoothing as a share of alpha
TREND_PHIS = (0.9, 0.98)  # trend damping: fades within about two weeks / persists over months
SES_ALPHAS = (0.03, 0.1, 0.3, 0.6)  # no naive (alpha 1): it hands the last day's noise to all 14 days
# multiplicative weekly season (the weekly swing scales with the level): (alpha, beta, gamma, phi)
MULT_GRID = tuple((a, 0.0, g, 1.0) for a in (0.1, 0.25, 0.5) for g in (0.03, 0.1)) + tuple(
    (a, a * 0.1, 0.1, phi) for a in (0.1, 0.25) for phi in (0.9, 0.98)
)
SEASON_FACTOR_RANGE = (0.05, 20.0)  # multiplicative season factors stay in this range
WDMEAN_RHOS = (0.1, 0.25)
CROSTON_ALPHAS = (0.05, 0.15)
TSB_ALPHAS = ((0.05, 0.1), (0.15, 0.2))  # (probability, size)
ADIDA_ALPHAS = (0.1, 0.3)
# level + weekly season with the level near a random walk (what AutoETS fits to electricity
# demand or a price series): a candidate for the one-step member only, never for the 14-day
# backtest pick (there a persistent level hands the last days' noise to all 14 days)
PERSISTENT_ALPHAS = (0.9,)
PERSISTENT_GAMMA = 0.03
# the same without a weekly season (no weekly pattern: most M4 daily series, prices, indices):
# a level near a random walk, and that level plus a slow drift (the trend an exponentially
# weighted mean of the daily changes: the random walk with drift / Theta-like extrapolation)
NONSEASONAL_PERSISTENT_ALPHAS = (0.9,)
DRIFT_ALPHAS = (0.9,)
DRIFT_BETA = 0.01  # the drift forgets over about 100 days
# per-series refinement of the one-step member's smoothing constants (see _refine)
REFINE_STEPS = 1
REFINE_K = 4  # moves per series: alpha down/up, gamma (or the trend's beta) down/up
REFINE_FACTOR = 1.6  # a step: about half a grid step (the grids step by 2.5-3x)
REFINE_ALPHA_MAX = 0.999
REFINE_GAMMA_MAX = 0.5
PROFILE_RHO = 0.05  # weekday profile of intermittent items: a slow exponentially weighted mean


@dataclass(frozen=True)
class Candidate:
    family: str
    kind: str  # "ets", "mets" (multiplicative season), "wdmean", "croston", "tsb", "adida"
    alpha: float = 0.0
    beta: float = 0.0
    gamma: float = 0.0
    phi: float = 1.0
    seasonal: bool = True
    intermittent: bool = False
    profiled: bool = False
    onestep_only: bool = False  # a candidate only the one-step (likelihood) member may use


def _candidates() -> list[Candidate]:
    out: list[Candidate] = []
    for a in ETS_ALPHAS:
        for g in ETS_GAMMAS:
            out.append(Candidate("ets", "ets", a, 0.0, g, 1.0))
    for a in TREND_ALPHAS:
        for g in TREND_GAMMAS:
            for phi in TREND_PHIS:
                out.append(Candidate("ets_damped", "ets", a, a * TREND_BETA_SHARE, g, phi))
    for a in SES_ALPHAS:
        out.append(Candidate("ses", "ets", a, 0.0, 0.0, 1.0, seasonal=False))
    out.append(Candidate("seasonal_naive", "ets", 0.0, 0.0, 1.0, 1.0))
    for a in PERSISTENT_ALPHAS:
        out.append(Candidate("ets", "ets", a, 0.0, PERSISTENT_GAMMA, 1.0, onestep_only=True))
    for a in NONSEASONAL_PERSISTENT_ALPHAS:
        out.append(Candidate("ses", "ets", a, 0.0, 0.0, 1.0, seasonal=False))
    for a in DRIFT_ALPHAS:
        out.append(Candidate("drift", "ets", a, DRIFT_BETA, 0.0, 1.0, seasonal=False))
    for a, b, g, phi in MULT_GRID:
        out.append(Candidate("ets_mult" if b == 0 else "ets_mult_damped", "mets", a, b, g, phi))
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
    paths: np.ndarray  # (O, H, n) honest backtest error paths (scaled units), for exceedance bootstraps


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


def clean(
    y: np.ndarray,
    first: np.ndarray,
    intermittent: np.ndarray | None = None,
    vol: np.ndarray | None = None,
    vol_span: int = 0,
) -> np.ndarray:
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
            fence = INTERMITTENT_FENCE * nan_quantile_rows(sizes, 0.9)
        out[rows] = np.where(sub > fence[:, None], fence[:, None], sub)
        smooth = np.flatnonzero(~intermittent)
        if smooth.size:
            sub_vol = np.ones(smooth.size) if vol is not None else None
            out[smooth] = clean(y[smooth], first[smooth], vol=sub_vol, vol_span=vol_span)
            if vol is not None:
                vol[smooth] = sub_vol
        return out
    level, season, mae, _ = _initial_state(y, first)
    level = level.astype(np.float32)
    season = season.astype(np.float32)
    scale = np.maximum(mae, SCALE_FLOOR).astype(np.float32)
    alpha, gamma, lam = np.float32(0.1), np.float32(0.05), np.float32(0.05)
    start = int(first.min())
    span_from = days - vol_span
    span_sum = np.zeros(n, np.float64)
    span_cnt = np.zeros(n, np.float64)
    for t in range(start, days):
        p = (t - days) % PERIOD
        yt = y[:, t]
        obs = ~np.isnan(yt)
        if vol is not None and t >= span_from:
            ok = t >= first + CLEAN_WARMUP
            span_sum += np.where(ok, scale, 0.0)
            span_cnt += ok
        fit = level + season[p]
        err = np.where(obs, yt - fit, 0).astype(np.float32)
        lim = CLEAN_K * scale
        warm = t < first + CLEAN_WARMUP
        clipped = np.where(warm, err, np.clip(err, -lim, lim))
        out[:, t] = np.where(obs, fit + clipped, np.nan)
        level += alpha * clipped
        season[p] += gamma * clipped
        scale = np.where(obs, np.maximum(scale + lam * (np.abs(clipped) - scale), SCALE_FLOOR), scale)
    if vol is not None:
        with np.errstate(all="ignore"):
            ratio = np.where(span_cnt >= PERIOD, scale / (span_sum / np.maximum(span_cnt, 1)), 1.0)
        vol[:] = np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1.0)
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


def nan_quantile_rows(x: np.ndarray, q: float) -> np.ndarray:
    """Per-row quantile ignoring NaN (linear interpolation), NaN for an all-NaN row; one sort,
    much faster than np.nanquantile along an axis."""
    n, m = x.shape
    if m == 0:
        return np.full(n, np.nan)
    srt = np.sort(x, axis=1)  # NaN sorts last
    cnt = (~np.isnan(x)).sum(axis=1)
    pos = q * np.maximum(cnt - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(cnt - 1, 0))
    frac = pos - lo
    r = np.arange(n)
    out = srt[r, lo] * (1 - frac) + srt[r, hi] * frac
    return np.where(cnt > 0, out, np.nan)


def fit_block(
    y: np.ndarray,
    first: np.ndarray,
    horizon: int,
    *,
    origins: int = ORIGINS,
    eval_horizon: int = EVAL_HORIZON,
    spacing: int = PERIOD,
    count_unit: np.ndarray | None = None,
) -> BlockFit:
    """Fit the candidates of each series' class to every series of a block (y: n x days, scaled
    float32, NaN missing, leading zeros already cut) and combine the best ones per series.
    Smooth and intermittent series run separately, each only through its own families.
    `count_unit` (n,): one unit of demand in scaled units for count series, 0 for continuous ones
    (the interval errors of counts are those of the count spread over [k, k+1): see COUNT_JITTER)."""
    n, days = y.shape
    adi, _cv2, _nobs = _class_stats(y)
    intermittent = adi > ADI_INTERMITTENT
    vol = np.ones(n)
    span = EVAL_HORIZON + spacing * max(origins - MIN_SELECT_ORIGINS - 1, 0)  # the days the honest errors cover
    yc = clean(y, first, intermittent, vol=vol, vol_span=span)
    parts = []
    for cls in (False, True):
        rows = np.flatnonzero(intermittent == cls)
        if rows.size:
            parts.append(
                (
                    rows,
                    _fit_class(
                        y[rows],
                        yc[rows],
                        first[rows],
                        adi[rows],
                        cls,
                        horizon,
                        origins,
                        eval_horizon,
                        spacing,
                        None if count_unit is None else count_unit[rows],
                    ),
                )
            )
    H = eval_horizon
    O = max([p.std_errors.shape[0] for _, p in parts] + [1])
    Op = max([p.paths.shape[0] for _, p in parts] + [1])
    out = BlockFit(
        mean=np.zeros((n, horizon)),
        method=np.zeros(n, np.int64),
        intermittent=intermittent,
        err_scale=np.full(n, np.nan),
        step_ratio=np.full((n, H), np.nan),
        std_errors=np.full((O, H, n), np.nan, np.float32),
        paths=np.full((Op, H, n), np.nan, np.float32),
    )
    # a series noisier now than over the weeks its honest errors come from (a regime shock: a
    # lockdown, a feed change) gets a wider band: the geometric mean of the two noise levels
    mult = np.clip(vol, 1.0, VOLATILITY_MAX) ** VOLATILITY_WEIGHT
    for rows, p in parts:
        out.mean[rows] = p.mean
        out.method[rows] = p.method
        out.err_scale[rows] = p.err_scale * mult[rows]
        out.step_ratio[rows] = p.step_ratio
        out.std_errors[: p.std_errors.shape[0], :, rows] = p.std_errors
        out.paths[: p.paths.shape[0], :, rows] = p.paths
    return out


def _fit_class(
    y: np.ndarray,
    yc: np.ndarray,
    first: np.ndarray,
    adi: np.ndarray,
    intermittent: bool,
    horizon: int,
    origins: int,
    H: int,
    spacing: int,
    count_unit: np.ndarray | None = None,
) -> BlockFit:
    n, days = y.shape
    cands_all = [(i, c) for i, c in enumerate(CANDIDATES) if c.intermittent == intermittent]
    cands = [c for _, c in cands_all]
    C = len(cands)
    level0, season0, _mae, _cnt = _initial_state(yc, first)
    f32 = np.float32

    def col(vals: list[float]) -> np.ndarray:
        return np.asarray(vals, dtype=f32)[:, None]

    # trend candidates last, so the trend updates run on a slice
    ets = sorted((i for i, c in enumerate(cands) if c.kind == "ets"), key=lambda i: cands[i].beta > 0)
    wdm = [i for i, c in enumerate(cands) if c.kind == "wdmean"]
    cro = [i for i, c in enumerate(cands) if c.kind == "croston" and not c.profiled]
    tsb = [i for i, c in enumerate(cands) if c.kind == "tsb" and not c.profiled]
    ada = [i for i, c in enumerate(cands) if c.kind == "adida" and not c.profiled]
    profiled_of = {}
    for i, c in enumerate(cands):
        if c.intermittent and not c.profiled:
            profiled_of[i] = next(
                j
                for j, d in enumerate(cands)
                if d.profiled and d.kind == c.kind and d.alpha == c.alpha and d.beta == c.beta
            )
    # ETS: additive level, damped trend, weekly season
    g = len(ets)
    e_alpha = col([cands[i].alpha for i in ets])
    e_beta = col([cands[i].beta for i in ets])
    e_gamma = col([cands[i].gamma for i in ets])
    e_phi = col([cands[i].phi for i in ets])
    e_seasonal = np.array([cands[i].seasonal for i in ets], dtype=bool)
    lvl = np.repeat(level0[None, :], g, axis=0).astype(f32)
    trd = np.zeros((g, n), f32)
    sea = np.repeat(season0[:, None, :], g, axis=1).astype(f32)  # (7, g, n)
    if g:
        sea[:, ~e_seasonal, :] = 0
    # ETS with multiplicative season: y = (l + phi b) s + e, corrections divided by s (and by l for s)
    mets = sorted((i for i, c in enumerate(cands) if c.kind == "mets"), key=lambda i: cands[i].beta > 0)
    gm = len(mets)
    m_alpha = col([cands[i].alpha for i in mets])
    m_beta = col([cands[i].beta for i in mets])
    m_gamma = col([cands[i].gamma for i in mets])
    m_phi = col([cands[i].phi for i in mets])
    with np.errstate(all="ignore"):
        fac0 = np.where(level0[None, :] > 0, 1.0 + season0 / np.where(level0 > 0, level0, 1.0)[None, :], 1.0)
    fac0 = np.clip(fac0, *SEASON_FACTOR_RANGE)
    fac0 /= fac0.mean(axis=0, keepdims=True)
    mlvl = np.repeat(np.maximum(level0, 1e-3)[None, :], gm, axis=0).astype(f32)
    mtrd = np.zeros((gm, n), f32)
    msea = np.repeat(fac0[:, None, :], gm, axis=1).astype(f32)  # (7, gm, n)
    mdsum = np.cumsum(m_phi.astype(np.float64) ** np.arange(1, max(H, horizon) + 1)[None, :], axis=1).astype(f32)
    merr = np.empty((gm, n), f32)
    mtmp = np.empty((gm, n), f32)
    steps_all = max(H, horizon)
    dsum_all = np.cumsum(e_phi.astype(np.float64) ** np.arange(1, steps_all + 1)[None, :], axis=1).astype(f32)
    # exponentially weighted weekday means (intermittent: only the slow profile)
    rhos = col([cands[i].alpha for i in wdm] + ([PROFILE_RHO] if intermittent else []))
    wd = np.maximum(np.repeat((level0[None, :] + season0)[:, None, :], len(rhos), axis=1), 0).astype(f32)
    # Croston SBA (size z, interval x, observed days since the last demand q), TSB, ADIDA
    with np.errstate(all="ignore"):
        idx = np.arange(days)[None, :]
        init_win = np.where((idx < (first + INIT_DAYS)[:, None]) & (yc > 0), yc, np.nan)
        zsz = np.nan_to_num(np.nanmean(init_win, axis=1), nan=1.0)
    adi0 = np.where(np.isfinite(adi), adi, 1.0)
    c_alpha = col([cands[i].alpha for i in cro])
    cz = np.repeat(zsz[None, :], len(cro), axis=0).astype(f32)
    cx = np.repeat(adi0[None, :], len(cro), axis=0).astype(f32)
    cq = np.zeros(n, f32)
    t_ap = col([cands[i].alpha for i in tsb])
    t_az = col([cands[i].beta for i in tsb])
    tp = np.repeat((1.0 / adi0)[None, :], len(tsb), axis=0).astype(f32)
    tz = np.repeat(zsz[None, :], len(tsb), axis=0).astype(f32)
    a_alpha = col([cands[i].alpha for i in ada])
    arate = np.repeat(np.maximum(level0, 0)[None, :], len(ada), axis=0).astype(f32)
    bsum = np.zeros(n, f32)
    bcnt = np.zeros(n, f32)

    origin_days = [days - 1 - H - spacing * j for j in range(origins)]
    origin_days = [t for t in origin_days if t >= int(first.min()) + PERIOD]
    O = len(origin_days)
    origin_slot = {t: j for j, t in enumerate(origin_days)}
    # one spare slot after the candidates: the refined one-step member's snapshots (see _refine)
    F = np.full((C + 1, max(O, 1), H, n), np.nan, f32)

    def snapshot(t: int, steps: int) -> np.ndarray:
        """Every candidate's forecast for days t+1..t+steps from the current state: (C, steps, n)."""
        out = np.empty((C, steps, n), f32)
        ph = _phase(np.arange(t + 1, t + 1 + steps), days)
        if g:
            out[ets] = lvl[:, None, :] + dsum_all[:, :steps, None] * trd[:, None, :] + np.moveaxis(sea[ph], 0, 1)
        if gm:
            out[mets] = (mlvl[:, None, :] + mdsum[:, :steps, None] * mtrd[:, None, :]) * np.moveaxis(msea[ph], 0, 1)
        wdv = wd[ph]  # (steps, r, n)
        if wdm:
            out[wdm] = np.moveaxis(wdv[:, : len(wdm), :], 0, 1)
        if intermittent:
            prof_raw = wdv[:, -1, :]  # (steps, n)
            pm = wd[:, -1, :].mean(axis=0)
            seen = np.minimum(np.maximum(t + 1 - first, 0), 10 * PROFILE_PRIOR_DAYS).astype(f32)
            w = seen / (seen + PROFILE_PRIOR_DAYS)
            with np.errstate(all="ignore"):
                prof = np.where(pm > 0, prof_raw / np.where(pm > 0, pm, 1), 1.0)
            prof = (w * prof + (1 - w)).astype(f32)
            flat_c = (1 - c_alpha / 2) * cz / np.maximum(cx, 1.0)
            for idx_flat, flat in ((cro, flat_c), (tsb, tp * tz), (ada, arate)):
                for k, i in enumerate(idx_flat):
                    out[i] = flat[k][None, :]
                    out[profiled_of[i]] = flat[k][None, :] * prof
        return out

    start = int(first.min()) if n else days
    err = np.empty((g, n), f32)
    tmp = np.empty((g, n), f32)
    tr = slice(g - sum(cands[i].beta > 0 for i in ets), g)  # the trend rows of the ETS family
    mtr = slice(gm - sum(cands[i].beta > 0 for i in mets), gm)
    complete = ~np.isnan(yc).any(axis=0)  # days on which every series is observed
    onestep = True if (ONE_STEP_MEMBER and not intermittent) else None
    aicc = ONE_STEP_CRITERION == "aicc"
    warm = start + INIT_DAYS
    e_sae = np.zeros((g, n), f32)
    m_sae = np.zeros((gm, n), f32)
    lo_f, hi_f = f32(SEASON_FACTOR_RANGE[0]), f32(SEASON_FACTOR_RANGE[1])
    for t in range(start, days):
        p = (t - days) % PERIOD
        yt = yc[:, t]
        if complete[t]:
            obs = True
            y0 = yt
        else:
            obs = ~np.isnan(yt)
            y0 = np.where(obs, yt, f32(0))
        if g:
            s = sea[p]
            tt = trd[tr]
            np.multiply(tt, e_phi[tr], out=tt)
            lvl[tr] += tt
            np.subtract(y0, lvl, out=err)
            err -= s
            if obs is not True:
                err *= obs
            if onestep is not None and t >= warm:
                if aicc:
                    np.multiply(err, err, out=tmp)
                else:
                    np.abs(err, out=tmp)
                e_sae += tmp
            np.multiply(err, e_alpha, out=tmp)
            lvl += tmp
            np.multiply(err[tr], e_beta[tr], out=tmp[tr])
            tt += tmp[tr]
            np.multiply(err, e_gamma, out=tmp)
            s += tmp
        if gm:
            sm = msea[p]
            mt = mtrd[mtr]
            np.multiply(mt, m_phi[mtr], out=mt)
            mlvl[mtr] += mt  # one-step level forecast
            np.multiply(mlvl, sm, out=merr)
            np.subtract(y0, merr, out=merr)
            if obs is not True:
                merr *= obs
            if onestep is not None and t >= warm:
                m_sae += merr * merr if aicc else np.abs(merr)
            np.divide(merr, sm, out=mtmp)
            mt += m_beta[mtr] * mtmp[mtr]
            mtmp *= m_alpha
            mlvl += mtmp
            np.maximum(mlvl, f32(1e-4), out=mlvl)
            np.divide(merr, mlvl, out=mtmp)
            mtmp *= m_gamma
            sm += mtmp
            np.clip(sm, lo_f, hi_f, out=sm)
        if len(rhos):
            w = wd[p]
            w += rhos * ((y0 - w) * obs)
        if intermittent:
            cq += obs
            demand = obs & (y0 > 0)
            cz += c_alpha * ((y0 - cz) * demand)
            cx += c_alpha * ((cq - cx) * demand)
            cq[demand] = 0
            tp += t_ap * ((demand.astype(f32) - tp) * obs)
            tz += t_az * ((y0 - tz) * demand)
            bsum += y0
            bcnt += obs
            if p == PERIOD - 1:
                has = bcnt > 0
                rate = np.where(has, bsum / np.maximum(bcnt, 1), f32(0))
                arate += a_alpha * ((rate - arate) * has)
                bsum[:] = 0
                bcnt[:] = 0
        j = origin_slot.get(t)
        if j is not None:
            F[:C, j] = snapshot(t, H)

    final = snapshot(days - 1, horizon)  # (C, horizon, n)

    # --- selection -----------------------------------------------------------------------------
    history_days = days - first  # days since the first sale (NaN days included)
    allowed = np.ones((C, n), bool)
    for i, c in enumerate(cands):
        if c.beta > 0 and c.kind in ("ets", "mets"):
            allowed[i] &= history_days >= MIN_TREND_DAYS
        if c.kind in ("ets", "mets", "wdmean") and c.seasonal:
            allowed[i] &= history_days >= (PERIOD if c.family == "seasonal_naive" else MIN_SEASON_DAYS)
    if intermittent:
        default = next(i for i, c in enumerate(cands) if c.family == "tsb" and not c.profiled)
        prior = np.full((C, n), np.inf)
        prior[default] = 0.0
    else:
        prior = np.full((C, n), np.inf)
        prior[next(i for i, c in enumerate(cands) if c.family == "ses" and c.alpha == 0.1)] = 1.0
        prior[
            next(i for i, c in enumerate(cands) if c.family == "weekday_mean" and c.alpha == 0.25),
            history_days >= MIN_SEASON_DAYS,
        ] = 0.0
    if O:
        A_clean = np.stack([yc[:, t + 1 : t + 1 + H].T for t in origin_days])  # (O, H, n)
        A_raw = np.stack([y[:, t + 1 : t + 1 + H].T for t in origin_days])
        dev = F[:C, :O] - A_clean[None]
        # smooth: absolute error (robust; the MASE numerator); intermittent: squared error, since
        # absolute error favours forecasts biased towards zero
        dev = dev * dev if intermittent else np.abs(dev)
        per_origin = np.nansum(dev, axis=2)  # (C, O, n)
        cnt_origin = (~np.isnan(dev)).sum(axis=2)
    else:
        A_raw = np.full((1, H, n), np.nan, f32)
        per_origin = np.zeros((C, 1, n))
        cnt_origin = np.zeros((C, 1, n), np.int64)

    def choose(from_origin: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-ENSEMBLE candidates and weights by the error of origins from_origin.. (older)."""
        wo = (ORIGIN_DECAY ** np.arange(per_origin.shape[1] - from_origin))[None, :, None]
        cnt = (cnt_origin[:, from_origin:] * wo).sum(axis=1)
        with np.errstate(all="ignore"):
            score = np.where(cnt > 0, (per_origin[:, from_origin:] * wo).sum(axis=1) / np.maximum(cnt, 1e-9), np.inf)
        score = np.where(allowed & ~onestep_only[:, None], score, np.inf)
        unscored = np.asarray(~np.isfinite(score).any(axis=0))
        score = np.where(unscored[None, :], prior, score)
        top = np.argsort(score, axis=0, kind="stable")[:ENSEMBLE]
        ok: np.ndarray = np.isfinite(np.take_along_axis(score, top, axis=0))
        ok[0] = True
        return top, ok / ok.sum(axis=0, keepdims=True)

    def combine(top: np.ndarray, wts: np.ndarray, arr: np.ndarray) -> np.ndarray:
        """Weighted ensemble of candidates `top` from arr (C, ..., n) -> (..., n)."""
        cols = np.arange(n)
        out = np.zeros(arr.shape[1:], np.float64)
        for r in range(top.shape[0]):
            out += wts[r] * np.moveaxis(arr[top[r], ..., cols], 0, -1)
        return out

    onestep_only = np.array([c.onestep_only for c in cands], dtype=bool)
    top, wts = choose(0)
    if onestep is not None and ENSEMBLE >= 2:
        # one member of the ensemble is the best model by its one-step error over the whole
        # window (what a likelihood fit rewards): steadier than the 12-week horizon score alone
        sae = np.full((C, n), np.inf)
        sae[ets] = e_sae
        sae[mets] = m_sae
        if aicc:  # Gaussian likelihood of the one-step errors, penalised by the parameter count
            nobs = (~np.isnan(yc[:, min(warm, days) :])).sum(axis=1).astype(np.float64)[None, :]
            k = np.array([_param_count(c) for c in cands], np.float64)[:, None]
            with np.errstate(all="ignore"):
                sae = np.where(
                    (nobs > k + 1) & (sae > 0),
                    nobs * np.log(sae / nobs) + 2 * k + 2 * k * (k + 1) / (nobs - k - 1),
                    np.inf,
                )
        sae = np.where(allowed & (history_days >= INIT_DAYS + MIN_TREND_DAYS)[None, :], sae, np.inf)
        best1 = np.argmin(sae, axis=0)
        has1 = np.isfinite(sae[best1, np.arange(n)])
        if REFINE_STEPS and aicc and g and O and has1.any():
            # a finer look around each series' best additive model: its smoothing constants moved
            # a step up and down, all series at once; the member becomes the refined model where
            # that lowers the AICc (same parameter count: the likelihood decides)
            F_r, final_r, sae_r = _refine(yc, first, level0, season0, cands, best1, origin_days, horizon, H, warm)
            with np.errstate(all="ignore"):
                kb = k[best1, 0][None, :]
                aic_r = np.where(
                    (nobs > kb + 1) & (sae_r > 0),
                    nobs * np.log(sae_r / nobs) + 2 * kb + 2 * kb * (kb + 1) / (nobs - kb - 1),
                    np.inf,
                )
            rk = np.argmin(aic_r, axis=0)
            cols1 = np.arange(n)
            better = has1 & (aic_r[rk, cols1] < sae[best1, cols1])
            if better.any():
                F[C] = F_r[rk, :, :, cols1].transpose(1, 2, 0)  # only the `better` series read it
                final = np.concatenate([final, final_r[rk, :, cols1].T[None]])
                best1 = np.where(better, C, best1)
        dup = (top[:-1] == best1[None, :]).any(axis=0)
        swap = has1 & ~dup
        top[-1] = np.where(swap, best1, top[-1])
        used = (wts > 0) | swap[None, :] & (np.arange(top.shape[0]) == top.shape[0] - 1)[:, None]
        wts = used / used.sum(axis=0, keepdims=True)
    mean = combine(top, wts, final).T  # (n, horizon)
    method = np.array([FAMILIES.index(c.family) for c in cands])[top[0]]
    Fe = combine(top, wts, F[:, :O]) if O else np.zeros((1, H, n))
    E = (A_raw - Fe).astype(np.float32)
    # Honest errors for the interval shape: at each origin, the ensemble chosen on the OLDER
    # origins only (selection on the same errors would make the bands too narrow).
    honest = O - MIN_SELECT_ORIGINS
    if honest > 0:
        E_h = np.empty((honest, H, n), np.float32)
        for j in range(honest):
            top_h, wts_h = choose(j + 1)
            E_h[j] = A_raw[j] - combine(top_h, wts_h, F[:, j])
    else:
        E_h = E
    paths = E_h
    if COUNT_JITTER and count_unit is not None and (count_unit > 0).any():
        # counts: the errors of the count spread uniformly over [k, k+1) (the randomised PIT of a
        # discrete forecast), so the bands are quantiles of that continuous version: no ties
        u = np.random.default_rng(JITTER_SEED).random(E_h.shape, dtype=np.float32)
        E_h = E_h + u * count_unit.astype(np.float32)[None, None, :]
    with np.errstate(all="ignore"):
        # the per-series spread unit: median |honest error| (in-sample errors when too few)
        absE = np.abs(E_h)
        have = (~np.isnan(E_h)).sum(axis=(0, 1))
        flat = absE.reshape(-1, n).T
        scale = np.where(have >= 2 * PERIOD, nan_quantile_rows(flat, 0.5), np.nan)
        mae = np.nanmean(flat, axis=1) if flat.shape[1] else np.full(n, np.nan)
        scale = np.where(scale > 0, scale, np.where(have >= 2 * PERIOD, mae, np.nan))
        step = np.stack([nan_quantile_rows(absE[:, h, :].T, 0.5) for h in range(H)], axis=1) / scale[:, None]
        std = _loo_standardise(E_h, absE, scale) if LOO_STANDARDISE else E_h / scale[None, None, :]
    return BlockFit(
        mean=mean,
        method=method,
        intermittent=np.full(n, intermittent),
        err_scale=scale,
        step_ratio=step,
        std_errors=std,
        paths=paths,
    )


def _refine(
    yc: np.ndarray,
    first: np.ndarray,
    level0: np.ndarray,
    season0: np.ndarray,
    cands: list[Candidate],
    best: np.ndarray,
    origin_days: list[int],
    horizon: int,
    H: int,
    warm: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each series' best additive ETS candidate (`best`, index into `cands`) refitted with its
    smoothing constants moved one step (x REFINE_FACTOR) down and up: alpha (the trend's beta
    keeps its share of alpha), then gamma (seasonal models) or the trend's beta (trend models).
    One more pass over the days with (REFINE_K, series) states, so every series gets its own
    constants and the cost does not grow with the grid. Returns the refined models' snapshots at
    the origins (REFINE_K, O, H, n), their forecasts (REFINE_K, horizon, n) and their sums of
    squared one-step errors (REFINE_K, n; inf where a move does not apply)."""
    n, days = yc.shape
    f32 = np.float32
    K = REFINE_K
    kind_ok = np.array([c.kind == "ets" and c.family != "seasonal_naive" for c in cands])[best]
    a0 = np.array([c.alpha for c in cands])[best]
    b0 = np.array([c.beta for c in cands])[best]
    g0 = np.array([c.gamma for c in cands])[best]
    phi0 = np.array([c.phi for c in cands])[best]
    seasonal = np.array([c.seasonal for c in cands])[best]
    trend = b0 > 0
    up, down = REFINE_FACTOR, 1.0 / REFINE_FACTOR
    a_hi = REFINE_ALPHA_MAX
    alpha = np.stack([a0 * down, np.minimum(a0 * up, a_hi), a0, a0])
    beta = np.stack([b0 * down, b0 * np.minimum(a0 * up, a_hi) / np.where(a0 > 0, a0, 1.0), b0, b0])
    gamma = np.stack([g0, g0, g0, g0])
    gamma[2] = np.where(seasonal, g0 * down, g0)
    gamma[3] = np.where(seasonal, np.minimum(g0 * up, REFINE_GAMMA_MAX), g0)
    beta[2] = np.where(~seasonal & trend, b0 * down, beta[2])
    beta[3] = np.where(~seasonal & trend, b0 * up, beta[3])
    second = kind_ok & (seasonal | trend)  # SES has no second constant to move
    valid = np.stack([kind_ok, kind_ok & (a0 < a_hi), second, second])
    e_alpha, e_beta, e_gamma = alpha.astype(f32), beta.astype(f32), gamma.astype(f32)
    e_phi = np.broadcast_to(phi0, (K, n)).astype(f32)
    lvl = np.repeat(level0[None, :], K, axis=0).astype(f32)
    trd = np.zeros((K, n), f32)
    sea = np.repeat((season0 * seasonal[None, :])[:, None, :], K, axis=1).astype(f32)  # (7, K, n)
    steps_all = max(H, horizon)
    dsum = np.cumsum(e_phi[:, None, :].astype(np.float64) ** np.arange(1, steps_all + 1)[None, :, None], axis=1)
    dsum = dsum.astype(f32)  # (K, steps, n)
    O = len(origin_days)
    slot = {t: j for j, t in enumerate(origin_days)}
    F = np.full((K, max(O, 1), H, n), np.nan, f32)

    def snap(t: int, steps: int) -> np.ndarray:
        ph = _phase(np.arange(t + 1, t + 1 + steps), days)
        out: np.ndarray = lvl[:, None, :] + dsum[:, :steps, :] * trd[:, None, :] + np.moveaxis(sea[ph], 0, 1)
        return out

    sse = np.zeros((K, n), f32)
    err = np.empty((K, n), f32)
    start = int(first.min()) if n else days
    complete = ~np.isnan(yc).any(axis=0)
    for t in range(start, days):
        p = (t - days) % PERIOD
        yt = yc[:, t]
        if complete[t]:
            obs: np.ndarray | bool = True
            y0 = yt
        else:
            obs = ~np.isnan(yt)
            y0 = np.where(obs, yt, f32(0))
        s = sea[p]
        trd *= e_phi
        lvl += trd
        np.subtract(y0, lvl, out=err)
        err -= s
        if obs is not True:
            err *= obs
        if t >= warm:
            sse += err * err
        lvl += e_alpha * err
        trd += e_beta * err
        s += e_gamma * err
        j = slot.get(t)
        if j is not None:
            F[:, j] = snap(t, H)
    final = snap(days - 1, horizon)
    return F, final, np.where(valid, sse.astype(np.float64), np.inf)


def _loo_standardise(E_h: np.ndarray, absE: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Each origin's errors divided by the series' scale from its OTHER origins (leave one origin
    out), so the pooled standardised errors carry the noise of estimating a series' scale from a
    few weeks, as the real forecast's do (dividing by a scale that saw the same errors makes the
    pooled quantiles, and so the bands, too narrow). Series with a single origin keep `scale`."""
    O, H, n = E_h.shape
    std = np.empty_like(E_h)
    if O < 2:
        std[:] = E_h / scale[None, None, :]
        return std
    flat = absE.reshape(O, -1, n)
    for j in range(O):
        others = np.concatenate([flat[:j], flat[j + 1 :]]).reshape(-1, n).T
        have = (~np.isnan(others)).sum(axis=1)
        s_j = np.where(have >= 2 * PERIOD, nan_quantile_rows(others, 0.5), np.nan)
        s_j = np.where(s_j > 0, s_j, scale)
        std[j] = E_h[j] / s_j[None, :]
    return std


def _param_count(c: Candidate) -> int:
    """Parameters of a candidate as an ETS model (smoothing constants, damping, initial states;
    the AICc penalty of the one-step member): level 2, trend +2, damping +1, weekly season +7."""
    if c.family == "seasonal_naive":
        return PERIOD
    k = 2 + (2 if c.beta > 0 else 0) + (1 if c.phi < 1 else 0)
    return k + (PERIOD if c.seasonal else 0)


_NORMAL = NormalDist()


def student_t_quantile(q: float, dof: float) -> float:
    """Quantile of Student's t (Cornish-Fisher expansion in 1/dof; normal for dof = inf)."""
    zq = _NORMAL.inv_cdf(q)
    if not np.isfinite(dof) or dof <= 0:
        return zq
    v = float(dof)
    return zq + (zq**3 + zq) / (4 * v) + (5 * zq**5 + 16 * zq**3 + 3 * zq) / (96 * v * v)


def standard_quantiles(z: np.ndarray, levels: tuple[float, ...], dof: float = np.inf) -> np.ndarray:
    """Quantiles of pooled standardised errors (in units of median |error|); too few: Student t
    with `dof` (the origins a series' scale was estimated from: a prediction interval with an
    estimated spread is wider than the normal one)."""
    z = z[np.isfinite(z)]
    if z.size >= MIN_POOLED:
        return np.quantile(z, levels) if levels else np.zeros(0)
    # |N(0, s)| has median 0.6745 s
    return np.array([student_t_quantile(q, dof) / 0.6745 for q in levels])
