"""Run figures aggregated in SQL (`app.core.stats.run_figures`): /api/jobs/stats and the dashboard share them.

The expected figures are computed here from the same rows with NumPy (linear percentiles).
"""

from __future__ import annotations

from datetime import timedelta

import numpy
import pytest

from app.connections import db_session
from app.models import JobRun, utcnow


def _run(run_id: str, job: str, status: str, enqueued, seconds: float | None):
    started = enqueued + timedelta(seconds=2) if seconds is not None else None
    ended = started + timedelta(seconds=seconds) if seconds is not None else enqueued
    return JobRun.create(
        id=run_id,
        job_name=job,
        queue="forecast",
        trigger="manual",
        status=status,
        enqueued_at=enqueued,
        started_at=started,
        ended_at=ended,
        attempts=1,
    )


def _history(now) -> dict[str, list[tuple]]:
    """Forecast: most runs long before the windows (SQLite then sorts the window); daily-summary: all recent."""
    rows = {"forecast": [], "daily-summary": []}
    for i in range(60):  # 10-70 days ago
        rows["forecast"].append((f"f-old{i}", "finished", now - timedelta(days=10 + i), 100 + (i * 37) % 50))
    for i in range(25):  # the last 7 days, 8 of them in the last 24 h
        rows["forecast"].append((f"f{i}", "finished", now - timedelta(hours=3 * i + 1), 1 + (i * 7919) % 23 + i / 10))
    rows["forecast"] += [
        ("f-fail", "failed", now - timedelta(hours=2), 3.5),
        ("f-stop", "stopped", now - timedelta(days=2), 9),
        ("f-skip", "skipped", now - timedelta(hours=5), None),
    ]
    for i in range(40):  # all within the last 7 days
        rows["daily-summary"].append((f"d{i}", "finished", now - timedelta(hours=4 * i + 0.5), 0.25 * ((i * 13) % 17)))
    return rows


def _expected(rows: list[tuple], since) -> dict:
    durations = [s for _, status, at, s in rows if status == "finished" and at >= since and s is not None]
    return {
        "count": len(durations),
        "mean": numpy.mean(durations),
        "max": max(durations),
        "p50": numpy.percentile(durations, 50),
        "p95": numpy.percentile(durations, 95),
    }


def _fill(now) -> dict[str, list[tuple]]:
    rows = _history(now)
    for job, job_rows in rows.items():
        for run_id, status, at, seconds in job_rows:
            _run(run_id, job, status, at, seconds)
    return rows


def _check(names, rows, now):
    from app.core.stats import run_figures

    for hours in (24, 24 * 7):
        since = now - timedelta(hours=hours)
        figures = run_figures(names, since)
        for job, job_rows in rows.items():
            durations = figures[job]["durations"]
            expected = _expected(job_rows, since)
            assert durations["count"] == expected["count"]
            for key in ("mean", "max", "p50", "p95"):
                assert durations[key] == pytest.approx(expected[key], abs=1e-6), (job, hours, key)
            by_status = {}
            for _, status, at, _ in job_rows:
                if at >= since:
                    by_status[status] = by_status.get(status, 0) + 1
            assert figures[job]["by_status"] == by_status
        assert figures["cleanup"] == {
            "by_status": {},
            "durations": {"count": 0, "mean": None, "max": None, "p50": None, "p95": None},
        }


def test_run_figures_equal_a_direct_computation(app):
    now = utcnow()
    with db_session():
        rows = _fill(now)
        _check(["forecast", "daily-summary", "cleanup"], rows, now)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("sort_cost", [0.0, 1e9], ids=["sorted-window", "duration-index"])
def test_sqlite_lookups_agree_along_either_index(app, monkeypatch, sort_cost):
    """SQLite picks the by-duration index or a sort of the window by cost: both give the same figures."""
    from app.core import stats

    monkeypatch.setattr(stats, "SORT_COST", sort_cost)
    now = utcnow()
    with db_session():
        rows = _fill(now)
        _check(["forecast", "daily-summary", "cleanup"], rows, now)


