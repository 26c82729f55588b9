"""rq-scheduler registration and firing: UTC cron, idempotent registration, one run per slot."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest
from rq import Queue
from rq.job import Job

from app.models import JobRun
from app.scheduling import next_fire_time, template_id
from scheduler import ServiceScheduler
from tests.conftest import settings_env

ZSET = "rq:scheduler:scheduled_jobs"


@pytest.fixture
def make_scheduler(app, redis):
    return lambda: ServiceScheduler(app.config["SETTINGS"], redis)


def test_registers_three_templates_with_cron_queue_and_no_expiry(make_scheduler, redis):
    assert set(make_scheduler().register_schedules()) == {"forecast", "daily-summary", "cleanup"}
    expected = {
        "forecast": ("0 */2 * * *", "forecast"),
        "daily-summary": ("0 8 * * *", "reports"),
        "cleanup": ("0 0 * * 0", "maintenance"),
    }
    assert {m.decode() for m in redis.zrange(ZSET, 0, -1)} == {template_id(n) for n in expected}
    for name, (cron, queue) in expected.items():
        job = Job.fetch(template_id(name), connection=redis)
        assert (job.meta["cron_string"], job.origin) == (cron, queue)
        assert redis.ttl(job.key) == -1  # never expires, whatever the result TTL


def test_registration_is_idempotent_across_restarts(make_scheduler, redis):
    make_scheduler().register_schedules()
    scores = dict(redis.zrange(ZSET, 0, -1, withscores=True))
    assert make_scheduler().register_schedules() == []
    assert dict(redis.zrange(ZSET, 0, -1, withscores=True)) == scores


def test_lost_template_is_restored(make_scheduler, redis):
    scheduler = make_scheduler()
    scheduler.register_schedules()
    redis.delete(f"rq:job:{template_id('forecast')}")
    redis.zrem(ZSET, template_id("forecast"))
    assert scheduler.register_schedules() == ["forecast"]
    assert redis.zscore(ZSET, template_id("forecast")) is not None


def test_next_run_times_are_utc(make_scheduler, redis):
    make_scheduler().register_schedules()
    now = datetime.now(timezone.utc)
    score = redis.zscore(ZSET, template_id("daily-summary"))
    fire = datetime.fromtimestamp(score, timezone.utc)
    assert (fire.hour, fire.minute) == (8, 0) and now < fire <= now + timedelta(days=1)


@pytest.mark.parametrize("tz", ["Asia/Tokyo", "America/New_York"])
def test_next_run_times_with_non_utc_host_timezone(settings_overrides, redis, app, tz):
    """The scheduler process itself, run with TZ set, registers UTC fire times."""
    env = settings_env(settings_overrides)
    env["TZ"] = tz
    result = subprocess.run([sys.executable, "scheduler.py", "--burst"], env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    now = datetime.now(timezone.utc)
    for name, cron in app.config["SETTINGS"].schedules.items():
        score = redis.zscore(ZSET, template_id(name))
        assert (
            score == next_fire_time(cron, now).timestamp()
            or score == next_fire_time(cron, now - timedelta(minutes=1)).timestamp()
        )
    fire = datetime.fromtimestamp(redis.zscore(ZSET, template_id("daily-summary")), timezone.utc)
    assert (fire.hour, fire.minute) == (8, 0)


def _make_due(redis, name, slot):
    redis.zadd(ZSET, {template_id(name): slot.timestamp()})


def test_due_template_enqueues_a_fresh_run_with_retry_policy(make_scheduler, redis, app):
    settings = app.config["SETTINGS"]
    scheduler = make_scheduler()
    scheduler.register_schedules()
    slot = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=1)
    _make_due(redis, "forecast", slot)
    scheduler.tick()
    run = JobRun.get((JobRun.job_name == "forecast") & (JobRun.slot == slot.replace(tzinfo=None)))
    assert (run.trigger, run.status, run.slot) == ("scheduled", "queued", slot.replace(tzinfo=None))
    job = Job.fetch(run.id, connection=redis)
    assert job.id != template_id("forecast") and job.retries_left == settings.job_max_retries == 3
    assert job.retry_intervals == [settings.job_retry_delay]
    assert Queue("forecast", connection=redis).job_ids == [run.id]
    assert redis.zscore(ZSET, template_id("forecast")) > datetime.now(timezone.utc).timestamp()


def test_two_schedulers_firing_the_same_slot_run_it_once(make_scheduler, redis):
    first, second = make_scheduler(), make_scheduler()
    first.register_schedules()
    slot = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=2)
    barrier = threading.Barrier(2)
    outcomes = []

    def fire(scheduler):
        barrier.wait()
        outcomes.append(scheduler.fire("forecast", "0 */2 * * *", slot))

    threads = [threading.Thread(target=fire, args=(s,)) for s in (first, second)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcomes, key=str) == [None, "queued"]
    assert JobRun.select().where(JobRun.status == "queued").count() == 1
    assert Queue("forecast", connection=redis).count == 1


def test_lock_held_by_another_scheduler_is_not_released(make_scheduler, redis):
    holder, other = make_scheduler(), make_scheduler()
    assert holder.acquire_lock()
    assert not other.acquire_lock()
    other._lock_acquired = True  # even if it thought it held it, it cannot delete another's lock
    other.remove_lock()
    assert redis.get("rq:scheduler_lock").decode() == holder.name


def test_firing_while_a_run_is_active_is_recorded_as_skipped(make_scheduler, client, auth, redis):
    manual = client.post("/api/jobs/forecast/trigger", headers=auth).get_json()["job_id"]
    scheduler = make_scheduler()
    scheduler.register_schedules()
    slot = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=1)
    assert scheduler.fire("forecast", "0 */2 * * *", slot) == "skipped"
    skipped = JobRun.get((JobRun.trigger == "scheduled") & (JobRun.slot == slot.replace(tzinfo=None)))
    assert skipped.status == "skipped" and manual in skipped.error
    assert Queue("forecast", connection=redis).job_ids == [manual]


def test_scheduler_wakes_for_a_fire_time_sooner_than_its_poll_interval(make_scheduler, redis):
    scheduler = make_scheduler()
    scheduler.register_schedules()
    soon = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    _make_due(redis, "forecast", soon)
    import time as _time

    assert scheduler._sleep_time(_time.monotonic()) <= 1.6
    redis.zadd(ZSET, {template_id("forecast"): (datetime.now(timezone.utc) + timedelta(hours=1)).timestamp()})
    redis.zadd(
        ZSET,
        {
            template_id(n): (datetime.now(timezone.utc) + timedelta(hours=1)).timestamp()
            for n in ("daily-summary", "cleanup")
        },
    )
    assert scheduler._sleep_time(_time.monotonic()) == pytest.approx(scheduler.settings.scheduler_interval, abs=0.1)
