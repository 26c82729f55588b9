"""Operational alerts end to end: real Redis and database, real worker and scheduler processes, a real
HTTP receiver (issue 14, point 3), and the states that must tell the truth (point 6).

- a run that failed for good is recorded once and posted by the scheduler process's loop;
- a failing receiver is retried with backoff, each attempt recorded, then given up, while runs go on;
- a stopped run, a killed worker (lost, its run abandoned) and an overdue slot each raise one event;
- the health summary lists problems or says all is well; schedules and health answer without Redis;
- a run waiting for its retry says when and which attempt comes next.
"""

from __future__ import annotations

import base64
import re
import signal
import time
from datetime import datetime, timedelta, timezone

import pytest

from app.core import ops_events, schedules
from app.core.ops_events import DeliveryStatus, EventKind
from app.models import OpsEvent, WebhookDelivery, utcnow
from tests.conftest import DASHBOARD_PASSWORD, DASHBOARD_USER
from tests.test_faults_worker import kill_tree
from tests.test_notify import WebhookServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres_only]  # events are plain inserts: the processes are tested

FAR_CRON = "0 0 1 1 *"  # once a year: keeps the schedules not under test out of the way


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


@pytest.fixture
def receiver():
    server = WebhookServer()
    yield server
    server.close()


# Settings of one test, for the test app and its processes alike (the app enqueues with its retry policy).
PER_TEST = {
    "test_run_failed_for_good_is_recorded_once_and_posted_by_the_scheduler": {
        "forecast_pipeline": "tests.pipelines:always_fail"
    },
    "test_a_failing_receiver_is_retried_and_recorded_and_never_blocks_runs": {
        "forecast_pipeline": "tests.pipelines:always_fail",
        "ops_delivery_backoff": 0.5,
        "ops_delivery_max_attempts": 3,
    },
    "test_a_stopped_run_is_reported": {"forecast_pipeline": "tests.pipelines:sleepy", "job_max_retries": 0},
    "test_a_killed_worker_is_lost_and_its_run_abandoned": {
        "forecast_pipeline": "tests.pipelines:sleepy",
        "job_max_retries": 0,
    },
    "test_a_run_waiting_for_its_retry_says_when": {
        "forecast_pipeline": "tests.pipelines:fail_twice",
        "job_max_retries": 3,
        "job_retry_delay": 600,
    },
}


@pytest.fixture
def settings_overrides(settings_overrides, receiver, request):
    return {
        **settings_overrides,
        "job_max_retries": 1,
        "ops_webhook_url": receiver.url,
        "scheduler_interval": 0.5,
        "forecast_cron": FAR_CRON,
        "daily_summary_cron": FAR_CRON,
        "cleanup_cron": FAR_CRON,
        # a dead worker is lost within seconds (busy: 1 + 2 s; idle: 2 + 2 s)
        "worker_heartbeat_interval": 1,
        "worker_abandoned_after": 2,
        "worker_maintenance_interval": 2,
        "log_level": "INFO",
        **PER_TEST.get(request.node.originalname, {}),
    }


def trigger(client, auth, job: str = "forecast") -> str:
    response = client.post(f"/api/jobs/{job}/trigger", headers=auth)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["job_id"]


def run_row(client, job_id: str, job: str = "forecast") -> dict:
    return client.get(f"/api/jobs/{job}/{job_id}").get_json()


def events(**where) -> list[OpsEvent]:
    query = OpsEvent.select().order_by(OpsEvent.id)
    for key, value in where.items():
        query = query.where(getattr(OpsEvent, key) == value)
    return list(query)


def settings_of(app, **update):
    return app.config["SETTINGS"].model_copy(update=update)


# --- runs -----------------------------------------------------------------------------------------


