"""Schedules API: list, pause, resume, run now; a paused schedule does not fire, across restarts."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from rq import Queue

from app.models import JobRun
from app.scheduling import PAUSED_KEY, template_id
from scheduler import ServiceScheduler
from tests.conftest import settings_env

ZSET = "rq:scheduler:scheduled_jobs"


@pytest.fixture
def make_scheduler(app, redis):
    return lambda: ServiceScheduler(app.config["SETTINGS"], redis)


def _schedules(client, **kwargs) -> dict[str, dict]:
    response = client.get("/api/schedules", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {s["name"]: s for s in response.get_json()["schedules"]}


def _due_slot(redis, name: str, minutes_ago: int = 1, before: datetime | None = None) -> datetime:
    """Make a slot due: `minutes_ago` whole minutes before now, or one minute before `before` (a
    different slot even when the clock crossed a minute since `before` was made)."""
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    slot = before - timedelta(minutes=1) if before is not None else now - timedelta(minutes=minutes_ago)
    redis.zadd(ZSET, {template_id(name): slot.timestamp()})
    return slot


def test_list_before_and_after_registration(client, make_scheduler):
    before = _schedules(client)
    assert list(before) == ["forecast", "daily-summary", "cleanup"]
    forecast = before["forecast"]
    assert (forecast["cron"], forecast["queue"], forecast["paused"], forecast["registered"]) == (
        "0 */2 * * *",
        "forecast",
        False,
        False,
    )
    assert forecast["next_run"] is None and forecast["last_run"] is None and forecast["last_status"] is None
    make_scheduler().register_schedules()
    after = _schedules(client)["daily-summary"]
    assert after["registered"] is True and after["next_run"].endswith("T08:00:00Z")


def test_pause_and_resume_need_the_token_and_a_known_schedule(client, auth, redis):
    assert client.post("/api/schedules/forecast/pause").status_code == 401
    assert client.post("/api/schedules/forecast/pause", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/api/schedules/forecast/run").status_code == 401
    response = client.post("/api/schedules/nope/pause", headers=auth)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    assert client.get("/api/schedules/forecast/pause", headers=auth).status_code == 405
    assert redis.smembers(PAUSED_KEY) == set()


def test_pause_and_resume_are_idempotent(client, auth, redis):
    first = client.post("/api/schedules/forecast/pause", headers=auth)
    assert first.status_code == 200
    assert (first.get_json()["paused"], first.get_json()["changed"]) == (True, True)
    second = client.post("/api/schedules/forecast/pause", headers=auth).get_json()
    assert (second["paused"], second["changed"]) == (True, False)
    assert {n: s["paused"] for n, s in _schedules(client).items()} == {
        "forecast": True,
        "daily-summary": False,
        "cleanup": False,
    }
    resumed = client.post("/api/schedules/forecast/resume", headers=auth).get_json()
    assert (resumed["paused"], resumed["changed"]) == (False, True)
    assert client.post("/api/schedules/forecast/resume", headers=auth).get_json()["changed"] is False
    assert redis.smembers(PAUSED_KEY) == set()


def test_paused_schedule_does_not_fire_and_says_so(client, auth, make_scheduler, redis, caplog):
    scheduler = make_scheduler()
    scheduler.register_schedules()
    client.post("/api/schedules/forecast/pause", headers=auth)
    slot = _due_slot(redis, "forecast")
    with caplog.at_level(logging.INFO, logger="scheduler"):
        scheduler.tick()
    assert Queue("forecast", connection=redis).count == 0
    skipped = JobRun.get()  # the paused slot leaves a trace in the history
    assert (skipped.status, skipped.error, skipped.slot) == ("skipped", "schedule paused", slot.replace(tzinfo=None))
    assert any("not run: schedule paused" in r.getMessage() for r in caplog.records)
    state = _schedules(client)["forecast"]
    assert state["paused"] is True
    assert datetime.fromisoformat(state["next_run"].replace("Z", "+00:00")) > slot  # it moved on to the next slot

    client.post("/api/schedules/forecast/resume", headers=auth)
    slot = _due_slot(redis, "forecast", minutes_ago=3)
    scheduler.tick()
    run = JobRun.get(JobRun.status == "queued")  # a real cron slot passed meanwhile is recorded as missed
    assert (run.job_name, run.trigger, run.slot) == ("forecast", "scheduled", slot.replace(tzinfo=None))
    assert _schedules(client)["forecast"]["last_run_id"] == run.id


def test_pause_only_stops_that_schedule(client, auth, make_scheduler, redis):
    scheduler = make_scheduler()
    scheduler.register_schedules()
    client.post("/api/schedules/forecast/pause", headers=auth)
    _due_slot(redis, "forecast")
    _due_slot(redis, "daily-summary")
    scheduler.tick()
    assert [r.job_name for r in JobRun.select().where(JobRun.status != "skipped")] == ["daily-summary"]
    assert [(r.job_name, r.error) for r in JobRun.select().where(JobRun.status == "skipped")] == [
        ("forecast", "schedule paused")
    ]


def test_pause_survives_a_scheduler_restart(client, auth, make_scheduler, redis):
    make_scheduler().register_schedules()
    client.post("/api/schedules/forecast/pause", headers=auth)
    restarted = make_scheduler()  # a new process's scheduler: registration keeps the pause
    assert restarted.register_schedules() == []
    _due_slot(redis, "forecast")
    restarted.tick()
    assert [r.status for r in JobRun.select()] == ["skipped"]
    assert _schedules(client)["forecast"]["paused"] is True


@pytest.mark.slow
def test_real_scheduler_process_skips_a_paused_schedule(client, auth, redis, settings_overrides, make_scheduler):
    make_scheduler().register_schedules()
    client.post("/api/schedules/forecast/pause", headers=auth)
    env = {**settings_env(settings_overrides), "LOG_LEVEL": "INFO"}

    def burst():
        result = subprocess.run([sys.executable, "scheduler.py", "--burst"], env=env, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        return result.stderr.decode() + result.stdout.decode()

    paused_slot = _due_slot(redis, "forecast")
    output = burst()
    assert "schedule paused" in output
    assert [(r.status, r.error) for r in JobRun.select()] == [("skipped", "schedule paused")]
    client.post("/api/schedules/forecast/resume", headers=auth)
    _due_slot(redis, "forecast", before=paused_slot)  # minutes_ago=2 was the paused slot when a minute turned
    burst()
    ran = JobRun.select().where(JobRun.status != "skipped")
    assert [(r.job_name, r.trigger) for r in ran] == [("forecast", "scheduled")]


def test_run_now_is_a_manual_trigger_with_409_on_overlap(client, auth, redis):
    client.post("/api/schedules/forecast/pause", headers=auth)  # running a paused schedule by hand is allowed
    response = client.post("/api/schedules/forecast/run", headers=auth)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued" and body["job_name"] == "forecast"
    assert response.headers["Location"].endswith(f"/api/jobs/forecast/{body['job_id']}")
    run = JobRun.get_by_id(body["job_id"])
    assert (run.trigger, run.status) == ("manual", "queued")
    assert Queue("forecast", connection=redis).job_ids == [body["job_id"]]
    conflict = client.post("/api/schedules/forecast/run", headers=auth)
    assert conflict.status_code == 409 and conflict.get_json()["error"]["active_job_id"] == body["job_id"]
    assert client.post("/api/jobs/forecast/trigger", headers=auth).status_code == 409  # the same overlap guard


def test_run_now_ignores_a_body_and_never_500s(client, auth):
    response = client.post(
        "/api/schedules/cleanup/run", headers=auth, data=b"\xff\xfe{not json", content_type="application/json"
    )
    assert response.status_code == 202


class TestReadAuth:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "api_read_auth": True}

    def test_list_needs_the_token(self, client, auth):
        assert client.get("/api/schedules").status_code == 401
        assert client.get("/api/schedules", headers=auth).status_code == 200


def test_openapi_documents_the_schedule_routes(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert paths["/api/schedules/{name}/pause"]["post"]["security"] == [{"bearer": []}]
    assert "409" in paths["/api/schedules/{name}/run"]["post"]["responses"]
    assert "/metrics" in paths and "/api/schedules" in paths
