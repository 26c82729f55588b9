"""The read routes' fast path (app/api/fast_reads.py) answers exactly as the Flask views do.

Every URL is requested twice, through the app as served (fast path in front) and through Flask
alone; status, headers and body bytes must be equal, for good and bad requests, with and
without the read token. The plain successful reads must really take the fast path.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from app.core.pagination import encode_cursor
from app.models import Alert, JobRun
from tests.conftest import TEST_TOKEN

T0 = datetime(2026, 3, 1, 12, 0, 0)


def _rows():
    for i in range(12):
        at = T0 + timedelta(minutes=i // 2)
        JobRun.create(
            id=f"run-{i}",
            job_name="forecast",
            queue="forecast",
            trigger="scheduled" if i % 3 else "manual",
            status="finished" if i % 2 else "failed",
            enqueued_at=at,
            started_at=at + timedelta(seconds=1),
            ended_at=None if i == 6 else at + timedelta(seconds=2, microseconds=250),
            attempts=i,
            result={"status": "completed", "n": i, "nested": {"b": [1, 2.5, None], "a": 'é"\u2028'}},
            error="boom" if i % 2 == 0 else None,
            slot=at if i % 3 else None,
        )
        Alert.create(
            type="capacity_warning" if i % 2 else "demand_spike",
            severity=("high", "medium", "low")[i % 3],
            title=f"t{i}",
            message="ünïcode ✓",
            source="scheduled_job",
            subject=f"line-{i}",
            fingerprint=f"fp-{i}",
            figures={"load": 1104.2 + i, "z": None, "a": [i]},
            created_at=at,
            last_seen_at=at,
        )


def _urls() -> list[str]:
    cursor = encode_cursor(T0 + timedelta(minutes=3), "run-7")
    alert_cursor = encode_cursor(T0 + timedelta(minutes=3), 7)
    return [
        "/api/jobs/forecast/run-3",
        "/api/jobs/forecast/run-6",
        "/api/jobs/forecast/missing-run",
        "/api/jobs/forecast/run-3?x=1",
        "/api/jobs/daily-summary/run-3",
        "/api/jobs/nope/run-3",
        "/api/jobs/forecast/trigger",
        "/api/jobs/forecast/bad%20id",
        "/api/jobs/forecast/run-3/",
        "/api/jobs/forecast/history",
        "/api/jobs/forecast/history?limit=3",
        f"/api/jobs/forecast/history?limit=3&cursor={cursor}",
        "/api/jobs/forecast/history?status=finished&trigger=scheduled&limit=2",
        "/api/jobs/forecast/history?status=bogus",
        "/api/jobs/forecast/history?limit=0",
        "/api/jobs/forecast/history?limit=3&limit=4",
        "/api/jobs/forecast/history?cursor=not-a-cursor",
        "/api/jobs/forecast/history?extra=1",
        "/api/jobs/forecast/history?limit=+3",
        "/api/jobs/forecast/history?limit=%33",
        "/api/jobs/forecast/history?&limit=3&",
        "/api/jobs/forecast/history?limit",
        "/api/jobs/nope/history",
        "/api/alerts",
        "/api/alerts?severity=high&limit=2",
        f"/api/alerts?limit=2&cursor={alert_cursor}",
        "/api/alerts?source=scheduled_job&type=demand_spike",
        "/api/alerts?since=2026-03-01T12:02:00Z",
        "/api/alerts?since=2026-03-01T12:02:00%2B01:00",
        "/api/alerts?since=9999-12-31T23:59:59-12:00",
        "/api/alerts?severity=urgent",
        "/api/alerts?cursor=WyIyMDI2LTAzLTAxVDEyOjAzOjAwIiwgOTk5OTk5OTk5OTk5OTk5OTk5OTk5XQ",
        "/api/alerts/",
        "/api/alerts?limit=%00",
    ]


def _answer(client, url: str, headers: dict) -> tuple[int, list, bytes]:
    response = client.get(url, headers=headers)
    return response.status_code, sorted(response.headers.items()), response.get_data()


@pytest.mark.parametrize("read_auth", ["off", "on"])
def test_the_fast_path_answers_byte_for_byte_as_flask(settings_overrides, read_auth):
    from app import create_app
    from app.api.fast_reads import FastReads
    from app.connections import db_session
    from app.models import create_tables

    app = create_app({**settings_overrides, "api_read_auth": read_auth})
    with app.app_context(), db_session():
        create_tables()
        _rows()
    served = app.wsgi_app
    assert isinstance(served, FastReads)
    plain = served.flask_wsgi_app
    reached_flask: list[str] = []

    def counting_flask(environ, start_response):
        reached_flask.append(environ["PATH_INFO"])
        return plain(environ, start_response)

    served.flask_wsgi_app = counting_flask
    client = app.test_client()
    took_fast_path = set()
    for headers in ({}, {"Authorization": f"Bearer {TEST_TOKEN}"}, {"Authorization": "Bearer wrong"}):
        for url in _urls():
            app.wsgi_app = plain
            expected = _answer(client, url, headers)
            app.wsgi_app = served
            reached_flask.clear()
            got = _answer(client, url, headers)
            assert got == expected, (url, headers)
            if not reached_flask:
                took_fast_path.add((url, bool(headers)))
    authorised = read_auth == "off"
    for url in ("/api/jobs/forecast/run-3", "/api/jobs/forecast/history?limit=3", "/api/alerts?severity=high&limit=2"):
        assert (url, False) in took_fast_path or not authorised
        assert (url, True) in took_fast_path
    assert ("/api/jobs/forecast/missing-run", True) not in took_fast_path  # a 404 comes from Flask
