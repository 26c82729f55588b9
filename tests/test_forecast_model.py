"""The vectorised Holt-Winters model on series whose future is known exactly."""
from __future__ import annotations

import numpy as np
import pytest

from app.forecast.model import PARAM_NAMES, forecast, param_grid

WEEK = np.array([5.0, 10.0, 20.0, 30.0, 25.0, 8.0, 2.0])


def weekly(days: int) -> np.ndarray:
    return np.tile(WEEK, days // 7 + 1)[:days]


def test_constant_series_gives_constant_forecast():
    result = forecast(np.full((1, 120), 42.0), 14)
    np.testing.assert_allclose(result.forecast, 42.0, rtol=1e-9)
    assert result.fitted_error[0] == pytest.approx(0.0, abs=1e-9)


def test_linear_trend_continues():
    t = np.arange(200)
    result = forecast(10 + 2.0 * t, 14)
    np.testing.assert_allclose(result.forecast[0], 10 + 2.0 * np.arange(200, 214), rtol=1e-9)
    assert result.params["phi"][0] == 1.0  # an exact trend is not damped


def test_pure_weekly_pattern_repeats():
    result = forecast(weekly(203)[None, :], 21)
    np.testing.assert_allclose(result.forecast[0], weekly(224)[203:], rtol=1e-9, atol=1e-9)


def test_trend_plus_season_is_exact():
    t = np.arange(400)
    y = 50 + 0.5 * t + weekly(400)
    result = forecast(y[None, :], 14)
    future = 50 + 0.5 * np.arange(400, 414) + weekly(414)[400:]
    np.testing.assert_allclose(result.forecast[0], future, rtol=1e-9)


def test_mixed_batch_rows_are_independent():
    t = np.arange(140)
    batch = np.stack([np.full(140, 7.0), 3 + 0.25 * t, weekly(140), np.zeros(140)])
    together = forecast(batch, 10)
    assert together.forecast.shape == (4, 10)
    assert together.fitted_error.shape == (4,)
    assert set(together.params) == set(PARAM_NAMES)
    assert all(v.shape == (4,) for v in together.params.values())
    for i, row in enumerate(batch):
        alone = forecast(row[None, :], 10)
        np.testing.assert_allclose(together.forecast[i], alone.forecast[0], rtol=1e-12, atol=1e-12)


def test_noisy_seasonal_series_beats_naive_mean():
    rng = np.random.default_rng(3)
    t = np.arange(400)
    truth = 100 + 0.1 * t + 15 * np.sin(2 * np.pi * t / 7)
    y = truth[:386] + rng.normal(0, 3, (50, 386))
    result = forecast(y, 14)
    model_err = np.abs(result.forecast - truth[386:]).mean()
    mean_err = np.abs(y[:, -28:].mean(axis=1, keepdims=True) - truth[386:]).mean()
    assert model_err < 0.5 * mean_err
    assert np.all((result.fitted_error > 1.5) & (result.fitted_error < 6))


@pytest.mark.parametrize("days", [0, 1, 5, 7, 13, 20])
def test_short_histories(days):
    result = forecast(np.full((3, days), 4.0), 5)
    assert result.forecast.shape == (3, 5)
    np.testing.assert_allclose(result.forecast, 0.0 if days == 0 else 4.0)


def test_empty_batch_and_zero_horizon():
    assert forecast(np.zeros((0, 50)), 7).forecast.shape == (0, 7)
    assert forecast(np.ones((2, 50)), 0).forecast.shape == (2, 0)


def test_forecast_is_clipped_at_zero():
    t = np.arange(100)
    falling = 100 - 1.0 * t  # ends at 1: the trend would take the forecast below 0
    result = forecast(np.stack([falling, np.full(100, 3.0)]), 14)
    assert (result.forecast >= 0).all()
    assert result.forecast[0, -1] == 0.0
    np.testing.assert_allclose(result.forecast[1], 3.0)


def test_nan_counts_as_zero():
    y = np.full((1, 60), 10.0)
    y[0, 5] = np.nan
    assert np.isfinite(forecast(y, 7).forecast).all()


def test_steady_noisy_series_is_forecast_by_its_least_squares_fit():
    """Trend and weekly pattern that hold steady: zero smoothing, i.e. the regression itself."""
    rng = np.random.default_rng(5)
    t = np.arange(364)
    y = 80 + 0.2 * t + weekly(364) + rng.normal(0, 2, 364)
    result = forecast(y, 14)
    assert (result.params["alpha"][0], result.params["beta"][0], result.params["gamma"][0]) == (0, 0, 0)
    design = np.column_stack([t, (t[:, None] % 7 == np.arange(7)).astype(float)])  # slope + one level per weekday
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    future = np.arange(364, 378)
    expected = coef[0] * future + coef[1:][future % 7]
    np.testing.assert_allclose(result.forecast[0], expected, rtol=1e-9)


def test_level_shift_is_followed():
    rng = np.random.default_rng(6)
    y = 100 + weekly(300) + rng.normal(0, 1, 300)
    y[-40:] += 50  # the last 40 days run 50 higher
    result = forecast(y, 14)
    assert result.params["alpha"][0] > 0
    assert abs(result.forecast[0].mean() - (150 + WEEK.mean())) < 5


def test_grid_has_no_combos_that_act_the_same():
    grid = param_grid()
    effective = {(a, a * b, (1 - a) * g, p) for a, b, g, p in grid}
    assert len(effective) == len(grid) and (0.0, 0.0, 0.0, 1.0) in effective
