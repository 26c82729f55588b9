"""Alert rules: threshold boundaries, figures and stable fingerprints."""
from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest

from app.config import Settings
from app.forecast import rules

MONDAY = date(2025, 3, 3)


@pytest.fixture
def settings():
    return Settings(_env_file=None, capacity_high_utilisation=1.0, capacity_medium_utilisation=0.9,
                    capacity_low_utilisation=0.8, spike_medium_score=4.0, spike_high_score=8.0)


def line_alerts(settings, peak: float, capacity: float = 100.0, start: date = MONDAY):
    fc = np.full((1, 14), peak * 0.5)
    fc[0, 6] = peak
    return rules.capacity_warnings(fc, ["L1"], {"L1": capacity}, start, settings, {"L1": "Assembly"})


@pytest.mark.parametrize("peak, severity", [
    (79.99, None), (80.0, "low"), (89.99, "low"), (90.0, "medium"), (99.99, "medium"), (100.0, "high"), (130.0, "high"),
])
def test_capacity_severity_at_boundaries(settings, peak, severity):
    alerts = line_alerts(settings, peak)
    assert [a["severity"] for a in alerts] == ([severity] if severity else [])


def test_capacity_sums_items_per_line_and_carries_figures(settings):
    fc = np.array([[50.0, 60.0, 40.0], [50.0, 50.0, 90.0], [500.0, 500.0, 500.0]])
    alerts = rules.capacity_warnings(fc, ["L1", "L1", "L2"], {"L1": 100.0, "L2": 1000.0, "L3": 10.0},
                                     MONDAY, settings)
    assert len(alerts) == 1  # L2 is at 50 %, L3 has no items
    alert = alerts[0]
    assert alert["type"] == "capacity_warning" and alert["severity"] == "high"
    assert alert["subject"] == "line:L1"
    f = alert["figures"]
    assert f["capacity"] == 100.0 and f["peak_load"] == 130.0 and f["utilisation"] == 1.3
    assert f["peak_date"] == "2025-03-05"
    assert f["overloaded_days"] == 3 and f["first_overloaded_date"] == "2025-03-03"  # at or over
    assert f["mean_utilisation"] == pytest.approx(340 / 300, abs=1e-4)
    assert f["forecast"] == [100.0, 110.0, 130.0]
    assert "130%" in alert["title"] and "L1" in alert["message"]
    json.dumps(alert)


def test_capacity_boundary_survives_float_sums(settings):
    fc = np.full((3, 1), 0.3)  # 0.3 + 0.3 + 0.3 == 0.8999999999999999 in binary
    alerts = rules.capacity_warnings(fc, ["L1"] * 3, {"L1": 1.0}, MONDAY, settings)
    assert [a["severity"] for a in alerts] == ["medium"]


def test_capacity_ignores_lines_without_capacity(settings):
    assert rules.capacity_warnings(np.ones((1, 3)), ["L1"], {"L1": 0.0}, MONDAY, settings) == []


def spike_history(recent_peak: float, baseline: float = 100.0) -> np.ndarray:
    history = np.full(70, baseline)  # flat: MAD is 0, spread is the 5 % floor (5.0)
    history[-3] = recent_peak
    return history[None, :]


@pytest.mark.parametrize("peak, severity", [
    (119.9, None), (120.0, "medium"), (139.9, "medium"), (140.0, "high"), (200.0, "high"),
])
def test_spike_severity_at_boundaries(settings, peak, severity):
    alerts = rules.demand_spikes(spike_history(peak), np.full((1, 14), 100.0), [("A1", "L1")], MONDAY, settings)
    assert [a["severity"] for a in alerts] == ([severity] if severity else [])


def test_spike_figures_from_recent_demand(settings):
    alerts = rules.demand_spikes(spike_history(130.0), np.full((1, 14), 100.0), [("A1", "L1")], MONDAY, settings)
    alert = alerts[0]
    assert alert["type"] == "demand_spike" and alert["subject"] == "item:A1@L1"
    f = alert["figures"]
    assert (f["baseline"], f["spread"], f["score"]) == (100.0, 5.0, 6.0)
    assert f["trigger"] == "recent" and f["peak"] == 130.0 and f["peak_date"] == "2025-02-28"
    assert "A1" in alert["title"] and "6.0" in alert["message"]
    json.dumps(alert)


def test_spike_from_forecast(settings):
    forecast = np.full((1, 14), 100.0)
    forecast[0, 9] = 145.0
    alerts = rules.demand_spikes(spike_history(100.0), forecast, [("A1", "L1")], MONDAY, settings)
    assert [a["severity"] for a in alerts] == ["high"]
    assert alerts[0]["figures"]["trigger"] == "forecast"
    assert alerts[0]["figures"]["peak_date"] == "2025-03-12"


def test_spike_spread_is_robust_to_a_noisy_baseline(settings):
    rng = np.random.default_rng(0)
    history = 100 + rng.normal(0, 10, (1, 70))
    baseline, spread = rules.spike_baseline(history)
    assert 90 < baseline[0] < 110 and 6 < spread[0] < 14
    history[0, -1] = baseline[0] + 5 * spread[0]
    alerts = rules.demand_spikes(history, np.full((1, 14), 100.0), [("A1", "L1")], MONDAY, settings)
    assert [a["severity"] for a in alerts] == ["medium"]


def test_spike_floor_of_one_unit_for_tiny_series(settings):
    history = np.zeros((1, 70))
    history[0, -1] = 3.0
    alerts = rules.demand_spikes(history, np.zeros((1, 14)), [("A1", "L1")], MONDAY, settings)
    assert alerts == []  # 3 units over a baseline of 0 with spread 1 scores 3


def test_spike_needs_two_weeks_of_baseline(settings):
    assert rules.demand_spikes(np.full((1, 20), 1.0), np.full((1, 14), 500.0), [("A", "L")], MONDAY, settings) == []


def test_fingerprint_is_stable_within_the_week():
    history, fc = spike_history(150.0), np.full((1, 14), 100.0)
    s = Settings(_env_file=None)
    runs = [rules.evaluate(history, fc, [("A1", "L1")], {"L1": 50.0}, start, s)
            for start in (MONDAY, MONDAY, date(2025, 3, 9))]
    prints = [[a["fingerprint"] for a in alerts] for alerts in runs]
    assert prints[0] == prints[1] == prints[2] == ["capacity_warning|line:L1|2025-W10", "demand_spike|item:A1@L1|2025-W10"]
    next_week = rules.evaluate(history, fc, [("A1", "L1")], {"L1": 50.0}, date(2025, 3, 10), s)
    assert [a["fingerprint"] for a in next_week] == ["capacity_warning|line:L1|2025-W11", "demand_spike|item:A1@L1|2025-W11"]


def test_evaluate_orders_by_severity(settings):
    history = np.vstack([spike_history(125.0), spike_history(100.0)])
    fc = np.full((2, 14), 100.0)
    alerts = rules.evaluate(history, fc, [("A1", "L1"), ("A2", "L2")], {"L1": 210.0, "L2": 90.0}, MONDAY, settings)
    assert [(a["severity"], a["subject"]) for a in alerts] == [("high", "line:L2"), ("medium", "item:A1@L1")]
