"""The project dashboard's forecast accuracy chart: data.json carries the scored runs, and the page
draws them in a real headless Chromium (skipped without it unless REQUIRE_BROWSER=1)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from app.connections import db_session
from app.models import ForecastLine, ForecastSnapshot, utcnow
from tests.test_dashboard import basic
from tests.test_dashboard_browser import _MISSING, browser, live_server, open_page, settings_overrides, wait_loaded  # noqa: F401


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'accuracy.db'}"


def scored_runs(count: int = 3) -> list[ForecastSnapshot]:
    rows = []
    with db_session():
        for k in range(count):
            snapshot = ForecastSnapshot.create(
                run_id=f"run-{k}",
                horizon_start=date(2025, 5, 1) + timedelta(days=k),
                horizon_days=14,
                lines=1,
                mase=0.8 + 0.1 * k,
                coverage=0.75 + 0.05 * k,
                scored_points=14,
                scored_at=utcnow(),
            )
            ForecastLine.create(
                snapshot=snapshot,
                line="L1",
                scale=2.0,
                p10=[1] * 14,
                p50=[2] * 14,
                p90=[3] * 14,
                mase=snapshot.mase,
                coverage=snapshot.coverage,
                scored_points=14,
            )
            rows.append(snapshot)
        ForecastSnapshot.create(
            run_id="unscored", horizon_start=date(2025, 6, 1), horizon_days=14, lines=1, scored_points=0
        )
    return rows


def test_dashboard_data_carries_the_scored_runs_oldest_first(client):
    creds = basic()
    assert client.get("/dashboard/data.json", headers=creds).get_json()["forecast_accuracy"] == []
    scored_runs()
    runs = client.get("/dashboard/data.json", headers=creds).get_json()["forecast_accuracy"]
    assert [r["horizon_start"] for r in runs] == ["2025-05-01", "2025-05-02", "2025-05-03"]
    assert [r["mase"] for r in runs] == pytest.approx([0.8, 0.9, 1.0])
    assert 'id="card-accuracy"' in client.get("/dashboard/", headers=creds).get_data(as_text=True)


@pytest.mark.skipif(bool(_MISSING), reason=_MISSING or "")
def test_the_page_draws_the_accuracy_chart(app, open_page):  # noqa: F811 (the fixture, imported above)
    page = open_page()
    wait_loaded(page)
    assert "No forecast scored yet" in page.inner_text("#card-accuracy")
    scored_runs()
    page.reload()
    wait_loaded(page)
    card = page.locator("#card-accuracy")
    assert card.locator("path.line-mase").get_attribute("d").count("L") == 2
    assert card.locator("path.line-coverage").count() == 1
    assert card.locator("g[data-horizon]").count() == 3
    assert "latest 2025-05-03: MASE 1.000, coverage 85.0 %" in page.inner_text("#accuracy-latest")
