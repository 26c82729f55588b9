"""Redis restarts and scheduler failover with real worker and scheduler processes.

Every schedule slot in the observed window must have exactly one row: run once, skipped
because a run was active, or recorded as missed and caught up; none lost, none doubled.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest

from app.forecast.demo import seed_demo
from app.models import JobRun
from tests.servers import RedisServer
from tests.test_faults_worker import kill_tree
from tests.test_job_policies import wait_for
from tests.test_jobs_api import trigger

pytestmark = pytest.mark.slow
# Seconds-resolution cron (7 fields: second first): a slot every second, so the windows of 20+
# slots these tests watch take ~20 s, not ~45 s (the lock TTL and poll interval are short too).
EVERY_SECOND = "* * * * * * *"


@pytest.fixture
def aof_redis():
    server = RedisServer(appendonly=True).start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(aof_redis):
    return aof_redis.url


@pytest.fixture
def settings_overrides(settings_overrides):
    return {
        **settings_overrides,
        "daily_summary_cron": EVERY_SECOND,
        "scheduler_interval": 0.5,
        "scheduler_lock_ttl": 1,
        "forecast_pipeline": "tests.pipelines:slow_first_attempt",
        "worker_heartbeat_interval": 1,
        "worker_abandoned_after": 2,
        "worker_maintenance_interval": 2,
        "log_level": "INFO",
    }


def scheduled_rows(job_name="daily-summary"):
    return list(
        JobRun.select().where((JobRun.job_name == job_name) & (JobRun.trigger == "scheduled")).order_by(JobRun.slot)
    )


def assert_every_slot_once(rows, step=timedelta(seconds=1)):
    slots = [r.slot for r in rows]
    assert len(slots) == len(set(slots)), "a slot has two rows"
    gaps = [b - a for a, b in zip(slots, slots[1:])]
    assert all(gap == step for gap in gaps), f"slots missing between {slots[0]} and {slots[-1]}: {gaps}"
    for row in rows:
        assert row.status in ("finished", "skipped", "queued", "started"), (row.id, row.status, row.error)
        assert row.attempts <= 1, (row.id, row.attempts)


def test_redis_restart_keeps_queued_runs_and_every_slot(client, auth, start_process, aof_redis):
    seed_demo()
    worker = start_process("-m", "workers", env_extra={"TEST_PIPELINE_SLEEP": "8"})
    scheduler = start_process("scheduler.py")
    wait_for(lambda: len(scheduled_rows()) >= 2, timeout=30)
    forecast = trigger(client, auth).get_json()["job_id"]
    wait_for(lambda: JobRun.get_by_id(forecast).status == "started")
    cleanup = trigger(client, auth, job="cleanup").get_json()["job_id"]  # queued behind the busy worker

    aof_redis.stop()
    outage_started = time.monotonic()
    time.sleep(3)
    aof_redis.start()
    print(f"Redis down for {time.monotonic() - outage_started:.1f}s")

    for run_id in (forecast, cleanup):
        wait_for(lambda: JobRun.get_by_id(run_id).status == "finished", timeout=60)
    before = len(scheduled_rows())
    wait_for(lambda: len(scheduled_rows()) >= before + 3, timeout=30)  # the schedule goes on
    assert worker.poll() is None and scheduler.poll() is None, "processes must reconnect, not exit"
    scheduler.send_signal(signal.SIGTERM)
    scheduler.wait(10)
    rows = scheduled_rows()
    assert_every_slot_once(rows)
    missed = [r for r in rows if r.error and r.error.startswith("missed")]
    ran = [r for r in rows if r.status == "finished"]
    print(f"slots: {len(rows)}, ran: {len(ran)}, missed during outage and recorded: {len(missed)}")
    assert JobRun.get_by_id(forecast).attempts == 1


def test_two_schedulers_fire_each_slot_once_and_hand_over(client, start_process):
    first = start_process("scheduler.py")
    second = start_process("scheduler.py")
    start_process("-m", "workers")
    wait_for(lambda: len(scheduled_rows()) >= 8, timeout=60)
    kill_tree(first.pid)  # the active one, or the standby: either way the other must carry on
    killed_at_rows = len(scheduled_rows())
    wait_for(lambda: len(scheduled_rows()) >= max(22, killed_at_rows + 8), timeout=90)
    second.send_signal(signal.SIGTERM)
    second.wait(10)
    rows = scheduled_rows()
    assert_every_slot_once(rows)
    finished = [r for r in rows if r.status == "finished"]
    lags = sorted((r.enqueued_at - r.slot).total_seconds() for r in rows)
    print(
        f"slots: {len(rows)}, finished: {len(finished)}, skipped: {len(rows) - len(finished)}, "
        f"firing lag max {lags[-1]:.2f}s"
    )
    assert len(rows) >= 20
    assert lags[-1] <= 0.5 + 1 + 1.5  # poll interval + lock TTL, plus slack for a loaded machine


@pytest.fixture
def database_url(postgres_server):
    """These tests take ~20-40 s each: run them once, on the production database."""
    from tests.conftest import _reset_postgres

    _reset_postgres(postgres_server.url)
    return postgres_server.url
