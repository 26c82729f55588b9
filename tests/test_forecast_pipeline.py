"""The built-in pipeline end to end on SQLite and PostgreSQL: missing days stay missing, late feeds,
stale-data alerts, the demo data set's labels, and the service scoring its own forecasts."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from app.config import Settings
from app.connections import db_session
from app.forecast import demo, pipeline, rules
from app.forecast.engine import predict
from app.forecast.pipeline import load_history, run_pipeline
from app.models import DemandHistory, ForecastLine, ForecastSnapshot, ProductionLine, utcnow


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
    for alert in (a for a in alerts if a["type"] == "capacity_warning"):  # the probability, with the figures
        f = alert["figures"]
        assert alert["severity"] == "high" and f["probability"] >= 0.5
        assert 0 < f["peak_load_p50"] <= f["peak_load_p90"] and f["capacity"] > 0
        assert f"{f['probability'] * 100:.0f}% probability" in alert["title"]
    for alert in alerts:
        assert set(alert) == {"type", "severity", "title", "message", "subject", "figures", "fingerprint"}
        assert alert["fingerprint"].startswith(f"{alert['type']}|{alert['subject']}|")
    assert run_pipeline(app.config["SETTINGS"]) == alerts  # same data, same window: same candidates


def test_empty_database_gives_no_alerts(app):
    assert run_pipeline(app.config["SETTINGS"]) == []
    with db_session():
        ProductionLine.create(code="L1", name="Line 1", daily_capacity=10)
    assert run_pipeline(app.config["SETTINGS"]) == []


def test_load_history_keeps_missing_days_missing_and_zeros_zero(app):
    day0 = date(2025, 1, 1)
    with db_session():
        a = ProductionLine.create(code="A", name="Line A", daily_capacity=100)
        b = ProductionLine.create(code="B", name="Line B", daily_capacity=50)
        DemandHistory.insert_many(
            [
                ("x", a.id, day0, 1.0),
                ("x", a.id, day0 + timedelta(days=3), 4.0),
                ("x", a.id, day0 + timedelta(days=1), 0.0),  # an explicit zero
                ("x", b.id, day0 + timedelta(days=1), 2.5),
                ("w", b.id, day0 + timedelta(days=4), 7.0),
            ],
            fields=[DemandHistory.item, DemandHistory.line, DemandHistory.day, DemandHistory.quantity],
        ).execute()

    history = load_history()
    nan = np.nan
    assert history.series == [("w", "B"), ("x", "A"), ("x", "B")]
    assert (history.start, history.end) == (day0, day0 + timedelta(days=4))
    assert history.values.dtype == np.float32
    np.testing.assert_array_equal(
        history.values, [[nan, nan, nan, nan, 7], [1, 0, nan, 4, nan], [nan, 2.5, nan, nan, nan]]
    )
    assert history.capacities == {"A": 100.0, "B": 50.0}

    recent = load_history(lookback_days=2)
    assert recent.start == day0 + timedelta(days=3)
    assert recent.series == [("w", "B"), ("x", "A")]  # ("x", "B") has no row in the window
    np.testing.assert_array_equal(recent.values, [[nan, 7], [4, nan]])


def test_load_history_reads_every_row_into_its_cell(app):
    """The bulk read (PostgreSQL: one packed row per series) puts each stored row in its
    (series, day) cell and nothing else: the same array as reading the rows one by one."""
    rng = np.random.default_rng(3)
    day0 = date(2024, 2, 27)  # a leap day inside the window
    with db_session():
        lines = [ProductionLine.create(code=f"L{i}", name=f"Line {i}", daily_capacity=100) for i in range(3)]
        rows = []
        for s in range(40):
            line = lines[s % 3]
            kept = rng.random(120) < rng.uniform(0.2, 1.0)  # gaps of every length
            for d in np.flatnonzero(kept):
                rows.append((f"item-{s:02d}", line.id, day0 + timedelta(days=int(d)), float(rng.choice([0, 1.5, 3e6]))))
        DemandHistory.insert_many(
            rows, fields=[DemandHistory.item, DemandHistory.line, DemandHistory.day, DemandHistory.quantity]
        ).execute()
    plan = pipeline.plan(lookback_days=90)
    with db_session():  # a series deleted after the plan: its row stays missing
        gone = plan.keys[5]
        DemandHistory.delete().where((DemandHistory.item == gone[0]) & (DemandHistory.line == gone[1])).execute()
    history = load_history(plan_=plan)

    expected = np.full((len(plan.keys), (plan.end - plan.start).days + 1), np.nan, dtype=np.float32)
    index = {key: i for i, key in enumerate(plan.keys)}
    with db_session():
        for item, line_id, day, quantity in DemandHistory.select(
            DemandHistory.item, DemandHistory.line, DemandHistory.day, DemandHistory.quantity
        ).tuples():
            day = day if isinstance(day, date) else date.fromisoformat(str(day)[:10])
            if (item, line_id) in index and plan.start <= day <= plan.end:
                expected[index[(item, line_id)], (day - plan.start).days] = quantity
    assert plan.end - plan.start == timedelta(days=89) and len(plan.keys) == 40
    assert np.isnan(history.values[5]).all() and (history.values == 0).any() and (history.values == 3e6).any()
    np.testing.assert_array_equal(history.values, expected)


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
    prediction = predict(data.values, 14)
    capacities = {code: cap for code, _, cap in data.lines}
    alerts = rules.evaluate(
        data.values, prediction.mean, data.series, capacities, end + timedelta(days=1), Settings(_env_file=None)
    )
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


# --- late feeds: missing is missing -----------------------------------------------------------------


LATE_LINE = "LINE-02"


def drop_last_days(line_code: str, days: int) -> None:
    """The feed of one line is `days` days late: its last days have no rows (other lines are current)."""
    with db_session():
        line = ProductionLine.get(ProductionLine.code == line_code)
        last = max(d.day for d in DemandHistory.select(DemandHistory.day).where(DemandHistory.line == line))
        last = last if isinstance(last, date) else date.fromisoformat(str(last)[:10])
        DemandHistory.delete().where(
            (DemandHistory.line == line) & (DemandHistory.day > last - timedelta(days=days))
        ).execute()


def line_forecast(settings) -> tuple[dict[str, float], dict[str, float], pipeline.Part]:
    """Each line's 14-day forecast total: the sum of its items' forecasts and its own line forecast."""
    history = load_history()
    part = pipeline.forecast_part(history, settings)
    bands = pipeline.line_forecasts(part.lines, settings.forecast_horizon_days, settings.forecast_stale_days)
    return (
        {code: float(np.sum(load)) for code, load in part.loads.items()},
        {code: float(band[1].sum()) for code, band in bands.items()},
        part,
    )


@pytest.mark.parametrize("late_days, stale", [(2, False), (7, True)])
def test_a_late_feed_neither_collapses_the_forecast_nor_passes_unnoticed(app, late_days, stale):
    settings = app.config["SETTINGS"]
    summary = demo.seed_demo(items=12, days=120, seed=4)
    items_before, line_before, _ = line_forecast(settings)
    alerts_before = run_pipeline(settings)
    assert not [a for a in alerts_before if a["type"] == "stale_data"]

    drop_last_days(LATE_LINE, late_days)
    items_after, line_after, part = line_forecast(settings)
    history = load_history()
    assert history.end.isoformat() == summary["end"]  # the other lines set the horizon start
    late_rows = [i for i, (_, line) in enumerate(history.series) if line == LATE_LINE]
    assert np.isnan(history.values[late_rows, -late_days:]).all()  # missing, not zero
    # Missing days read as zero dropped a 14-day forecast by 59% (2 days) and 94% (7 days).
    assert items_after[LATE_LINE] == pytest.approx(items_before[LATE_LINE], rel=0.10)
    assert line_after[LATE_LINE] == pytest.approx(line_before[LATE_LINE], rel=0.10)

    alerts = run_pipeline(settings)
    stale_alerts = [a for a in alerts if a["type"] == "stale_data"]
    if stale:
        assert [a["subject"] for a in stale_alerts] == [f"line:{LATE_LINE}"]  # one per line
        figures = stale_alerts[0]["figures"]
        assert figures["stale_series"] == 4 and figures["days_missing"] == late_days
        assert part.lines.stale_count == {LATE_LINE: 4}
    else:
        assert stale_alerts == []
        # Stricter setting: the same two days are stale.
        strict = settings.model_copy(update={"forecast_stale_days": 1})
        assert [a["subject"] for a in run_pipeline(strict) if a["type"] == "stale_data"] == [f"line:{LATE_LINE}"]
    capacity = {a["subject"]: a["severity"] for a in alerts if a["type"] == "capacity_warning"}
    assert capacity == {s: sev for s, sev in medium_or_high(alerts_before).items() if s.startswith("line:")}


def test_the_run_result_flags_stale_lines(app, client, auth, run_worker):
    demo.seed_demo(items=12, days=120, seed=4)
    drop_last_days(LATE_LINE, 6)
    run_id = client.post("/api/jobs/forecast/trigger", headers=auth).get_json()["job_id"]
    run_worker()
    run = client.get(f"/api/jobs/forecast/{run_id}").get_json()
    assert run["status"] == "finished", run
    forecast = run["result"]["forecast"]
    assert forecast["stale_lines"] == [LATE_LINE] and forecast["stale_series"] == 4
    assert forecast["horizon_start"] == (utcnow().date()).isoformat()
    stored = client.get("/api/alerts?type=stale_data").get_json()["alerts"]
    assert [a["subject"] for a in stored] == [f"line:{LATE_LINE}"]
    # A second run in the same week refreshes the one alert instead of adding another.
    client.post("/api/jobs/forecast/trigger", headers=auth)
    run_worker()
    stored = client.get("/api/alerts?type=stale_data").get_json()["alerts"]
    assert len(stored) == 1 and stored[0]["occurrences"] == 2


# --- the service scores its own forecasts -------------------------------------------------------------


def test_later_runs_score_past_forecasts_and_export_them(app, client):
    settings = app.config["SETTINGS"]
    end = date(2025, 6, 1)
    demo.seed_demo(items=12, days=120, seed=6, end=end)
    run_pipeline(settings)
    with db_session():
        snapshot = ForecastSnapshot.get()
        lines = {row.line: row for row in ForecastLine.select()}
        codes = [
            c
            for c, _, _ in ProductionLine.select(
                ProductionLine.code, ProductionLine.name, ProductionLine.daily_capacity
            ).tuples()
        ]
    assert snapshot.horizon_start == end + timedelta(days=1) and snapshot.scored_at is None
    assert set(lines) == set(codes) and all(len(row.p50) == 14 for row in lines.values())
    assert all(row.p10[d] <= row.p50[d] <= row.p90[d] for row in lines.values() for d in range(14))

    # The actuals arrive: line 1 exactly at its P50, line 2 far above its P90, line 3 missing on day 3.
    perfect, above, gappy = sorted(lines)[:3]
    with db_session():
        ids = dict(ProductionLine.select(ProductionLine.code, ProductionLine.id).tuples())
        items = {
            code: sorted(
                {i for (i,) in DemandHistory.select(DemandHistory.item).where(DemandHistory.line == ids[code]).tuples()}
            )
            for code in codes
        }
        rows = []
        for day_index in range(14 + 3):  # the horizon and three days of grace for late feeds
            day = end + timedelta(days=1 + day_index)
            for code in codes:
                row = lines[code]
                d = min(day_index, 13)
                total = {perfect: row.p50[d], above: row.p90[d] + 1000.0}.get(code, row.p50[d] + 1.0)
                for k, item in enumerate(items[code]):
                    if code == gappy and day_index == 3 and k == 0:
                        continue  # one item of this line has no row that day: not scored
                    rows.append((item, ids[code], day, total if k == 0 else 0.0))
        DemandHistory.insert_many(
            rows, fields=[DemandHistory.item, DemandHistory.line, DemandHistory.day, DemandHistory.quantity]
        ).execute()

    run_pipeline(settings)
    with db_session():
        scored = ForecastSnapshot.get_by_id(snapshot.id)
        by_line = {row.line: row for row in ForecastLine.select().where(ForecastLine.snapshot == snapshot.id)}
        assert ForecastSnapshot.select().count() == 2  # the later run kept its own forecast too
    assert scored.scored_at is not None
    assert by_line[perfect].mase == pytest.approx(0.0, abs=1e-6) and by_line[perfect].coverage == 1.0
    assert by_line[perfect].scored_points == 14
    assert by_line[above].coverage == 0.0
    expected = np.mean(np.abs(np.array(lines[above].p90) + 1000.0 - np.array(lines[above].p50))) / lines[above].scale
    assert by_line[above].mase == pytest.approx(expected, rel=1e-6)
    assert by_line[gappy].scored_points == 13
    assert scored.scored_points == 14 * len(codes) - 1
    assert scored.mase == pytest.approx(np.mean([r.mase for r in by_line.values()]), rel=1e-9)

    body = client.get("/api/forecast/accuracy").get_json()
    assert [r["horizon_start"] for r in body["runs"]] == [(end + timedelta(days=1)).isoformat()]
    assert body["runs"][0]["mase"] == pytest.approx(scored.mase) and body["runs"][0]["points"] == scored.scored_points
    one = client.get(f"/api/forecast/accuracy?line={perfect}").get_json()
    assert one["line"] == perfect and one["runs"][0]["coverage"] == 1.0

    from tests.test_metrics import samples, value

    metrics = samples(client.get("/metrics").get_data(as_text=True))
    assert value(metrics, "forecast_mase", scope="run", line="") == pytest.approx(scored.mase)
    assert value(metrics, "forecast_interval_coverage", scope="run", line="") == pytest.approx(scored.coverage)
    assert value(metrics, "forecast_mase", scope="line", line=perfect) == pytest.approx(0.0, abs=1e-6)
    assert value(metrics, "forecast_interval_coverage", scope="line", line=above) == 0.0


def test_a_retried_run_replaces_its_recorded_forecast(app):
    settings = app.config["SETTINGS"]
    demo.seed_demo(items=6, days=60, seed=2)
    pipeline.run_builtin(settings, run_id="run-1")
    pipeline.run_builtin(settings, run_id="run-1")
    pipeline.run_builtin(settings, run_id="run-2")
    with db_session():
        assert sorted(s.run_id for s in ForecastSnapshot.select()) == ["run-1", "run-2"]
        assert ForecastLine.select().count() == 2 * 3


def test_old_forecasts_are_deleted_by_the_cleanup_function(app):
    from app.forecast import accuracy

    settings = app.config["SETTINGS"]
    demo.seed_demo(items=6, days=60, seed=2)
    pipeline.run_builtin(settings, run_id="old")
    pipeline.run_builtin(settings, run_id="new")
    with db_session():
        ForecastSnapshot.update(created_at=utcnow() - timedelta(days=100)).where(
            ForecastSnapshot.run_id == "old"
        ).execute()
        assert accuracy.delete_before(utcnow() - timedelta(days=90), batch_size=1) == 1
        assert [s.run_id for s in ForecastSnapshot.select()] == ["new"]
        assert ForecastLine.select().count() == 3


# --- a real spike on a count series, from the database --------------------------------------------


def test_a_spike_on_a_count_series_is_reported_while_the_forecast_stays_put(app):
    """Items selling a few units a day (Poisson counts, explicit zeros included); one item sells 20x
    its median on the last day. The spike rule reports it; the engine's forecast is not dragged up."""
    settings = app.config["SETTINGS"]
    rng = np.random.default_rng(11)
    end = date(2025, 4, 30)
    days = 120
    with db_session():
        line = ProductionLine.create(code="S1", name="Shop", daily_capacity=10_000)
        rows = []
        for k in range(8):
            counts = rng.poisson(3.0 if k else 5.0, days).astype(float)
            if k == 0:
                counts[-1] = 20 * max(1.0, float(np.median(counts[:-7])))
            rows += [(f"ITEM-{k}", line.id, end - timedelta(days=days - 1 - d), counts[d]) for d in range(days)]
        DemandHistory.insert_many(
            rows, fields=[DemandHistory.item, DemandHistory.line, DemandHistory.day, DemandHistory.quantity]
        ).execute()
    alerts = run_pipeline(settings)
    spikes = [a for a in alerts if a["type"] == "demand_spike"]
    assert [a["subject"] for a in spikes] == ["item:ITEM-0@S1"]
    figures = spikes[0]["figures"]
    assert (
        spikes[0]["severity"] == "high" and figures["trigger"] == "recent" and figures["peak_date"] == end.isoformat()
    )
    assert figures["peak"] >= 100 and figures["medium_threshold"] < figures["peak"]

    history = load_history()
    spiked = predict(history.values[:1], 14).mean.sum()
    calm = history.values[:1].copy()
    calm[0, -1] = np.nan
    assert spiked <= 1.5 * predict(calm, 14).mean.sum()  # the outlier does not carry into the forecast
    assert not [a for a in alerts if a["type"] == "capacity_warning"]


