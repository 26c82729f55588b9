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


# -- kept pages (app.core.page_cache) ------------------------------------------------------------

ALERTS_URL = "/api/alerts?severity=high&limit=5"
HISTORY_URL = "/api/jobs/forecast/history?limit=5"


def _kept_pages_app(settings_overrides):
    from app import create_app
    from app.connections import db_session
    from app.models import create_tables

    app = create_app(settings_overrides)
    with app.app_context(), db_session():
        create_tables()
        _rows()
    return app, app.wsgi_app.pages


def _outside(database_url: str):
    """A connection of another process's kind (a worker, an operator's psql): not the app's pool."""
    import psycopg2

    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    return conn


def _titles(client) -> list[str]:
    return [alert["title"] for alert in client.get(ALERTS_URL).get_json()["alerts"]]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_page_is_answered_again_until_any_writer_commits(settings_overrides, database_url):
    app, pages = _kept_pages_app(settings_overrides)
    client = app.test_client()
    first = client.get(ALERTS_URL).get_data()
    assert client.get(ALERTS_URL).get_data() == first and pages.hits == 1
    outside = _outside(database_url)
    with outside.cursor() as cur:
        cur.execute("UPDATE alerts SET title = 'changed by SQL' WHERE title = 't9'")
    assert "changed by SQL" in _titles(client)  # no app code told the cache: the snapshot moved
    assert pages.hits == 1
    assert "changed by SQL" in _titles(client) and pages.hits == 2
    outside.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_uncommitted_write_is_not_shown_and_its_commit_is(settings_overrides, database_url):
    import psycopg2

    app, pages = _kept_pages_app(settings_overrides)
    client = app.test_client()
    before = _titles(client)
    writer = psycopg2.connect(database_url)
    with writer.cursor() as cur:
        cur.execute("UPDATE alerts SET title = 'not yet' WHERE title = 't9'")
        assert _titles(client) == before
        assert _titles(client) == before
        writer.commit()
    assert "not yet" in _titles(client)
    writer.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_commit_while_a_page_is_read_is_never_served_stale(settings_overrides, database_url, monkeypatch):
    """The snapshot is read before the page: a commit landing just after the page's query leaves
    the page labelled with the older snapshot, so the next request reads afresh."""
    from app.core import listings

    app, pages = _kept_pages_app(settings_overrides)
    client = app.test_client()
    outside = _outside(database_url)
    real_page = listings.alerts_page

    def page_then_commit(query):
        page = real_page(query)
        with outside.cursor() as cur:
            cur.execute("UPDATE alerts SET title = 'landed meanwhile' WHERE title = 't9'")
        return page

    monkeypatch.setattr(listings, "alerts_page", page_then_commit)
    assert "landed meanwhile" not in _titles(client)
    monkeypatch.setattr(listings, "alerts_page", real_page)
    assert "landed meanwhile" in _titles(client)
    outside.close()


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_history_page_with_a_run_waiting_for_retry_is_read_every_time(settings_overrides, database_url):
    from datetime import timezone

    app, pages = _kept_pages_app(settings_overrides)
    client = app.test_client()
    redis = app.extensions["redis"]
    outside = _outside(database_url)
    with outside.cursor() as cur:
        cur.execute("UPDATE job_runs SET status = 'scheduled', ended_at = NULL WHERE id = 'run-11'")
    client.get(HISTORY_URL)
    for minute in (5, 7):  # RQ moves the retry in Redis; the database does not change
        due = datetime(2026, 3, 1, 14, minute, tzinfo=timezone.utc)
        redis.zadd("rq:scheduled:forecast", {"run-11": due.timestamp()})
        runs = client.get(HISTORY_URL).get_json()["runs"]
        waiting = next(run for run in runs if run["job_id"] == "run-11")
        assert waiting["state_detail"].startswith(f"retrying at 14:0{minute} UTC")
    assert pages.hits == 0 and len(pages) == 0
    outside.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_pages_are_read_every_time(settings_overrides):
    from app.connections import db_session

    app, pages = _kept_pages_app(settings_overrides)
    client = app.test_client()
    client.get(ALERTS_URL)
    with app.app_context(), db_session():
        Alert.update(title="changed").where(Alert.title == "t9").execute()
    assert "changed" in _titles(client)
    assert len(pages) == 0 and pages.hits == 0
