"""What each job leaves in the database, run by a real worker."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.alert_store import store_alerts
from app.connections import database
from app.models import Alert, DailySummary, JobRun, utcnow
from tests.test_jobs_api import trigger


def _alert(subject, severity="high", type_="capacity_warning"):
    return {
        "type": type_,
        "severity": severity,
        "title": "t",
        "message": "m",
        "subject": subject,
        "fingerprint": f"{type_}|{subject}|w",
    }


def test_builtin_forecast_on_demo_data_raises_high_and_medium(client, auth, run_worker, runner):
    assert "seeded 3 lines" in runner.invoke(args=["seed-demo"]).output
    job_id = trigger(client, auth).get_json()["job_id"]
    run_worker()
    result = client.get(f"/api/jobs/forecast/{job_id}").get_json()["result"]
    assert result["alerts_generated"] >= 2
    assert result["summary"]["high_severity"] >= 1 and result["summary"]["medium_severity"] >= 1
    stored = {(a.type, a.severity) for a in Alert.select().where(Alert.job_id == job_id)}
    assert {("capacity_warning", "high"), ("demand_spike", "medium")} <= stored


def test_seed_demo_if_empty_keeps_existing_data(runner):
    runner.invoke(args=["seed-demo"])
    assert "not seeded" in runner.invoke(args=["seed-demo", "--if-empty"]).output


def test_daily_summary_reports_yesterday_and_replaces_on_rerun(client, auth, run_worker):
    yesterday = datetime.now(timezone.utc).date() - timedelta(days=1)
    noon = datetime.combine(yesterday, datetime.min.time()) + timedelta(hours=12)
    with database.atomic():
        store_alerts([_alert("line:A"), _alert("item:B", "medium", "demand_spike")], job_id="x")
        Alert.update(created_at=noon).execute()
        store_alerts([_alert("line:today")], job_id="y")  # today: not in yesterday's report
    first = trigger(client, auth, job="daily-summary").get_json()["job_id"]
    run_worker()
    report = client.get(f"/api/jobs/daily-summary/{first}").get_json()["result"]
    assert report["date"] == yesterday.isoformat()
    assert report["alerts"]["total"] == 2
    assert report["alerts"]["by_type"] == {"capacity_warning": 1, "demand_spike": 1}
    assert report["alerts"]["by_severity"] == {"high": 1, "medium": 1}
    assert report["alerts"]["by_source"] == {"scheduled_job": 2}
    trigger(client, auth, job="daily-summary")
    run_worker()
    assert DailySummary.select().count() == 1
    assert DailySummary.get().report["alerts"]["total"] == 2


class TestCleanup:
    def test_deletes_only_expired_alerts_and_old_ended_runs(self, client, auth, run_worker, app):
        settings = app.config["SETTINGS"]
        old = utcnow() - timedelta(days=settings.alert_retention_days + 1)
        recent = utcnow() - timedelta(days=settings.alert_retention_days - 1)
        with database.atomic():
            store_alerts([_alert(f"line:{i}") for i in range(7)], job_id="x")
            ids = [a.id for a in Alert.select().order_by(Alert.id)]
            Alert.update(created_at=old, last_seen_at=old).where(Alert.id.in_(ids[:5])).execute()
            Alert.update(created_at=recent, last_seen_at=recent).where(Alert.id.in_(ids[5:])).execute()
            JobRun.create(
                id="old-run",
                job_name="forecast",
                queue="forecast",
                trigger="manual",
                status="finished",
                enqueued_at=old,
            )
        job_id = trigger(client, auth, job="cleanup").get_json()["job_id"]
        run_worker()
        result = client.get(f"/api/jobs/cleanup/{job_id}").get_json()["result"]
        assert result["deleted_alerts"] == 5 and result["deleted_runs"] == 1
        assert sorted(a.id for a in Alert.select()) == ids[5:]
        assert JobRun.get_or_none(JobRun.id == "old-run") is None
        assert JobRun.get_by_id(job_id).status == "finished"
