"""The trends page in a real Chromium: uPlot charts per job and the accuracy chart, under the dashboard's CSP."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.test_dashboard_browser import (  # noqa: F401 - fixtures
    _MISSING,
    browser,
    database_url,
    live_server,
    open_page,
    settings_overrides,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_MISSING), reason=_MISSING or "")]


@pytest.fixture
def runs(app):
    from app.connections import db_session
    from app.models import JobRun, utcnow

    now = utcnow()
    with db_session():
        for i in range(40):
            enqueued = now - timedelta(hours=i * 0.5)
            JobRun.create(
                id=f"trend-{i}",
                job_name="forecast",
                queue="forecast",
                trigger="scheduled",
                status="failed" if i % 7 == 0 else "finished",
                enqueued_at=enqueued,
                started_at=enqueued,
                ended_at=enqueued + timedelta(seconds=5 + i),
                attempts=1,
            )


def test_the_trends_page_draws_every_job_and_switches_windows(open_page, runs):
    page = open_page("/dashboard/trends")
    page.wait_for_selector("#trends[data-loaded='true']")
    for job in ("forecast", "daily-summary", "cleanup"):
        assert page.locator(f"#trend-{job} canvas").count() == 2, job
    forecast = page.locator("#trend-forecast")
    assert forecast.get_attribute("data-runs") == "40"
    assert "6 failed or stopped" in forecast.locator(".totals").inner_text()
    assert "p95" in forecast.locator(".durations").inner_text()  # the legend
    page.click(".windows a:text('30d')")
    page.wait_for_selector("#trends[data-window='30d'][data-loaded='true']")
    assert page.locator("#trend-forecast").get_attribute("data-runs") == "40"
    assert page.locator("#trend-accuracy").inner_text().count("No forecast scored yet") == 1


def test_the_home_page_links_to_the_trends(open_page):
    page = open_page("/dashboard/")
    # the first data render shifts the layout: a click during it can land beside the link
    page.wait_for_selector("#dashboard[data-loaded='true']")
    page.click("nav.pages a:text('trends')")
    page.wait_for_selector("#trends[data-loaded='true']")
    assert page.url.endswith("/dashboard/trends")


def _month_of_runs(now) -> None:
    """30 days of runs at the catalogue's cadence (forecast every 2 h, daily summary, weekly
    cleanup) plus manual runs, with lognormal durations and a few failures: what a month looks like."""
    import random

    from app.models import JobRun

    rng = random.Random(11)
    rows = []
    cadence = {
        "forecast": (timedelta(hours=2), 45.0),
        "daily-summary": (timedelta(days=1), 6.0),
        "cleanup": (timedelta(days=7), 3.0),
    }
    for job, (every, typical) in cadence.items():
        at, i = now - timedelta(days=30), 0
        while at < now:
            slow = 1.0 + (0.6 if job == "forecast" and at > now - timedelta(days=9) else 0.0)  # a slower week
            status = rng.choices(["finished", "failed", "stopped"], [93, 5, 2])[0]
            started = at + timedelta(seconds=rng.uniform(0.1, 2))
            ended = started + timedelta(seconds=rng.lognormvariate(0, 0.35) * typical * slow)
            rows.append(
                dict(
                    id=f"{job}-m-{i:04d}",
                    job_name=job,
                    queue="forecast",
                    trigger="scheduled",
                    status=status,
                    enqueued_at=at,
                    started_at=started,
                    ended_at=ended,
                    attempts=1,
                    error="TimeoutError: demand feed" if status == "failed" else None,
                )
            )
            at, i = at + every, i + 1
    for i in range(40):
        at = now - timedelta(hours=rng.uniform(0, 30 * 24))
        started = at + timedelta(seconds=1)
        rows.append(
            dict(
                id=f"forecast-manual-{i:03d}",
                job_name="forecast",
                queue="forecast",
                trigger="manual",
                status="finished",
                enqueued_at=at,
                started_at=started,
                ended_at=started + timedelta(seconds=rng.lognormvariate(0, 0.35) * 45),
                attempts=1,
            )
        )
    for row in rows:  # insert_many skips JobRun.save, which writes the duration
        row["duration_s"] = (row["ended_at"] - row["started_at"]).total_seconds()
    for start in range(0, len(rows), 200):
        JobRun.insert_many(rows[start : start + 200]).execute()


class TestTrendsScreenshots:
    def test_screenshots_trends_and_alerts(self, open_page, client, auth, app, tmp_path):
        import os
        from pathlib import Path

        from app.connections import db_session
        from app.models import utcnow
        from tests.test_alert_work import _candidate, _store

        out = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path / "screenshots")
        out.mkdir(parents=True, exist_ok=True)
        with db_session():
            _month_of_runs(utcnow())
        ids = [
            _store(f"forecast-m-{300 + i:04d}", _candidate(f"L{i}", sev)).created[0].id
            for i, sev in enumerate(["high", "medium", "high", "low"])
        ]
        for run in range(3):
            _store(f"forecast-m-{340 + run:04d}", _candidate("L0", "high"))
        client.post(f"/api/alerts/{ids[1]}/acknowledge", headers=auth, json={"comment": "planner checking overtime"})
        client.post(f"/api/alerts/{ids[3]}/resolve", headers=auth, json={"comment": "capacity raised on L3"})
        shots = []
        for window in ("7d", "30d"):
            page = open_page(f"/dashboard/trends?window={window}", viewport=(1440, 900))
            page.wait_for_selector("#trends[data-loaded='true']")
            totals = page.locator("#trend-forecast .totals").inner_text()
            assert "p50 –" not in totals and "p95 –" not in totals, totals
            page.screenshot(path=str(out / f"trends-{window}.png"), full_page=True)
            shots.append(f"trends-{window}.png")
        page = open_page("/dashboard/alerts", viewport=(1440, 900))
        page.wait_for_selector("#alerts-page[data-ready='true']")
        page.screenshot(path=str(out / "alerts.png"), full_page=True)
        page = open_page(f"/dashboard/alerts/{ids[0]}", viewport=(1440, 900))
        page.wait_for_selector("#alert-page[data-ready='true']")
        assert page.locator("#sightings tbody tr").count() == 4
        page.screenshot(path=str(out / "alert.png"), full_page=True)
        for name in [*shots, "alerts.png", "alert.png"]:
            data = (out / name).read_bytes()
            assert data.startswith(b"\x89PNG") and len(data) > 10_000, name
