"""Trigger / status / history / cancel through the API, with real Redis, database and worker."""

from __future__ import annotations

import pytest

from app.models import Alert, JobRun


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "forecast_pipeline": "tests.pipelines:two_alerts"}


def trigger(client, auth, job="forecast", **kwargs):
    return client.post(f"/api/jobs/{job}/trigger", headers=auth, **kwargs)


def test_trigger_returns_202_with_job_id_and_row(client, auth):
    response = trigger(client, auth)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and len(body["job_id"]) == 32
    assert response.headers["Location"].endswith(f"/api/jobs/forecast/{body['job_id']}")
    status = client.get(f"/api/jobs/forecast/{body['job_id']}").get_json()
    assert status["status"] == "queued" and status["attempts"] == 0 and status["trigger"] == "manual"


def test_forecast_run_finishes_and_stores_alerts(client, auth, run_worker):
    job_id = trigger(client, auth).get_json()["job_id"]
    run_worker()
    status = client.get(f"/api/jobs/forecast/{job_id}").get_json()
    assert status["status"] == "finished", status
    assert status["attempts"] == 1
    assert status["result"]["alerts_generated"] == 2
    assert status["result"]["summary"] == {"high_severity": 1, "medium_severity": 1, "low_severity": 0}
    assert status["started_at"] and status["ended_at"] and status["enqueued_at"].endswith("Z")
    alerts = client.get("/api/alerts?source=scheduled_job").get_json()["alerts"]
    assert {(a["type"], a["severity"]) for a in alerts} == {("capacity_warning", "high"), ("demand_spike", "medium")}
    assert all(a["job_id"] == job_id for a in alerts)


def test_second_run_updates_open_alerts_instead_of_duplicating(client, auth, run_worker):
    trigger(client, auth)
    run_worker()
    second = trigger(client, auth).get_json()["job_id"]
    run_worker()
    result = client.get(f"/api/jobs/forecast/{second}").get_json()["result"]
    assert result["new_alerts"] == 0 and result["updated_alerts"] == 2
    assert Alert.select().count() == 2
    assert {a.occurrences for a in Alert.select()} == {2}


def test_trigger_while_queued_is_409_with_active_id(client, auth):
    first = trigger(client, auth).get_json()["job_id"]
    response = trigger(client, auth)
    assert response.status_code == 409
    assert response.get_json()["error"]["active_job_id"] == first
    assert JobRun.select().count() == 1


def test_force_queues_behind_active_run(client, auth, run_worker):
    first = trigger(client, auth).get_json()["job_id"]
    forced = trigger(client, auth, json={"force": True})
    assert forced.status_code == 202
    assert forced.get_json()["waits_for"] == first
    assert trigger(client, auth).get_json()["error"]["active_job_id"] == forced.get_json()["job_id"]
    run_worker()
    runs = {r.id: r for r in JobRun.select()}
    assert runs[first].status == runs[forced.get_json()["job_id"]].status == "finished"
    assert runs[first].ended_at <= runs[forced.get_json()["job_id"]].started_at


def test_other_jobs_trigger_by_name_and_finish(client, auth, run_worker):
    ids = {name: trigger(client, auth, job=name).get_json()["job_id"] for name in ("daily-summary", "cleanup")}
    run_worker()
    for name, job_id in ids.items():
        body = client.get(f"/api/jobs/{name}/{job_id}").get_json()
        assert body["status"] == "finished", body
        assert body["queue"] == {"daily-summary": "reports", "cleanup": "maintenance"}[name]


def test_trigger_after_finish_is_accepted(client, auth, run_worker):
    trigger(client, auth)
    run_worker()
    assert trigger(client, auth).status_code == 202


def test_history_newest_first_with_filters_and_cursor(client, auth, run_worker):
    ids = []
    for _ in range(3):
        ids.append(trigger(client, auth).get_json()["job_id"])
        run_worker()
    page = client.get("/api/jobs/forecast/history?limit=2").get_json()
    assert [r["job_id"] for r in page["runs"]] == ids[::-1][:2]
    rest = client.get(f"/api/jobs/forecast/history?limit=2&cursor={page['next_cursor']}").get_json()
    assert [r["job_id"] for r in rest["runs"]] == [ids[0]] and rest["next_cursor"] is None
    assert client.get("/api/jobs/forecast/history?status=failed").get_json()["runs"] == []
    assert len(client.get("/api/jobs/forecast/history?trigger=manual").get_json()["runs"]) == 3
    assert client.get("/api/jobs/cleanup/history").get_json()["runs"] == []


def test_cancel_queued_run(client, auth, redis):
    job_id = trigger(client, auth).get_json()["job_id"]
    response = client.post(f"/api/jobs/forecast/{job_id}/cancel", headers=auth)
    assert response.status_code == 200 and response.get_json()["status"] == "canceled"
    assert client.get(f"/api/jobs/forecast/{job_id}").get_json()["status"] == "canceled"
    assert redis.llen("rq:queue:forecast") == 0
    assert trigger(client, auth).status_code == 202  # the job is free again


def test_cancel_finished_is_409_and_unknown_is_404(client, auth, run_worker):
    job_id = trigger(client, auth).get_json()["job_id"]
    run_worker()
    response = client.post(f"/api/jobs/forecast/{job_id}/cancel", headers=auth)
    assert response.status_code == 409 and response.get_json()["error"]["run_status"] == "finished"
    assert client.post("/api/jobs/forecast/nope123/cancel", headers=auth).status_code == 404


def test_status_survives_redis_result_expiry(client, auth, run_worker, redis):
    job_id = trigger(client, auth).get_json()["job_id"]
    run_worker()
    redis.delete(f"rq:job:{job_id}", f"rq:results:{job_id}")
    body = client.get(f"/api/jobs/forecast/{job_id}").get_json()
    assert body["status"] == "finished" and body["result"]["alerts_generated"] == 2


def test_stats_lists_tasks_queues_and_schedules(client, auth, run_worker):
    trigger(client, auth)
    run_worker()
    stats = client.get("/api/jobs/stats").get_json()
    assert set(stats["registered_tasks"]) == {
        "workers.jobs.run_scheduled_forecast",
        "workers.jobs.generate_daily_summary",
        "workers.jobs.cleanup_old_alerts",
    }
    assert set(stats["queues"]) == {"forecast", "reports", "maintenance", "default"}
    assert stats["last_24h"]["jobs"]["forecast"]["success"] == 1
    assert {s["name"]: s["cron"] for s in stats["schedules"]} == {
        "forecast": "0 */2 * * *",
        "daily-summary": "0 8 * * *",
        "cleanup": "0 0 * * 0",
    }


def test_a_run_that_outlives_its_job_still_blocks_overlap(client, auth, redis):
    """A fanned-out run's own RQ job finishes before the run does: the run still holds the job."""
    from rq.job import Job, JobStatus

    first = trigger(client, auth).get_json()["job_id"]
    Job.fetch(first, connection=redis).set_status(JobStatus.FINISHED)
    assert trigger(client, auth).get_json()["error"]["active_job_id"] == first
    JobRun.update(status="finished").where(JobRun.id == first).execute()
    assert trigger(client, auth).status_code == 202
