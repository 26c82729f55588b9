"""The built-in pipeline end to end on SQLite and PostgreSQL, and the demo data set's labels."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from app.config import Settings
from app.connections import db_session
from app.forecast import demo, model, rules
from app.forecast.pipeline import load_history, run_pipeline
from app.models import DemandHistory, ProductionLine, utcnow


def medium_or_high(alerts):
    return {a["subject"]: a["severity"] for a in alerts if a["severity"] in ("high", "medium")}


def test_demo_data_raises_exactly_the_labelled_alerts(app):
    summary = demo.seed_demo()
    assert summary["lines"] >= 3 and summary["items"] == 12 and summary["rows"] == 12 * 180
    assert summary["end"] == (utcnow().date() - timedelta(days=1)).isoformat()  # yesterday, UTC

    alerts = run_pipeline(app.config["SETTINGS"])

    assert any(a["type"] == "capacity_warning" and a["severity"] == "high" for a in alerts)
    assert any(a["type"] == "demand_spike" and a["severity"] == "medium" for a in alerts)
    assert medium_or_high(alerts) == summary["anomalies"]["expected_alerts"]
    labelled = {f"line:{code}" for code in summary["anomalies"]["overloaded_lines"]}
    labelled |= {f"item:{s['item']}@{s['line']}" for s in summary["anomalies"]["spiking_series"]}
    assert labelled == set(summary["anomalies"]["expected_alerts"])
    for alert in alerts:
        assert set(alert) == {"type", "severity", "title", "message", "subject", "figures", "fingerprint"}
        assert alert["fingerprint"].startswith(f"{alert['type']}|{alert['subject']}|")
    assert run_pipeline(app.config["SETTINGS"]) == alerts  # same data, same window: same candidates


def test_empty_database_gives_no_alerts(app):
    assert run_pipeline(app.config["SETTINGS"]) == []
    with db_session():
        ProductionLine.create(code="L1", name="Line 1", daily_capacity=10)
    assert run_pipeline(app.config["SETTINGS"]) == []


def test_load_history_pivots_with_missing_days_as_zero(app):
    day0 = date(2025, 1, 1)
    with db_session():
        a = ProductionLine.create(code="A", name="Line A", daily_capacity=100)
        b = ProductionLine.create(code="B", name="Line B", daily_capacity=50)
        DemandHistory.insert_many([
            ("x", a.id, day0, 1.0), ("x", a.id, day0 + timedelta(days=3), 4.0),
            ("x", b.id, day0 + timedelta(days=1), 2.5), ("w", b.id, day0 + timedelta(days=4), 7.0),
        ], fields=[DemandHistory.item, DemandHistory.line, DemandHistory.day, DemandHistory.quantity]).execute()

    history = load_history()
    assert history.series == [("w", "B"), ("x", "A"), ("x", "B")]
    assert (history.start, history.end) == (day0, day0 + timedelta(days=4))
    np.testing.assert_array_equal(history.values, [[0, 0, 0, 0, 7], [1, 0, 0, 4, 0], [0, 2.5, 0, 0, 0]])
    assert history.capacities == {"A": 100.0, "B": 50.0}

    recent = load_history(lookback_days=2)
    assert recent.start == day0 + timedelta(days=3)
    assert recent.series == [("w", "B"), ("x", "A")]  # ("x", "B") has no row in the window
    np.testing.assert_array_equal(recent.values, [[0, 7], [4, 0]])


def test_seed_demo_replaces_or_refuses(app):
    first = demo.seed_demo(items=6, days=60, seed=1)
    again = demo.seed_demo(items=6, days=60, seed=1)
    assert first == again
    with db_session():
        assert DemandHistory.select().count() == 6 * 60
        assert ProductionLine.select().count() == 3
    with pytest.raises(ValueError):
        demo.seed_demo(items=6, days=60, seed=1, replace=False)


@pytest.mark.parametrize("weekday", range(7))
@pytest.mark.parametrize("seed", [7, 8, 9])
def test_demo_labels_hold_for_every_weekday(seed, weekday):
    """Without a database: the weekly pattern follows the calendar, so check every end day."""
    end = date(2025, 3, 3) + timedelta(days=weekday)
    data = demo.generate_demo(seed=seed, end=end)
    result = model.forecast(data.values, 14)
    capacities = {code: cap for code, _, cap in data.lines}
    alerts = rules.evaluate(data.values, result.forecast, data.series, capacities, end + timedelta(days=1),
                            Settings(_env_file=None))
    expected = {f"line:{code}": "high" for code in data.overloaded_lines}
    expected |= {f"item:{item}@{line}": "medium" for item, line in data.spiking_series}
    assert {a["subject"]: a["severity"] for a in alerts} == expected


def test_generate_demo_is_deterministic_and_scales():
    a = demo.generate_demo(items=300, days=70, seed=5, end=date(2025, 1, 31))
    b = demo.generate_demo(items=300, days=70, seed=5, end=date(2025, 1, 31))
    np.testing.assert_array_equal(a.values, b.values)
    assert a.values.shape == (300, 70) and (a.values >= 0).all()
    assert len(a.lines) == 12 and len(a.overloaded_lines) == 1 and len(a.spiking_series) == 3
    assert a.start == date(2024, 11, 23)