def test_plan_lists_every_series_with_its_first_and_last_day(app):
    """The plan's index hops (both databases) give what a GROUP BY over every row gives."""
    rng = np.random.default_rng(5)
    day0 = date(2025, 3, 1)
    with db_session():
        lines = [ProductionLine.create(code=f"L{i}", name=f"Line {i}", daily_capacity=10).id for i in range(4)]
        rows = []
        # Items on one, several or all lines, names that sort close together (prefixes, '' and case).
        for item in ["", "a", "a0", "A", "b", "item-10", "item-2", "item-20", "zz"]:
            for line_id in rng.choice(lines, rng.integers(1, len(lines) + 1), replace=False):
                days = np.sort(rng.choice(60, rng.integers(1, 8), replace=False))
                rows += [(item, int(line_id), day0 + timedelta(days=int(d)), float(d)) for d in days]
        DemandHistory.insert_many(
            rows, fields=[DemandHistory.item, DemandHistory.line, DemandHistory.day, DemandHistory.quantity]
        ).execute()
    expected: dict[tuple[str, int], list[date]] = {}
    for item, line_id, day, _ in rows:
        expected.setdefault((item, line_id), []).append(day)

    planned = pipeline.plan(None)
    assert planned is not None
    assert planned.keys == sorted(expected)  # the database's key order (byte order of the item)
    assert planned.start == min(min(days) for days in expected.values())
    assert planned.end == max(max(days) for days in expected.values())
    cutoff = planned.end - timedelta(days=9)
    recent = pipeline.plan(10)
    assert recent is not None and recent.start == cutoff
    assert recent.keys == sorted(key for key, days in expected.items() if max(days) >= cutoff)