def test_run_failed_for_good_is_recorded_once_and_posted_by_the_scheduler(
    app, client, auth, start_process, settings_overrides, receiver
):
    start_process("-m", "workers")
    start_process("scheduler.py")
    job_id = trigger(client, auth)
    wait_for(lambda: run_row(client, job_id)["status"] == "failed")
    assert run_row(client, job_id)["attempts"] == 2  # retries exhausted: failed for good
    message = wait_for(lambda: receiver.messages())[0]
    assert message["event"]["kind"] == "run_failed" and message["event"]["run_id"] == job_id
    assert "failed for good" in message["text"] and job_id in message["text"] and "planned failure" in message["text"]
    assert message["blocks"][0]["type"] == "header"  # Slack's layout next to the structured event
    time.sleep(2)  # several more scheduler ticks: still one event, one post
    assert len(receiver.messages()) == 1
    [event] = events(run_id=job_id)
    assert event.kind == EventKind.RUN_FAILED.value and event.run_attempts == 2
    [delivery] = list(WebhookDelivery.select())
    assert delivery.status == DeliveryStatus.DELIVERED.value and delivery.attempts == 1
    assert delivery.delivered_at is not None and delivery.last_error is None
    assert delivery.target.startswith("http://127.0.0.1:") and "s3cr3t" not in delivery.target


def test_a_failing_receiver_is_retried_and_recorded_and_never_blocks_runs(
    app, client, auth, start_process, settings_overrides, receiver
):
    receiver.status = 500
    start_process("-m", "workers")
    start_process("scheduler.py")
    failing = trigger(client, auth)
    wait_for(lambda: run_row(client, failing)["status"] == "failed")
    wait_for(lambda: len(receiver.received) >= 1)
    report = trigger(client, auth, "daily-summary")  # runs on while the receiver fails
    wait_for(lambda: run_row(client, report, "daily-summary")["status"] == "finished", timeout=30)
    delivery = wait_for(
        lambda: WebhookDelivery.get_or_none(WebhookDelivery.status == DeliveryStatus.FAILED.value), timeout=30
    )
    assert delivery.attempts == 3 and "HTTP 500" in delivery.last_error and delivery.delivered_at is None
    assert len(receiver.received) == 3  # posted, retried twice with backoff, then given up
    assert len(events(run_id=failing)) == 1
    [listed] = client.get("/api/health/events?kind=run_failed").get_json()["events"]
    assert listed["run_id"] == failing and listed["deliveries"][0]["status"] == "failed"
    assert listed["deliveries"][0]["attempts"] == 3 and "HTTP 500" in listed["deliveries"][0]["last_error"]
    assert client.get("/api/health/events?kind=nope").status_code == 400
    assert client.get("/api/health/events?limit=0").status_code == 400
    summary = client.get("/api/health/summary").get_json()
    failing_lines = [p for p in summary["problems"] if p["kind"] == "webhook_failing"]
    assert failing_lines and "1 gave up" in failing_lines[0]["message"] and "HTTP 500" in failing_lines[0]["message"]


def test_backoff_doubles_and_is_capped(app):
    settings = settings_of(app, ops_delivery_backoff=30.0)
    assert [ops_events.backoff_seconds(settings, n) for n in (1, 2, 3, 10)] == [30.0, 60.0, 120.0, 3600.0]


@pytest.fixture
def sleepy_worker(start_process):
    return start_process("-m", "workers")


def test_a_stopped_run_is_reported(app, client, auth, sleepy_worker, receiver):
    job_id = trigger(client, auth)
    wait_for(lambda: run_row(client, job_id)["status"] == "started")
    assert client.post(f"/api/jobs/forecast/{job_id}/cancel", headers=auth).status_code == 202
    wait_for(lambda: run_row(client, job_id)["status"] == "stopped")
    counts = ops_events.ops_step(app.extensions["redis"], app.config["SETTINGS"], background=False)
    assert counts["runs"] == 1 and counts["delivered"] == 1
    [event] = events(run_id=job_id)
    assert event.kind == EventKind.RUN_STOPPED.value
    assert receiver.messages()[0]["event"]["kind"] == "run_stopped"
    assert ops_events.ops_step(app.extensions["redis"], app.config["SETTINGS"], background=False)["runs"] == 0


