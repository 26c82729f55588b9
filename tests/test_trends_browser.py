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
    page.click("nav.pages a:text('trends')")
    page.wait_for_selector("#trends[data-loaded='true']")
    assert page.url.endswith("/dashboard/trends")
