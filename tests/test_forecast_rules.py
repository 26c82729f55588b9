"""Alert rules: capacity probability, count spikes, stale data, line totals with missing days, fingerprints."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest

from app.config import Settings
from app.forecast import rules
from app.forecast.engine import exceedance_probability, predict

MONDAY = date(2025, 3, 3)
WEEK = np.array([1.0, 1.1, 1.2, 1.1, 1.0, 0.6, 0.4])


@pytest.fixture
def settings():
    return Settings(_env_file=None, spike_medium_score=4.0, spike_high_score=8.0)


def weekly(level: float, days: int = 140, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level * np.tile(WEEK, days // 7 + 1)[:days] * (1 + noise * rng.standard_normal(days))


# --- capacity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "probability, severity",
    [
        (0.0, None),
        (0.0999, None),
        (0.1, "low"),
        (0.1999, "low"),
        (0.2, "medium"),
        (0.4999, "medium"),
        (0.5, "high"),
        (1.0, "high"),
    ],
)
def test_capacity_severity_follows_the_probability(probability, severity):
    assert rules.capacity_severity(probability) == severity


def test_capacity_severity_levels_come_from_the_settings():
    from app.config import Settings

    settings = Settings(
        _env_file=None, capacity_high_probability=0.9, capacity_medium_probability=0.6, capacity_low_probability=0.3
    )
    levels = rules.capacity_levels(settings)
    assert [rules.capacity_severity(p, levels) for p in (0.25, 0.3, 0.6, 0.89, 0.9)] == [
        None,
        "low",
        "medium",
        "medium",
        "high",
    ]
    with pytest.raises(ValueError, match="CAPACITY_HIGH_PROBABILITY >= CAPACITY_MEDIUM_PROBABILITY"):
        Settings(_env_file=None, capacity_high_probability=0.1, capacity_medium_probability=0.2)


def capacity_alert(capacity: float, level: float = 100.0, history: np.ndarray | None = None):
    history = weekly(level) if history is None else history
    p = predict(history[None, :], 14)
    band = tuple(p.quantiles[:, 0])
    alerts = rules.line_capacity_alerts(
        ["L1"],
        history[None, :],
        [capacity],
        14,
        MONDAY,
        items={"L1": 3},
        bands={"L1": band},
        line_names={"L1": "Assembly"},
    )
    return alerts[0] if alerts else None


def test_capacity_probability_grows_as_capacity_falls():
    loads = np.tile(weekly(100.0), (5, 1))
    probabilities, _ = exceedance_probability(loads, np.array([200, 125, 118, 100, 60.0]), 14)
    assert list(probabilities) == sorted(probabilities)
    assert probabilities[0] < 0.1 and probabilities[-1] > 0.9


def test_capacity_path_figures_match_the_line_by_line_definition():
    """The exceedance figures, computed over all lines at once, are the definition's per line:
    share of paths whose peak exceeds capacity, mean days over it, P90 of the peak."""
    from app.forecast.engine import _fit
    from app.forecast.engine.capacity import EXCEEDANCE_ORIGINS, EXCEEDANCE_SPACING

    rng = np.random.default_rng(5)
    loads = np.vstack([weekly(level, 400, seed) for seed, level in enumerate(rng.uniform(50, 500, 12))])
    loads[3, -30:-20] = np.nan  # missing days stay missing
    caps = loads[:, -365:].max(axis=1) * rng.uniform(0.85, 1.05, len(loads))
    caps[5], caps[7] = 0.0, np.nan  # no capacity: no probability
    probability, figures = exceedance_probability(loads, caps, 14)

    fitted = _fit(loads, 14, eval_horizon=14, origins=EXCEEDANCE_ORIGINS, spacing=EXCEEDANCE_SPACING, keep_paths=True)
    z = np.moveaxis(fitted.paths, -1, 0).reshape(-1, fitted.paths.shape[1])
    z = z[np.isfinite(z).all(axis=1)]
    assert len(z) >= 30
    for i in range(len(loads)):
        if not caps[i] > 0:
            assert np.isnan(probability[i]) and figures[i]["probability"] is None
            continue
        paths = fitted.prediction.mean[i][None, :] + fitted.scale[i] * z
        peaks = paths.max(axis=1)
        assert probability[i] == (peaks > caps[i]).mean()
        assert figures[i]["expected_overloaded_days"] == round(float((paths > caps[i]).sum(axis=1).mean()), 3)
        assert figures[i]["peak_p90"] == round(float(np.quantile(peaks, 0.9)), 3)
    assert 0 < np.nanmin(probability) < np.nanmax(probability) <= 1  # the data set tells lines apart


def test_capacity_alert_shows_the_probability_with_the_figures():
    assert capacity_alert(300.0) is None  # far above any load: no alert
    alert = capacity_alert(90.0)  # below the weekday load: overloaded for sure
    assert alert["type"] == "capacity_warning" and alert["severity"] == "high"
    assert alert["subject"] == "line:L1" and alert["fingerprint"] == "capacity_warning|line:L1|2025-W10"
    f = alert["figures"]
    assert f["probability"] > 0.9 and f["capacity"] == 90.0 and f["items"] == 3
    assert 0 < f["peak_load_p50"] <= f["peak_load_p90"]
    assert len(f["forecast"]) == len(f["forecast_p10"]) == len(f["forecast_p90"]) == 14
    assert all(lo <= mid <= hi for lo, mid, hi in zip(f["forecast_p10"], f["forecast"], f["forecast_p90"]))
    assert f"{f['probability'] * 100:.0f}% probability" in alert["title"]
    assert "P50" in alert["message"] and "P90" in alert["message"] and "Assembly" in alert["message"]
    json.dumps(alert)


def test_capacity_severity_in_the_alert_matches_its_probability():
    for capacity in np.linspace(100, 140, 9):
        alert = capacity_alert(float(capacity))
        if alert is not None:
            assert alert["severity"] == rules.capacity_severity(alert["figures"]["probability"])


def test_capacity_ignores_lines_without_capacity_or_data():
    totals = rules.line_totals(np.vstack([weekly(100.0), np.full(140, np.nan)]), [("A", "L1"), ("B", "L2")], 3)
    assert rules.capacity_warnings(totals, {"L1": 0.0, "L2": 10.0, "L3": 5.0}, 14, MONDAY) == []
    assert [a["subject"] for a in rules.capacity_warnings(totals, {"L1": 50.0}, 14, MONDAY)] == ["line:L1"]


# --- line totals with missing days -------------------------------------------------------------


SERIES = [("A", "L1"), ("B", "L1"), ("C", "L2")]


def three_series(days: int = 70) -> np.ndarray:
    return np.vstack([weekly(10, days, 1), weekly(20, days, 2), weekly(5, days, 3)]).astype(np.float32)


def test_line_totals_sum_series_and_mark_missing_days():
    values = three_series()
    values[0, 10] = np.nan  # a gap inside A's span: L1 misses that day
    values[2, :5] = np.nan  # C starts late: nothing missing
    totals = rules.line_totals(values, SERIES, stale_days=3)
    history = totals.history("L1")
    assert np.isnan(history[10]) and np.isfinite(np.delete(history, 10)).all()
    np.testing.assert_allclose(history[11], values[0, 11] + values[1, 11], rtol=1e-6)
    assert np.isfinite(totals.history("L2")).all() and totals.history("L2")[0] == 0
    assert totals.live == {"L1": 2, "L2": 1} and totals.stale_count == {}


def test_a_late_series_leaves_its_line_days_missing_not_low():
    values = three_series()
    values[1, -2:] = np.nan  # B's feed is two days late (not stale with 3)
    totals = rules.line_totals(values, SERIES, stale_days=3)
    assert np.isnan(totals.history("L1")[-2:]).all() and np.isfinite(totals.history("L1")[:-2]).all()
    assert totals.stale_count == {}


def test_a_stale_series_is_carried_at_its_level_and_listed():
    values = three_series()
    values[1, -7:] = np.nan  # B is a week late: stale
    totals = rules.line_totals(values, SERIES, stale_days=3)
    history = totals.history("L1")
    assert np.isfinite(history).all()
    full = three_series()
    ratio = history[-7:].sum() / (full[0, -7:].sum() + full[1, -7:].sum())
    assert 0.9 < ratio < 1.1  # no drop to A alone
    assert totals.stale_count == {"L1": 1} and totals.stale_items["L1"] == [["B", 62]]
    assert np.isnan(totals.actuals("L1")[-7:]).all()  # carried days are not scored as actuals


def test_an_ended_series_adds_nothing():
    values = three_series(100)
    values[1, -40:] = np.nan  # B stopped 40 days ago: ended (discontinued)
    totals = rules.line_totals(values, SERIES, stale_days=3)
    np.testing.assert_allclose(totals.history("L1")[-1], values[0, -1], rtol=1e-6)
    assert totals.live["L1"] == 1 and totals.ended == 1 and totals.stale_count == {}


def test_line_totals_of_slices_add_up_to_the_whole():
    values = three_series()
    values[1, -7:] = np.nan
    values[0, 20] = np.nan
    whole = rules.line_totals(values, SERIES, 3)
    parts = rules.LineTotals()
    parts.add(rules.line_totals(values[:1], SERIES[:1], 3))
    parts.add(rules.line_totals(values[1:], SERIES[1:], 3))
    for code in ("L1", "L2"):
        np.testing.assert_allclose(parts.history(code), whole.history(code))
    assert (parts.live, parts.stale_count, parts.stale_from) == (whole.live, whole.stale_count, whole.stale_from)


# --- stale data ------------------------------------------------------------------------------------


def test_one_stale_alert_per_line_with_its_items():
    values = three_series()
    values[0, -5:] = np.nan
    values[1, -9:] = np.nan
    totals = rules.line_totals(values, SERIES, stale_days=3)
    alerts = rules.stale_alerts(totals, MONDAY, 3, {"L1": "Assembly"})
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert["type"], alert["subject"], alert["severity"]) == ("stale_data", "line:L1", "medium")
    assert alert["fingerprint"] == "stale_data|line:L1|2025-W10"
    f = alert["figures"]
    assert f["stale_series"] == 2 and f["days_missing"] == 9 and f["stale_days"] == 3
    assert [i["item"] for i in f["items"]] == ["B", "A"]  # oldest first
    assert f["items"][0]["last_observed"] == "2025-02-21"  # 9 days before the horizon start
    assert "not read as zero" in alert["message"]
    json.dumps(alert)


def test_no_stale_alert_within_the_allowed_days():
    values = three_series()
    values[:, -3:] = np.nan
    assert rules.stale_alerts(rules.line_totals(values, SERIES, 3), MONDAY, 3) == []
    assert len(rules.stale_alerts(rules.line_totals(values, SERIES, 2), MONDAY, 2)) == 2


# --- spikes ------------------------------------------------------------------------------------------


def test_spike_thresholds_come_from_the_count_distribution(settings):
    rng = np.random.default_rng(0)
    sparse = rng.poisson(0.3, (1, 70)).astype(float)  # an item that usually sells 0
    busy = rng.poisson(400, (1, 70)).astype(float)
    _, medium, high = rules.spike_thresholds(np.vstack([sparse, busy]), settings)
    assert medium.shape == high.shape == (2, 7)
    assert (medium[0] > 1.0).all() and (high[0] > medium[0]).all()  # no 1-unit floor
    assert (400 < medium[1]).all() and (medium[1] < 520).all() and (high[1] > medium[1]).all()


def count_history(level: float, days: int = 70, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(level, (1, days)).astype(float)


def test_a_spike_on_a_count_series_is_reported(settings):
    history = count_history(5.0)
    _, medium, high = rules.spike_thresholds(history, settings)
    history[0, -1] = np.ceil(high[0, -1]) + 1
    alerts = rules.demand_spikes(history, np.full((1, 14), 5.0), [("A1", "L1")], MONDAY, settings)
    assert [a["severity"] for a in alerts] == ["high"]
    f = alerts[0]["figures"]
    assert f["trigger"] == "recent" and f["peak_date"] == "2025-03-02" and f["peak"] == np.ceil(high[0, -1]) + 1
    assert f["medium_threshold"] == round(medium[0, -1], 3) and f["high_threshold"] == round(high[0, -1], 3)
    assert alerts[0]["subject"] == "item:A1@L1" and "A1" in alerts[0]["title"]
    json.dumps(alerts[0])


@pytest.mark.parametrize("share, severity", [(-0.001, None), (0.0, "medium"), (0.5, "medium"), (1.0, "high")])
def test_spike_severity_at_the_thresholds(settings, share, severity):
    history = count_history(50.0)
    _, medium, high = rules.spike_thresholds(history, settings)
    history[0, -3] = medium[0, 4] + share * (high[0, 4] - medium[0, 4])
    alerts = rules.demand_spikes(history, np.full((1, 14), 50.0), [("A1", "L1")], MONDAY, settings)
    assert [a["severity"] for a in alerts] == ([severity] if severity else [])


def test_spike_from_the_forecast(settings):
    history = count_history(50.0)
    _, _, high = rules.spike_thresholds(history, settings)
    forecast = np.full((1, 14), 50.0)
    forecast[0, 9] = high[0, 9 % 7] + 1
    alerts = rules.demand_spikes(history, forecast, [("A1", "L1")], MONDAY, settings)
    assert [a["severity"] for a in alerts] == ["high"]
    assert alerts[0]["figures"]["trigger"] == "forecast" and alerts[0]["figures"]["peak_date"] == "2025-03-12"


def test_usual_counts_raise_no_spike(settings):
    """Poisson series at many levels, recent week from the same law: no alert (a 1-unit floor raised many)."""
    rng = np.random.default_rng(1)
    history = rng.poisson(np.array([0.2, 0.5, 1, 3, 10, 100, 1000])[:, None], (7, 70)).astype(float)
    series = [(f"I{i}", "L1") for i in range(7)]
    alerts = rules.demand_spikes(history, history[:, -14:].copy(), series, MONDAY, settings)
    assert alerts == []


def test_a_level_already_seen_in_the_weeks_before_is_no_spike(settings):
    history = count_history(5.0)
    _, medium, _ = rules.spike_thresholds(history, settings)
    history[0, -20] = history[0, -1] = np.ceil(medium[0, -1]) + 2  # the same peak three weeks ago
    assert rules.demand_spikes(history, np.full((1, 14), 5.0), [("A1", "L1")], MONDAY, settings) == []
    history[0, -1] += 1  # a new high above its threshold
    assert len(rules.demand_spikes(history, np.full((1, 14), 5.0), [("A1", "L1")], MONDAY, settings)) == 1


def test_spike_ignores_missing_days(settings):
    history = count_history(20.0)
    history[0, -7:] = np.nan  # a late feed is no spike and no dip
    history[0, -30:-20] = np.nan
    assert rules.demand_spikes(history, np.full((1, 14), 20.0), [("A1", "L1")], MONDAY, settings) == []


def test_spike_needs_two_weeks_of_baseline(settings):
    assert rules.demand_spikes(np.full((1, 20), 1.0), np.full((1, 14), 500.0), [("A", "L")], MONDAY, settings) == []
    history = np.full((1, 70), np.nan)
    history[0, -10:] = 1.0  # observed baseline days: 3
    assert rules.demand_spikes(history, np.full((1, 14), 500.0), [("A", "L")], MONDAY, settings) == []


# --- all rules --------------------------------------------------------------------------------------


def test_fingerprint_is_stable_within_the_week(settings):
    history = weekly(100.0, 70)[None, :]
    history[0, -3] = 400.0
    fc = np.full((1, 14), 100.0)
    runs = [
        rules.evaluate(history, fc, [("A1", "L1")], {"L1": 50.0}, start, settings)
        for start in (MONDAY, MONDAY, date(2025, 3, 9))
    ]
    prints = [[a["fingerprint"] for a in alerts] for alerts in runs]
    assert (
        prints[0] == prints[1] == prints[2] == ["capacity_warning|line:L1|2025-W10", "demand_spike|item:A1@L1|2025-W10"]
    )
    next_week = rules.evaluate(history, fc, [("A1", "L1")], {"L1": 50.0}, date(2025, 3, 10), settings)
    assert [a["fingerprint"] for a in next_week] == [
        "capacity_warning|line:L1|2025-W11",
        "demand_spike|item:A1@L1|2025-W11",
    ]


def test_evaluate_orders_by_severity(settings):
    history = np.vstack([weekly(100.0, 70, 1), weekly(100.0, 70, 2)])
    history[0, -2] = 300.0
    history[1, -9:] = np.nan  # stale
    fc = np.full((2, 14), 100.0)
    alerts = rules.evaluate(history, fc, [("A1", "L1"), ("A2", "L2")], {"L1": 1000.0, "L2": 60.0}, MONDAY, settings)
    assert [(a["severity"], a["type"], a["subject"]) for a in alerts] == [
        ("high", "capacity_warning", "line:L2"),
        ("high", "demand_spike", "item:A1@L1"),
        ("medium", "stale_data", "line:L2"),
    ]
