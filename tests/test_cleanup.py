"""The weekly cleanup keeps alerts that are still live: retention counts from when an alert was last seen.

An alert first raised long ago and seen again by a recent forecast is one open condition; deleting
it by `created_at` made the next forecast re-create it as new and notify it again (issue 11, point 11).
Run by a real worker, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import psycopg2
import pytest

from app.alert_store import store_alerts
from app.connections import database
from app.core import maintenance
from app.models import Alert, AlertOccurrence, utcnow
from tests.test_job_effects import _alert
from tests.test_jobs_api import trigger


def _run_cleanup(client, auth, run_worker) -> dict:
    job_id = trigger(client, auth, job="cleanup").get_json()["job_id"]
    run_worker()
    run = client.get(f"/api/jobs/cleanup/{job_id}").get_json()
    assert run["status"] == "finished", run
    return run["result"]


def test_an_old_alert_seen_again_recently_is_kept_and_not_raised_anew(client, auth, run_worker, app):
    retention = app.config["SETTINGS"].alert_retention_days
    now = utcnow()
    with database.atomic():
        store_alerts([_alert("line:live"), _alert("line:gone"), _alert("line:edge")], job_id="first")
        # live: first raised 100+ days ago, seen again today; gone: not seen for longer than the retention;
        # edge: last seen a day inside the retention.
        Alert.update(created_at=now - timedelta(days=retention + 10), last_seen_at=now).where(
            Alert.subject == "line:live"
        ).execute()
        Alert.update(
            created_at=now - timedelta(days=retention + 30), last_seen_at=now - timedelta(days=retention + 1)
        ).where(Alert.subject == "line:gone").execute()
        Alert.update(
            created_at=now - timedelta(days=retention + 30), last_seen_at=now - timedelta(days=retention - 1)
        ).where(Alert.subject == "line:edge").execute()
    live_id = Alert.get(Alert.subject == "line:live").id

    result = _run_cleanup(client, auth, run_worker)

    assert result["deleted_alerts"] == 1
    assert sorted(a.subject for a in Alert.select()) == ["line:edge", "line:live"]
    with database.atomic():  # the next forecast sees the condition again: it refreshes, nothing is new
        outcome = store_alerts([_alert("line:live")], job_id="next")
    assert (outcome.new, outcome.updated, outcome.created) == (0, 1, [])
    live = Alert.get_by_id(live_id)
    assert live.occurrences == 2 and live.job_id == "first"


def test_retention_reads_an_index_on_last_seen_at(client):
    """A cleanup of millions of rows deletes in batches; each batch must find its rows by index."""
    cutoff = utcnow() - timedelta(days=90)
    query = Alert.select(Alert.id).where(Alert.last_seen_at < cutoff).limit(20000)
    sql, params = query.sql()
    if database.param == "?":  # SQLite
        plan = " ".join(str(row) for row in database.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())
    else:  # PostgreSQL: with sequential scans off, the planner uses the index if there is one
        with database.atomic():
            database.execute_sql("SET LOCAL enable_seqscan = off")
            plan = " ".join(row[0] for row in database.execute_sql(f"EXPLAIN {sql}", params).fetchall())
    assert "alerts_last_seen_at" in plan, plan


def test_recorded_forecasts_are_kept_as_long_as_the_run_history(client, auth, run_worker, app):
    """What past forecast runs predicted (for accuracy scoring) ages out with HISTORY_RETENTION_DAYS."""
    from app.forecast import demo, pipeline
    from app.models import ForecastSnapshot

    settings = app.config["SETTINGS"]
    demo.seed_demo(items=4, days=60, seed=3)
    pipeline.run_builtin(settings, run_id="old-run")
    pipeline.run_builtin(settings, run_id="recent-run")
    ForecastSnapshot.update(created_at=utcnow() - timedelta(days=settings.history_retention_days + 1)).where(
        ForecastSnapshot.run_id == "old-run"
    ).execute()

    result = _run_cleanup(client, auth, run_worker)

    assert result["deleted_forecasts"] == 1
    assert [s.run_id for s in ForecastSnapshot.select()] == ["recent-run"]


def _sightings() -> dict[str, int]:
    """Sightings per alert subject; an orphan (its alert gone) counts under None."""
    subjects = {a.id: a.subject for a in Alert.select()}
    out: dict[str, int] = {}
    for sighting in AlertOccurrence.select():
        key = subjects.get(sighting.alert)
        out[key] = out.get(key, 0) + 1
    return out


def _expire(subject: str, retention: int) -> None:
    gone = utcnow() - timedelta(days=retention + 1)
    Alert.update(created_at=gone, last_seen_at=gone).where(Alert.subject == subject).execute()


def test_an_expired_alert_goes_with_its_sightings_and_a_live_one_keeps_them(app):
    """The sightings have no foreign key (migration 0010): the cleanup deletes them with their alert."""
    retention = app.config["SETTINGS"].alert_retention_days
    subjects = ["line:a", "line:b", "line:c", "line:live"]
    for run in ("r1", "r2"):
        with database.atomic():
            store_alerts([_alert(s) for s in subjects], job_id=run)
    for subject in subjects[:3]:
        _expire(subject, retention)

    deleted = maintenance.delete_expired_alerts(utcnow() - timedelta(days=retention), batch_size=2)

    assert deleted == (3, 6)
    assert [a.subject for a in Alert.select()] == ["line:live"]
    assert _sightings() == {"line:live": 2}


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_an_alert_seen_again_while_the_cleanup_deletes_it_keeps_its_sightings(app, database_url):
    """A forecast refreshed an expired alert (uncommitted) when the cleanup's batch reached it: once
    the forecast commits, the cleanup must see the alert live again and leave it and its sightings."""
    retention = app.config["SETTINGS"].alert_retention_days
    with database.atomic():
        store_alerts([_alert("line:seen"), _alert("line:gone")], job_id="r1")
    for subject in ("line:seen", "line:gone"):
        _expire(subject, retention)
    seen_id = Alert.get(Alert.subject == "line:seen").id
    forecast = psycopg2.connect(database_url)  # the forecast's transaction, holding the alert's row
    with forecast.cursor() as cur:
        cur.execute("UPDATE alerts SET last_seen_at = now() at time zone 'utc' WHERE id = %s", (seen_id,))
        cur.execute(
            "INSERT INTO alert_occurrences (alert_id, job_id, seen_at, severity)"
            " VALUES (%s, 'r2', now() at time zone 'utc', 'high')",
            (seen_id,),
        )
    cleanup = _in_thread(lambda: maintenance.delete_expired_alerts(utcnow() - timedelta(days=retention), 100))
    _wait_for_a_lock_wait(database_url)
    forecast.commit()
    forecast.close()

    assert cleanup.result(timeout=30) == (1, 1)
    assert [a.subject for a in Alert.select()] == ["line:seen"]
    assert _sightings() == {"line:seen": 2}


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_forecast_that_sees_an_alert_the_cleanup_just_deleted_raises_it_anew(app, database_url):
    """The cleanup deleted an open alert (uncommitted) that a forecast had read as open: the
    forecast's refresh finds no row once the cleanup commits, so it opens a new alert, whose
    sightings point to it (with the foreign key gone, nothing else would stop an orphan)."""
    with database.atomic():
        store_alerts([_alert("line:raced")], job_id="r1")
    old_id = Alert.get().id
    cleanup = psycopg2.connect(database_url)
    with cleanup.cursor() as cur:
        cur.execute("DELETE FROM alerts WHERE id = %s", (old_id,))
        cur.execute("DELETE FROM alert_occurrences WHERE alert_id = %s", (old_id,))

    def forecast():
        with database.atomic():
            return store_alerts([_alert("line:raced")], job_id="r2")

    stored = _in_thread(forecast)
    _wait_for_a_lock_wait(database_url)
    cleanup.commit()
    cleanup.close()

    outcome = stored.result(timeout=30)
    assert (outcome.new, outcome.updated) == (1, 0) and len(outcome.created) == 1
    alert = Alert.get()
    assert alert.id != old_id and alert.job_id == "r2"
    assert _sightings() == {"line:raced": 1}


def _in_thread(call) -> Future:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


def _wait_for_a_lock_wait(database_url: str, seconds: float = 10) -> None:
    """Until some session of the test database waits on a row lock (the thread reached the held row)."""
    watcher = psycopg2.connect(database_url)
    watcher.autocommit = True
    deadline = time.monotonic() + seconds
    try:
        with watcher.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if cur.fetchone()[0]:
                    return
                time.sleep(0.01)
    finally:
        watcher.close()
    raise AssertionError("no session came to wait on the held row")
