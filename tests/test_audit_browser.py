"""Roles and audit in a real headless Chromium: a viewer sees no action control, and the audit
page lists what an operator just did in the browser.

Same set-up as tests/test_dashboard_browser.py (werkzeug on a loopback port, real Redis,
SQLite); skipped like it when Chromium or Playwright is missing, unless REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import pytest

from tests.test_dashboard_browser import browser, live_server, pytestmark  # noqa: F401 (fixtures, marks)
from tests.test_roles import (
    OPERATE_TOKEN,
    OPERATOR,
    OPERATOR_PASSWORD,
    VIEWER,
    VIEWER_PASSWORD,
    bearer,
    tokens_setting,
    users_setting,
)

try:
    from playwright.sync_api import expect
except ImportError:
    expect = None


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'browser.db'}"


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "dashboard_users": users_setting(), "api_tokens": tokens_setting()}


@pytest.fixture
def open_as(browser, live_server):  # noqa: F811 (fixtures imported above)
    contexts, problems = [], []

    def open_(user: str, password: str, path: str = "/dashboard/"):
        context = browser.new_context(
            http_credentials={"username": user, "password": password}, viewport={"width": 1400, "height": 1000}
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: (
                problems.append(f"console: {msg.text}")
                if msg.type == "error" and ("Content Security Policy" in msg.text or "Refused" in msg.text)
                else None
            ),
        )
        page.goto(live_server + path)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not problems, problems


def test_viewer_sees_no_action_and_the_audit_page_lists_an_operators_action(open_as, client):
    run_id = client.post("/api/jobs/forecast/trigger", headers=bearer(OPERATE_TOKEN)).get_json()["job_id"]

    operator = open_as(OPERATOR, OPERATOR_PASSWORD)
    operator.wait_for_selector("#dashboard[data-loaded='true']")
    expect(operator.locator(f"#card-runs button[data-action][data-run='{run_id}']").first).to_be_visible()
    operator.locator("#card-schedules tr[data-schedule='forecast'] button[data-action='pause']").click()
    expect(
        operator.locator("#card-schedules tr[data-schedule='forecast'] button[data-action='resume']")
    ).to_be_visible()

    viewer = open_as(VIEWER, VIEWER_PASSWORD)
    viewer.wait_for_selector("#dashboard[data-loaded='true']")
    expect(viewer.locator(f"#card-runs tr[data-run='{run_id}']").first).to_be_visible()  # the data is there
    expect(viewer.locator("#card-schedules tbody tr")).to_have_count(3)
    buttons = viewer.locator("#dashboard button[data-action], #dashboard button[data-schedule]")
    assert buttons.count() > 0  # drawn by the same script...
    assert not any(buttons.nth(i).is_visible() for i in range(buttons.count()))  # ...but never shown

    viewer.locator("#audit-link").click()
    viewer.wait_for_url("**/dashboard/audit")
    row = viewer.locator("#audit-table tbody tr", has_text="schedule.pause")
    expect(row).to_have_count(1)
    for text in (OPERATOR, "operator", "schedule:forecast", "ok", "dashboard", "127.0.0.1"):
        expect(row).to_contain_text(text)
    expect(viewer.locator("#audit-table tbody tr", has_text="run.trigger")).to_contain_text("deployer")

    viewer.locator("#audit-filters select[name='source']").select_option("api")
    viewer.locator("#audit-filters button[type='submit']").click()
    expect(viewer.locator("#audit-table tbody tr")).to_have_count(1)
    expect(viewer.locator("#audit-table tbody tr")).to_contain_text("run.trigger")


def test_screenshots_audit(open_as, client, runner, redis, tmp_path):
    """`make screenshots`: the audit page after a realistic mix of actions and refusals."""
    import os
    from pathlib import Path

    from tests.test_dashboard import SAME_ORIGIN, basic, enqueue_never_run
    from tests.test_roles import READ_TOKEN

    operator = {**basic(OPERATOR, OPERATOR_PASSWORD), **SAME_ORIGIN}
    viewer = {**basic(VIEWER, VIEWER_PASSWORD), **SAME_ORIGIN}
    run_id = client.post("/api/jobs/forecast/trigger", headers=bearer(OPERATE_TOKEN)).get_json()["job_id"]
    client.post("/api/jobs/forecast/trigger", headers=bearer(OPERATE_TOKEN))  # 409: one is queued
    client.post("/dashboard/schedules/cleanup/pause", headers=operator)
    client.post("/dashboard/schedules/cleanup/pause", headers=viewer)  # 403
    client.post("/api/schedules/forecast/pause", headers=bearer(READ_TOKEN))  # 403
    client.post(f"/dashboard/runs/{run_id}/cancel", headers=operator)
    job = enqueue_never_run(redis, queue="default")
    client.post(f"/dashboard/rq/job/{job.id}/delete", headers=operator)
    assert runner.invoke(args=["trigger", "daily-summary"]).exit_code == 0
    client.post("/dashboard/schedules/cleanup/resume", headers=operator)

    page = open_as(VIEWER, VIEWER_PASSWORD, "/dashboard/audit")
    expect(page.locator("#audit-table tbody tr")).to_have_count(9)
    expect(page.locator("#audit-table tbody tr", has_text="cli:")).to_contain_text("run.trigger")
    expect(page.locator("#audit-table tbody tr.outcome-refused, #audit-table td.outcome-refused")).to_have_count(3)
    out = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out / "audit.png"), full_page=True)
