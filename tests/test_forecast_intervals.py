"""Calibration of the engine's P10-P90 bands and the service's own coverage metric.

Why: issue 12 asks for bands that hold 75-85% of actuals, step by step and for series whose
last days are missing, and for a production coverage metric that agrees with the backtest's
(count data scored by the randomised PIT). Known-noise synthetic sets make the nominal share
knowable; every check is on many series, so it measures calibration, not luck.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from app.forecast import accuracy, predict
from app.forecast.backtest import Scores
from app.forecast.rules import LineTotals
from app.models import ForecastLine, ForecastSnapshot

WEEK = np.array([1.0, 1.1, 1.05, 1.0, 1.2, 1.6, 0.7])


def demand(n: int, days: int, seed: int, walk: float = 0.0, shape: float = 20.0) -> np.ndarray:
    """Weekly pattern x gamma noise (CV 1/sqrt(shape)) x a level that wanders as a random walk."""
    rng = np.random.default_rng(seed)
    base = 100.0 * np.tile(WEEK, days // 7 + 1)[:days]
    y = base[None, :] * rng.gamma(shape, 1 / shape, (n, days))
    return y * np.exp(np.cumsum(walk * rng.standard_normal((n, days)), axis=1))


def inside(actual: np.ndarray, q: np.ndarray) -> np.ndarray:
    return (actual >= q[0]) & (actual <= q[-1])


@pytest.mark.parametrize("walk", [0.0, 0.02])
def test_bands_hold_nominal_share_in_both_weeks_of_the_horizon(walk: float) -> None:
    """Multiplicative noise (the busy weekday is the noisy one): P10-P90 holds 75-85% overall and
    in each week of the horizon. A monotone-only step curve held 0.74 of days 1-7 and 0.87 of
    days 8-14 on the same data (weekday noise smeared over the steps)."""
    y = demand(400, 314, seed=3, walk=walk)
    p = predict(y[:, :300], 14, quantiles=(0.1, 0.9))
    hit = inside(y[:, 300:], p.quantiles)
    assert 0.75 <= hit.mean() <= 0.85
    assert 0.75 <= hit[:, :7].mean() <= 0.85 and 0.75 <= hit[:, 7:].mean() <= 0.85
    busy = (np.arange(14) % 7) == int(np.argmax(np.tile(WEEK, 50)[300:307]))
    assert 0.72 <= hit[:, busy].mean() <= 0.88  # the noisiest weekday is not left outside


def test_count_bands_hold_nominal_share_by_randomised_pit() -> None:
    """Poisson counts with a weekly pattern (mean 2-5 a day): the share of [k, k+1) inside the
    band, averaged, is 75-85% (an inclusive band on whole numbers would get every tie free)."""
    rng = np.random.default_rng(5)
    lam = 3.0 * np.tile(WEEK, 50)[:314]
    y = rng.poisson(np.broadcast_to(lam, (400, 314))).astype(np.float64)
    p = predict(y[:, :300], 14, quantiles=(0.1, 0.9))
    share = accuracy.band_share(y[:, 300:], p.quantiles[0], p.quantiles[1], counts=True)
    assert 0.75 <= share.mean() <= 0.85
    assert (p.quantiles >= 0).all() and np.isfinite(p.quantiles).all()


@pytest.mark.parametrize("gap", [2, 7])
def test_bands_with_missing_last_days_stay_calibrated_and_widen(gap: int) -> None:
    """The last `gap` days missing: the same 14 target days are `gap` more days ahead of the
    last observation; with a wandering level the band widens for that and still holds 75-85%."""
    y = demand(400, 314, seed=8, walk=0.03)
    full = predict(y[:, :300], 14, quantiles=(0.1, 0.9))
    late = y[:, :300].copy()
    late[:, -gap:] = np.nan
    p = predict(late, 14, quantiles=(0.1, 0.9))
    assert 0.75 <= inside(y[:, 300:], p.quantiles).mean() <= 0.85
    width = (p.quantiles[1] - p.quantiles[0]).mean() / (full.quantiles[1] - full.quantiles[0]).mean()
    assert width > {2: 1.0, 7: 1.05}[gap]  # without the lead: 0.99 / 1.00
    assert np.isfinite(p.quantiles).all() and (p.quantiles >= 0).all()


def test_long_silent_series_get_a_finite_band_of_bounded_width() -> None:
    y = demand(50, 400, seed=2, walk=0.01)
    y[:, -200:] = np.nan  # silent for 200 days: forecast from its last state, never as zero
    p = predict(y, 14, quantiles=(0.1, 0.5, 0.9))
    assert np.isfinite(p.quantiles).all() and (p.quantiles >= 0).all() and (p.mean > 0).all()
    rel = (p.quantiles[2] - p.quantiles[0]).mean(axis=1) / p.mean.mean(axis=1)
    assert np.median(rel) < 2.0


@pytest.mark.parametrize("gap", [2, 7])
def test_ordinary_missing_days_leave_a_stable_forecast_nearly_unchanged(gap: int) -> None:
    """Missing days that would have been ordinary carry no news: the forecast for the same 14
    days moves < 5% (median over series) whether they are missing or were observed as noise
    around the pattern, and by much less than when they were observed as a level shift."""
    y = demand(200, 314, seed=4)
    base = predict(y[:, :300], 14).mean.sum(axis=1)
    late = y[:, :300].copy()
    late[:, -gap:] = np.nan
    moved = predict(late, 14).mean.sum(axis=1) / base - 1
    assert np.median(np.abs(moved)) < 0.05
    shifted = y[:, :300].copy()
    shifted[:, -gap:] *= 1.5  # news: the last days 50% up
    news = predict(shifted, 14).mean.sum(axis=1) / base - 1
    assert np.median(np.abs(moved)) < 0.5 * np.median(np.abs(news))


# --- the production coverage metric agrees with the backtest's ------------------------------------


def _row(p10: list[float], p50: list[float], p90: list[float]) -> ForecastLine:
    return ForecastLine(line="L", scale=1.0, p10=p10, p50=p50, p90=p90)


def test_production_coverage_equals_backtest_coverage_for_counts_and_continuous() -> None:
    rng = np.random.default_rng(1)
    for counts in (True, False):
        actual = rng.poisson(2.0, 14).astype(np.float64) if counts else rng.gamma(4.0, 1.0, 14)
        lo = np.round(np.maximum(rng.normal(1.0, 0.5, 14), 0), 3)
        hi = np.round(lo + rng.gamma(3.0, 1.0, 14), 3)
        mid = np.round((lo + hi) / 2, 3)
        _, inside_pts, points = accuracy._score_line(_row(list(lo), list(mid), list(hi)), actual, 0)
        sc = Scores()
        sc.add(mid[None, :], np.stack([lo, hi])[:, None, :], actual[None, :], np.ones(1), np.array([counts]))
        assert points == 14
        assert inside_pts / points == pytest.approx(sc.summary()["coverage"], abs=1e-9)
        assert accuracy.is_counts(actual) == counts


def test_count_line_mostly_zero_is_not_credited_for_ties() -> None:
    """A line that mostly reports 0, band [0, 0.9]: an actual 0 counts 0.9 (the share of [0, 1)
    inside), a 1 counts 0; an inclusive comparison said 1.0 for every zero."""
    actual = np.array([0.0] * 12 + [1.0, 0.0])
    row = _row([0.0] * 14, [0.3] * 14, [0.9] * 14)
    _, inside_pts, points = accuracy._score_line(row, actual, 0)
    assert points == 14 and inside_pts == pytest.approx(13 * 0.9)
    cont = actual + 0.25  # the same figures not whole numbers: scored inside / outside
    _, inside_c, _ = accuracy._score_line(row, cont, 0)
    assert inside_c == 13


@pytest.fixture
def database_url(tmp_path):  # noqa: ANN001, ANN201 - the app fixture's database, SQLite here
    return f"sqlite:///{tmp_path / 'intervals.db'}"


def test_score_due_scores_count_lines_by_randomised_pit(app) -> None:  # noqa: ANN001
    """Through the stored snapshot: a count line's run coverage is the PIT share, a continuous
    line's the plain share, and the run's figure pools both."""
    from app.connections import db_session

    days = 60
    start = date(2025, 3, 1)
    horizon_start = start + timedelta(days=30)
    counts = np.zeros(days)
    counts[40] = 1.0
    cont = np.full(days, 5.5)
    totals = LineTotals(
        sums={"C": counts, "F": cont},
        incomplete={"C": np.zeros(days, bool), "F": np.zeros(days, bool)},
        live={"C": 1, "F": 1},
        last={"C": days - 1, "F": days - 1},
    )
    bands = {
        "C": (np.zeros(14), np.full(14, 0.3), np.full(14, 0.9)),
        "F": (np.full(14, 5.0), np.full(14, 5.5), np.full(14, 6.0)),
    }
    with db_session():
        snap = accuracy.record("run-1", horizon_start, 14, totals, bands)
        scored = accuracy.score_due(start + timedelta(days=days), totals, wait_days=3)
        assert scored == [snap.id]
        lines = {r.line: r for r in ForecastLine.select()}
        run = ForecastSnapshot.get_by_id(snap.id)
    assert lines["C"].coverage == pytest.approx(13 * 0.9 / 14)  # day 40 (a 1) is outside [0, 0.9]
    assert lines["F"].coverage == 1.0
    assert run.coverage == pytest.approx((13 * 0.9 + 14) / 28)