def test_a_killed_worker_is_lost_and_its_run_abandoned(app, client, auth, sleepy_worker, start_process, receiver):
    start_process("scheduler.py")  # watches the live workers from the start
    job_id = trigger(client, auth)
    wait_for(lambda: run_row(client, job_id)["status"] == "started")
    [name] = [w["name"] for w in client.get("/api/jobs/stats").get_json()["workers"]["workers"]]
    kill_tree(sleepy_worker.pid)
    sleepy_worker.wait(10)
    killed_at = time.monotonic()

    # Past its heartbeat deadline (1 + 2 s) the dead worker is never shown busy: lost while RQ
    # still lists it, then from its event once RQ has dropped it.
    time.sleep(3.5)
    while time.monotonic() - killed_at < 8:
        states = {w["name"]: w["state"] for w in client.get("/api/jobs/stats").get_json()["workers"]["workers"]}
        assert states.get(name, "lost") == "lost", states
        time.sleep(0.3)
    wait_for(lambda: events(kind=EventKind.WORKER_LOST.value), timeout=20)
    health = client.get("/api/health/summary").get_json()
    assert any(p["kind"] == "lost_worker" and p["subject"] == name for p in health["problems"]), health

    start_process("-m", "workers")  # its maintenance finds the run abandoned; the scheduler reconciles it
    wait_for(lambda: {m["event"]["kind"] for m in receiver.messages()} >= {"worker_lost", "run_abandoned"}, timeout=90)
    [abandoned] = events(kind=EventKind.RUN_ABANDONED.value)
    assert abandoned.run_id == job_id and "worker died" in abandoned.message
    [worker_event] = events(kind=EventKind.WORKER_LOST.value)
    assert worker_event.subject == name and job_id in worker_event.message
    time.sleep(2)
    assert len(events(kind=EventKind.WORKER_LOST.value)) == 1  # one event per worker death
    # RQ has forgotten the worker by now; the page still lists it as lost (from its event) for an hour.
    basic = base64.b64encode(f"{DASHBOARD_USER}:{DASHBOARD_PASSWORD}".encode()).decode()
    workers = client.get("/dashboard/data.json", headers={"Authorization": f"Basic {basic}"}).get_json()["workers"]
    assert [w["state"] for w in workers if w["name"] == name] == ["lost"]


def test_a_cleanly_stopped_worker_is_not_lost(app, redis, start_process):
    settings = app.config["SETTINGS"]
    worker = start_process("-m", "workers")
    wait_for(
        lambda: ops_events.ops_step(redis, settings, background=False) and redis.hlen(ops_events.KNOWN_WORKERS_KEY)
    )
    time.sleep(2)  # listening (a SIGTERM while it starts up is not what this test is about)
    worker.send_signal(signal.SIGTERM)  # warm shutdown: RQ records the worker's death
    worker.wait(30)
    ops_events.ops_step(redis, settings, background=False)
    assert events(kind=EventKind.WORKER_LOST.value) == [] and redis.hlen(ops_events.KNOWN_WORKERS_KEY) == 0


# --- schedules ------------------------------------------------------------------------------------


def test_an_overdue_slot_is_reported_once_and_not_while_paused(app, redis, receiver):
    settings = settings_of(app, cleanup_cron="* * * * *", ops_overdue_grace=0)
    start = utcnow().replace(second=5, microsecond=0)

    def step(minutes: float) -> dict:
        return ops_events.ops_step(redis, settings, now=start + timedelta(minutes=minutes), background=False)

    assert step(0)["overdue"] == 0  # the watch starts: slots before it are never reported
    assert step(2)["overdue"] == 1
    assert step(2.5)["overdue"] == 0  # the same slot: one event
    [event] = events(kind=EventKind.SCHEDULE_OVERDUE.value)
    slot = (start + timedelta(minutes=2)).replace(second=0)
    assert event.subject == "cleanup" and f"{slot:%H:%M} UTC slot" in event.message
    assert receiver.messages()[0]["event"]["details"]["slot"] == slot.isoformat() + "Z"

    schedules.set_paused(redis, "cleanup", True)
    assert step(4)["overdue"] == 0  # paused: its slots are skipped on purpose
    schedules.set_paused(redis, "cleanup", False)

    from app import runs

    ran = (start + timedelta(minutes=6)).replace(second=0)
    runs.enqueue_run("cleanup", redis=redis, settings=settings, trigger="scheduled", slot=ran)
    assert step(6)["overdue"] == 0  # a run is recorded for the slot
    assert step(7)["overdue"] == 1


def test_a_changed_cron_restarts_the_watch(app, redis):
    start = utcnow().replace(second=5, microsecond=0)
    every_minute = settings_of(app, cleanup_cron="* * * * *", ops_overdue_grace=0)
    ops_events.ops_step(redis, every_minute, now=start, background=False)
    every_two = settings_of(app, cleanup_cron="*/2 * * * *", ops_overdue_grace=0)
    assert ops_events.ops_step(redis, every_two, now=start + timedelta(minutes=1), background=False)["overdue"] == 0


