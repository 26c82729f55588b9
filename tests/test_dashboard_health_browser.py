"""The dashboard's health strip and truthful states in a real headless Chromium (issue 14, points 3 and 6).

Same setup as test_dashboard_browser.py (werkzeug on a loopback port, real Redis, real worker
and scheduler processes, SQLite): the strip lists problems or "all good", a run waiting for its
retry reads "retrying at", a killed worker reads "lost", the page keeps the database's parts
with Redis down, and the "updated" time turns into a warning when refreshes hang or fail.
"""

from __future__ import annotations

import re
import time

import pytest
from redis import Redis

from app.core import ops_events
from app.models import OpsEvent
from tests.servers import free_port
from tests.test_dashboard_browser import (  # noqa: F401 - fixtures
    browser,
    database_url,
    expect,
    live_server,
    open_page,
    pytestmark,
    run_status,
    trigger,
    wait_for,
    wait_loaded,
)
from tests.test_faults_worker import kill_tree

PER_TEST = {
    "test_a_run_waiting_for_its_retry_reads_retrying_at": {
        "forecast_pipeline": "tests.pipelines:fail_twice",
        "job_max_retries": 3,
        "job_retry_delay": 600,
    },
    "test_a_killed_worker_reads_lost": {"forecast_pipeline": "tests.pipelines:sleepy", "job_max_retries": 0},
}


@pytest.fixture
def settings_overrides(settings_overrides, request):
    return {
        **settings_overrides,
        "forecast_pipeline": "tests.pipelines:two_alerts",
        "scheduler_interval": 0.5,
        "worker_heartbeat_interval": 1,
        "worker_abandoned_after": 2,
        "worker_maintenance_interval": 2,
        **PER_TEST.get(request.node.originalname, {}),
    }


@pytest.fixture
def fast_refresh(monkeypatch):
    """Refresh every 2 s; no successful refresh for 3 s (then the 2 s floor of a refresh) is stale."""
    import dashboard.views

    monkeypatch.setattr(dashboard.views, "REFRESH_SECONDS", 2)
    monkeypatch.setattr(dashboard.views, "STALE_SECONDS", 3)


def strip_kinds(page) -> list[str]:
    return page.locator("#health .health-lines li").evaluate_all("items => items.map(i => i.dataset.kind)")


def test_health_strip_lists_problems_then_says_all_good(open_page, app, redis, start_process, fast_refresh):  # noqa: F811 (the fixture, imported above)
    page = open_page()
    wait_loaded(page)
    assert sorted(strip_kinds(page)) == ["no_worker"] * 4 + ["scheduler_not_running"]
    expect(page.locator("#health li[data-kind='no_worker']").first).to_have_text(re.compile(r"no worker on queue \w+"))
    expect(page.locator("#health li.error").first).to_contain_text("no scheduler has run")
    start_process("-m", "workers")
    ops_events.ops_step(redis, app.config["SETTINGS"], background=False)  # what a running scheduler does
    expect(page.locator("#health li[data-kind='ok']")).to_have_text("all good", timeout=20000)
    assert page.locator("#health").get_attribute("data-ok") == "true"


def test_a_run_waiting_for_its_retry_reads_retrying_at(open_page, client, auth, start_process):  # noqa: F811 (the fixture, imported above)
    start_process("-m", "workers")
    job_id = trigger(client, auth)
    wait_for(lambda: run_status(client, job_id) == "scheduled")
    page = open_page()
    wait_loaded(page)
    row = page.locator(f"#card-runs tr[data-run='{job_id}']").first
    expect(row.locator(".state-detail")).to_have_text(re.compile(r"^retrying at \d\d:\d\d UTC \(attempt 2 of 4\)$"))
    assert "running" not in row.inner_text()  # waiting for its retry, not running
    expect(page.locator("#health li[data-kind='failed_runs']")).to_have_count(0)  # not failed (yet): retrying


def test_a_killed_worker_reads_lost(open_page, client, auth, start_process, fast_refresh):  # noqa: F811 (the fixture, imported above)
    start_process("scheduler.py")
    worker = start_process("-m", "workers")
    job_id = trigger(client, auth)
    wait_for(lambda: run_status(client, job_id) == "started")
    page = open_page()
    wait_loaded(page)
    row = page.locator("#card-workers tbody tr").first
    expect(row).to_contain_text("busy")
    name = row.get_attribute("data-worker")
    kill_tree(worker.pid)
    worker.wait(10)
    lost = page.locator(f"#card-workers tr[data-worker='{name}']")
    expect(lost.locator(".badge")).to_have_text("lost", timeout=30000)
    wait_for(lambda: OpsEvent.select().where(OpsEvent.kind == "worker_lost").count() == 1)
    expect(page.locator(f"#health li[data-kind='lost_worker']:has-text('{name}')")).to_have_count(1, timeout=20000)
    # never "busy" again, also once RQ has dropped the worker (the row then comes from its event)
    for _ in range(5):
        assert "busy" not in lost.inner_text()
        time.sleep(1)


def test_a_hung_then_failing_refresh_turns_updated_into_a_warning(open_page, fast_refresh):  # noqa: F811 (the fixture, imported above)
    page = open_page()
    wait_loaded(page)
    refreshed = page.locator("#refreshed")
    expect(refreshed).to_have_text(re.compile(r"^updated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    page.route("**/dashboard/data.json", lambda route: None)  # requests hang: never answered
    expect(refreshed).to_have_attribute("data-stale", "true", timeout=15000)
    expect(refreshed).to_contain_text("stale: no update for")
    expect(page.locator("#banner")).to_contain_text("no answer in")
    page.unroute("**/dashboard/data.json")
    expect(refreshed).to_have_attribute("data-stale", "false", timeout=15000)
    page.route("**/dashboard/data.json", lambda route: route.abort())  # requests fail outright
    expect(refreshed).to_have_attribute("data-stale", "true", timeout=15000)
    expect(refreshed).to_have_class(re.compile(r"\bstale\b"))


def test_with_redis_down_the_page_keeps_the_database_parts(open_page, app, client, auth, start_process):  # noqa: F811 (the fixture, imported above)
    start_process("-m", "workers")
    job_id = trigger(client, auth)
    wait_for(lambda: run_status(client, job_id) == "finished")
    app.extensions["redis"] = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=2)
    page = open_page()
    wait_loaded(page)
    expect(page.locator("#health li[data-kind='redis_unavailable']")).to_contain_text("Redis unavailable")
    expect(page.locator(f"#card-runs tr[data-run='{job_id}']").first).to_contain_text("finished")
    expect(page.locator("#card-alerts tbody tr")).to_have_count(2)
    expect(page.locator("#card-queues .unavailable")).to_have_text("Redis unavailable: not shown.")
    expect(page.locator("#card-workers .unavailable")).to_have_text("Redis unavailable: not shown.")
    schedules = page.locator("#card-schedules tbody tr")
    expect(schedules).to_have_count(3)
    expect(schedules.first.locator(".badge.unknown")).to_have_text("unknown")
    expect(schedules.first).to_contain_text("unknown (Redis unavailable)")
    assert page.locator("#dashboard").get_attribute("data-unavailable") == "redis"
