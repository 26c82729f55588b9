"""The weekly cleanup keeps alerts that are still live: retention counts from when an alert was last seen.

An alert first raised long ago and seen again by a recent forecast is one open condition; deleting
it by `created_at` made the next forecast re-create it as new and notify it again (issue 11, point 11).
Run by a real worker, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

from app.alert_store import store_alerts
from app.connections import database
from app.models import Alert, utcnow
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