def test_a_single_duration_and_ties(app):
    from app.core.stats import run_figures

    now = utcnow()
    with db_session():
        _run("one", "cleanup", "finished", now - timedelta(hours=1), 4.5)
        for i in range(4):
            _run(f"tie{i}", "forecast", "finished", now - timedelta(hours=1 + i), 7)
        figures = run_figures(["forecast", "cleanup"], now - timedelta(days=1))
    assert figures["cleanup"]["durations"] == {"count": 1, "mean": 4.5, "max": 4.5, "p50": 4.5, "p95": 4.5}
    assert figures["forecast"]["durations"]["p95"] == pytest.approx(7.0)


def test_api_stats_last_24h(client, app):
    now = utcnow()
    with db_session():
        for i, seconds in enumerate([1.5, 2.5, 3.0, 10.25]):
            _run(f"ok{i}", "forecast", "finished", now - timedelta(hours=i + 1), seconds)
        _run("bad", "forecast", "failed", now - timedelta(hours=2), 1)
        _run("halt", "forecast", "stopped", now - timedelta(hours=2), 1)
        _run("old", "forecast", "finished", now - timedelta(days=2), 500)
        _run("not-started", "forecast", "canceled", now - timedelta(hours=3), None)
    stats = client.get("/api/jobs/stats").get_json()["last_24h"]
    assert stats["window_hours"] == 24
    assert stats["jobs"]["forecast"] == {
        "success": 4,
        "failure": 2,
        "by_status": {"finished": 4, "failed": 1, "stopped": 1, "canceled": 1},
        "duration_seconds": {"count": 4, "mean": 4.312, "p50": 2.75, "max": 10.25},
    }
    assert stats["jobs"]["cleanup"] == {
        "success": 0,
        "failure": 0,
        "by_status": {},
        "duration_seconds": {"count": 0, "mean": None, "p50": None, "max": None},
    }


def test_ending_a_run_stores_its_duration(app):
    """mark_ended writes duration_s with ended_at; a retry's start clears both; no start, no duration."""
    from app.runs import RunStatus, mark_ended, mark_started

    now = utcnow()
    with db_session():
        JobRun.create(id="r1", job_name="forecast", queue="forecast", trigger="manual", status="queued")
        mark_started("r1", "forecast", "forecast", started_at=now - timedelta(seconds=12.5))
        mark_ended("r1", RunStatus.FAILED, error="boom")
        run = JobRun.get_by_id("r1")
        assert run.duration_s == pytest.approx((run.ended_at - run.started_at).total_seconds(), abs=0.002)
        assert run.duration_s >= 12.5 - 0.002

        mark_ended("r1", RunStatus.SCHEDULED)  # RQ retries it (a failed run never starts again)
        mark_started("r1", "forecast", "forecast")  # the retry
        run = JobRun.get_by_id("r1")
        assert (run.ended_at, run.duration_s) == (None, None)
        mark_ended("r1", RunStatus.SCHEDULED)  # waiting for another retry: not ended
        assert JobRun.get_by_id("r1").duration_s is None
        mark_ended("r1", RunStatus.FINISHED, result={"ok": True})
        run = JobRun.get_by_id("r1")
        assert run.duration_s == pytest.approx((run.ended_at - run.started_at).total_seconds(), abs=0.002)

        JobRun.create(id="r2", job_name="forecast", queue="forecast", trigger="manual", status="queued")
        mark_ended("r2", RunStatus.CANCELED)
        assert JobRun.get_by_id("r2").duration_s is None

        # A worker whose clock runs ahead of this host's: never a negative duration.
        JobRun.create(id="r3", job_name="forecast", queue="forecast", trigger="manual", status="queued")
        mark_started("r3", "forecast", "forecast", started_at=now + timedelta(minutes=5))
        mark_ended("r3", RunStatus.FINISHED)
        assert JobRun.get_by_id("r3").duration_s == 0.0