# --- health and states ----------------------------------------------------------------------------


def test_health_summary_names_each_problem_then_all_good(app, client, redis, start_process):
    summary = client.get("/api/health/summary").get_json()
    assert summary["ok"] is False and summary["checks"] == {"redis": "ok", "database": "ok"}
    kinds = sorted(p["kind"] for p in summary["problems"])
    assert kinds == ["no_worker"] * 4 + ["scheduler_not_running"]
    assert {p["subject"] for p in summary["problems"] if p["kind"] == "no_worker"} == {
        "forecast",
        "reports",
        "maintenance",
        "default",
    }
    start_process("-m", "workers")
    ops_events.ops_step(redis, app.config["SETTINGS"], background=False)  # what a running scheduler does
    summary = wait_for(lambda: (s := client.get("/api/health/summary").get_json())["ok"] and s, timeout=30)
    assert summary["problems"] == [] and summary["status"] == "ok"


def test_schedules_and_health_answer_without_redis(settings_overrides, auth):
    from app import create_app
    from app.connections import db_session
    from app.models import create_tables
    from tests.servers import free_port

    app = create_app({**settings_overrides, "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with db_session():
        create_tables()
    client = app.test_client()
    response = client.get("/api/schedules", headers=auth)
    assert response.status_code == 200
    listed = {s["name"]: s for s in response.get_json()["schedules"]}
    assert listed["forecast"]["cron"] == FAR_CRON and listed["forecast"]["paused"] is None
    assert listed["forecast"]["next_run"].startswith(f"{datetime.now(timezone.utc).year + 1}-01-01T00:00")
    assert "unknown (Redis unavailable)" in listed["forecast"]["state_note"]
    summary = client.get("/api/health/summary", headers=auth).get_json()
    assert summary["checks"]["database"] == "ok" and summary["checks"]["redis"].startswith("down")
    assert [p["kind"] for p in summary["problems"]] == ["redis_unavailable"]
    # pausing needs Redis: refused with a clear 503, nothing changed
    refused = client.post("/api/schedules/forecast/pause", headers=auth)
    assert refused.status_code == 503 and refused.get_json()["error"]["code"] == "redis_unavailable"


def test_health_summary_reports_the_database_down(settings_overrides, redis_url):
    from app import create_app

    app = create_app({**settings_overrides, "database_url": "postgresql://nobody@127.0.0.1:1/none"})
    summary = app.test_client().get("/api/health/summary").get_json()
    assert summary["checks"]["redis"] == "ok" and summary["checks"]["database"].startswith("down")
    assert "database_unavailable" in [p["kind"] for p in summary["problems"]]


def test_a_run_waiting_for_its_retry_says_when(app, client, auth, start_process):
    start_process("-m", "workers")
    job_id = trigger(client, auth)
    body = wait_for(lambda: (row := run_row(client, job_id))["status"] == "scheduled" and row)
    assert re.fullmatch(r"retrying at \d\d:\d\d UTC \(attempt 2 of 4\)", body["state_detail"]), body["state_detail"]
    due = datetime.fromisoformat(body["next_retry_at"].replace("Z", "+00:00"))
    assert abs((due - datetime.now(timezone.utc)).total_seconds() - 600) < 60
    assert body["state_detail"].startswith(f"retrying at {due:%H:%M}")
    listed = client.get("/api/jobs/forecast/history").get_json()["runs"][0]
    assert listed["state_detail"] == body["state_detail"]
    finished = [r for r in client.get("/api/jobs/forecast/history").get_json()["runs"] if r["status"] != "scheduled"]
    assert all("state_detail" not in r for r in finished)


def test_run_event_kinds():
    assert ops_events.run_event_kind("failed", "RuntimeError: boom") is EventKind.RUN_FAILED
    assert ops_events.run_event_kind("failed", "abandoned: its worker died") is EventKind.RUN_ABANDONED
    assert ops_events.run_event_kind("failed", "lost: the job vanished from Redis") is EventKind.RUN_ABANDONED
    assert ops_events.run_event_kind("stopped", "stopped by request") is EventKind.RUN_STOPPED
    assert ops_events.run_event_kind("finished", None) is None
    assert ops_events.run_event_kind("scheduled", "abandoned: its worker died; retrying") is None
