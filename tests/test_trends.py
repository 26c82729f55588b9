"""Trends (app.core.trends, GET /api/trends, /dashboard/trends.json): buckets, counts and percentiles
from stored runs, on both databases."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import numpy as np
import pytest

from tests.conftest import DASHBOARD_PASSWORD, DASHBOARD_USER

NOW = datetime(2026, 11, 30, 10, 30)


def _run(run_id: str, status: str, enqueued: datetime, duration: float | None, job: str = "forecast"):
    from app.models import JobRun

    started = enqueued if duration is not None else None
    JobRun.create(
        id=run_id,
        job_name=job,
        queue="forecast",
        trigger="manual",
        status=status,
        enqueued_at=enqueued,
        started_at=started,
        ended_at=None if started is None else started + timedelta(seconds=duration),
        attempts=1,
    )


@pytest.fixture
def history(app):
    from app.connections import db_session

    durations = [1.0, 2.0, 3.0, 4.0, 10.0]
    with db_session():
        for i, d in enumerate(durations):  # 10:00-10:30 bucket of the 24 h window
            _run(f"now-{i}", "finished", NOW - timedelta(minutes=25 - i), d)
        _run("now-failed", "failed", NOW - timedelta(minutes=5), 7.0)
        _run("now-stopped", "stopped", NOW - timedelta(minutes=4), 8.0)
        _run("now-queued", "queued", NOW - timedelta(minutes=1), None)
        _run("earlier", "finished", NOW - timedelta(hours=5, minutes=10), 20.0)
        _run("old", "finished", NOW - timedelta(days=3), 30.0)
        _run("ancient", "failed", NOW - timedelta(days=40), 1.0)
        _run("other-job", "finished", NOW - timedelta(minutes=3), 99.0, job="cleanup")
    return durations


def test_the_24h_window_has_hourly_buckets_with_counts_and_linear_percentiles(app, history):
    from app.core.trends import TrendWindow, job_trends

    body = job_trends(TrendWindow.DAY, ["forecast"], now=NOW)
    assert body["bucket_seconds"] == 3600 and body["since"] == "2026-11-29T11:00:00Z"
    buckets = body["jobs"]["forecast"]["buckets"]
    assert len(buckets) == 24 and buckets[-1]["start"] == "2026-11-30T10:00:00Z"
    last = buckets[-1]
    assert (last["runs"], last["finished"], last["failed"]) == (8, 5, 2)
    assert last["p50"] == pytest.approx(np.percentile(history, 50)) and last["p95"] == pytest.approx(
        np.percentile(history, 95)
    )
    earlier = next(b for b in buckets if b["start"] == "2026-11-30T05:00:00Z")
    assert (earlier["runs"], earlier["p50"], earlier["p95"]) == (1, 20.0, 20.0)
    assert sum(b["runs"] for b in buckets) == 9  # the 3-day-old and 40-day-old runs are outside
    empty = buckets[0]
    assert (empty["runs"], empty["p50"], empty["p95"]) == (0, None, None)
    totals = body["jobs"]["forecast"]["totals"]
    assert (totals["runs"], totals["finished"], totals["failed"]) == (9, 6, 2)
    assert totals["failure_rate"] == pytest.approx(2 / 8)
    assert totals["p95"] == pytest.approx(np.percentile(history + [20.0], 95))


def test_longer_windows_bucket_by_6_hours_and_by_day(app, history):
    from app.core.trends import TrendWindow, job_trends

    week = job_trends(TrendWindow.WEEK, now=NOW)
    assert week["bucket_seconds"] == 6 * 3600 and len(week["jobs"]["forecast"]["buckets"]) == 28
    assert week["jobs"]["forecast"]["totals"]["runs"] == 10
    assert week["jobs"]["cleanup"]["totals"]["runs"] == 1
    month = job_trends(TrendWindow.MONTH, now=NOW)
    assert month["bucket_seconds"] == 86400 and len(month["jobs"]["forecast"]["buckets"]) == 30
    assert month["jobs"]["forecast"]["buckets"][-1]["start"] == "2026-11-30T00:00:00Z"
    assert month["jobs"]["forecast"]["totals"]["runs"] == 10  # not the 40-day-old one
    assert set(month["jobs"]) == {"forecast", "daily-summary", "cleanup"}


def test_the_api_answers_per_job_and_refuses_bad_windows_and_jobs(client, auth, history):
    body = client.get("/api/trends?window=7d&job=forecast", headers=auth).get_json()
    assert list(body["jobs"]) == ["forecast"] and body["window"] == "7d"
    assert client.get("/api/trends", headers=auth).get_json()["window"] == "24h"
    for query, status in (("window=1y", 400), ("window=%00", 400), ("job=nope", 404), ("window=" + "x" * 5000, 400)):
        response = client.get(f"/api/trends?{query}", headers=auth)
        assert response.status_code == status and response.is_json, query
        assert "error" in response.get_json()


def test_the_dashboard_serves_the_page_and_its_data_behind_its_login(client, history):
    basic = {"Authorization": "Basic " + base64.b64encode(f"{DASHBOARD_USER}:{DASHBOARD_PASSWORD}".encode()).decode()}
    assert client.get("/dashboard/trends").status_code == 401
    assert client.get("/dashboard/trends.json").status_code == 401
    page = client.get("/dashboard/trends?window=30d", headers=basic)
    assert page.status_code == 200 and b'data-window="30d"' in page.data
    data = client.get("/dashboard/trends.json?window=30d", headers=basic).get_json()
    assert data["trends"]["window"] == "30d" and "accuracy" in data
    assert client.get("/dashboard/trends.json?window=5y", headers=basic).status_code == 400
