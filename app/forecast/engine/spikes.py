"""Upper threshold for "today's" demand of each series, from the distribution of its counts.

Why: a fixed floor (a spread of at least 1 unit) makes an item that usually sells 0 or 1 alert
at 8 units while a web page that varies by thousands alerts every other run. The threshold here
is an upper quantile of the demand expected today: a weekday-adjusted robust baseline, and a
negative binomial (Poisson when not overdispersed) for count data, so that `level` is the
chance a normal day stays under it; continuous data gets the baseline plus a normal quantile of
a robust spread. The spread is estimated from the baseline window with the single largest days
winsorised, so a past spike does not hide the next one, and it is floored at a share of the
baseline because real demand always varies more than a tiny MAD says (days of identical values).
"""

from __future__ import annotations

import warnings
from statistics import NormalDist

import numpy as np

SPIKE_WINDOW_DAYS = 56  # the baseline: the last eight weeks
MIN_DAYS = 14  # fewer observed days: no threshold (inf: no alert)
WEEKDAY_PRIOR = 4.0  # shrinkage of the weekday factor (in days of the average)
MIN_REL_SPREAD = 0.05  # spread floor as a share of the baseline (continuous data)
EXACT_MAX_MEAN = 50.0  # above this mean, the count quantile uses a skew-corrected normal
_MAD = 1.4826


def spike_threshold(history: np.ndarray, level: float = 0.999) -> np.ndarray:
    """(series,) threshold for the day after the last column (see `_threshold`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _threshold(history, level)


def _threshold(history: np.ndarray, level: float) -> np.ndarray:
    """Threshold for the day after the last column: a value above it is a spike at
    `level` (e.g. 0.999: a normal day exceeds it one time in a thousand). inf when there is too
    little data (never alert without a baseline). Always >= the baseline."""
    y = np.asarray(history, dtype=np.float64)
    if y.ndim == 1:
        y = y[None, :]
    n, days = y.shape
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie strictly between 0 and 1")
    out = np.full(n, np.inf)
    if n == 0 or days == 0:
        return out
    w = y[:, -SPIKE_WINDOW_DAYS:]
    w = np.where(np.isfinite(w), np.maximum(w, 0.0), np.nan)
    wd = w.shape[1]
    obs = ~np.isnan(w)
    cnt = obs.sum(axis=1)
    ok = cnt >= MIN_DAYS
    if not ok.any():
        return out
    with np.errstate(all="ignore"):
        med = np.nanmedian(w, axis=1)
        mad = np.nanmedian(np.abs(w - med[:, None]), axis=1)
        # winsorise the single largest day (and anything beyond a robust fence) so that a past
        # spike inflates neither the baseline nor the spread
        second = -np.sort(-np.where(obs, w, -np.inf), axis=1)[:, 1] if wd > 1 else med
        fence = np.maximum(second, med + 5 * _MAD * mad)
        wc = np.minimum(w, fence[:, None])
        lvl = np.nanmean(wc, axis=1)
        today_phase = (days - (days - wd)) % 7  # column index of "today" within the window, mod 7
        same = (np.arange(wd)[None, :] % 7 == today_phase % 7) & obs
        s_cnt = same.sum(axis=1)
        s_sum = np.where(same, wc, 0).sum(axis=1)
        factor = np.where(lvl > 0, (s_sum + WEEKDAY_PRIOR * lvl) / ((s_cnt + WEEKDAY_PRIOR) * lvl), 1.0)
        mu = np.maximum(lvl * factor, 0.5 / np.maximum(cnt, 1))  # never sold: at most ~one sale a window
        # spread around the weekday-adjusted baseline (weekday factors of the whole window)
        wf = np.ones((n, 7))
        for p in range(7):
            m = (np.arange(wd)[None, :] % 7 == p) & obs
            c = m.sum(axis=1)
            sm = np.where(m, wc, 0).sum(axis=1)
            wf[:, p] = np.where(lvl > 0, (sm + WEEKDAY_PRIOR * lvl) / ((c + WEEKDAY_PRIOR) * lvl), 1.0)
        base = lvl[:, None] * wf[:, np.arange(wd) % 7]
        dev = wc - base
        var = np.nanmean(dev * dev, axis=1)
        rob = (_MAD * np.nanmedian(np.abs(dev - np.nanmedian(dev, axis=1)[:, None]), axis=1)) ** 2
        var = np.maximum(var, rob)
    integer = np.all(np.where(obs, np.abs(w - np.round(w)) < 1e-9, True), axis=1)
    z = NormalDist().inv_cdf(level)
    cont = ok & ~integer
    sd = np.sqrt(np.maximum(var, (MIN_REL_SPREAD * mu) ** 2))
    out[cont] = (mu + z * sd)[cont]
    counts = ok & integer
    if counts.any():
        out[counts] = _count_quantile(mu[counts], np.maximum(var[counts], mu[counts]), level, z)
    return out


def _count_quantile(mu: np.ndarray, var: np.ndarray, level: float, z: float) -> np.ndarray:
    """Smallest k with P(X <= k) >= level, X negative binomial (mean mu, variance var >= mu;
    Poisson when var == mu); skew-corrected normal (Cornish-Fisher) for large means."""
    q = np.zeros_like(mu)
    sd = np.sqrt(var)
    with np.errstate(all="ignore"):
        skew = np.where(
            mu > 0, (2 * var - mu) / (np.maximum(var, 1e-300) * sd) * np.sqrt(var) / np.maximum(sd, 1e-300) * 1.0, 0.0
        )
    # Cornish-Fisher for the big ones
    big = mu > EXACT_MAX_MEAN
    q[big] = np.ceil(mu[big] + sd[big] * (z + (z * z - 1) * skew[big] / 6))
    small = ~big & (mu > 0)
    if small.any():
        m, v = mu[small], var[small]
        nb = v > m * (1 + 1e-6)
        p = np.where(nb, m / v, 1.0)
        r = np.where(nb, m * m / np.maximum(v - m, 1e-300), np.inf)
        with np.errstate(all="ignore"):
            logpmf = np.where(nb, r * np.log(p), -m)
        pmf = np.exp(logpmf)
        cdf = pmf.copy()
        k_out = np.full(m.shape, np.nan)
        kmax = int(np.ceil(np.max(m + 60 * np.sqrt(v) + 30)))
        for k in range(kmax + 1):
            done = np.isnan(k_out) & (cdf >= level)
            k_out[done] = k
            if not np.isnan(k_out).any():
                break
            with np.errstate(all="ignore"):
                ratio = np.where(nb, (k + r) / (k + 1) * (1 - p), m / (k + 1))
            pmf = pmf * ratio
            cdf = cdf + pmf
        k_out = np.where(np.isnan(k_out), np.ceil(m + sd[small] * (z + 1)), k_out)
        q[small] = k_out
    return q
