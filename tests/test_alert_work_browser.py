"""Alert pages in a real Chromium: from the home card to the alert, acknowledge and resolve with a
comment, feedback beside the buttons, the state filter."""

from __future__ import annotations

import pytest

from tests.test_alert_work import _candidate, _store
from tests.test_dashboard_browser import (  # noqa: F401 - fixtures
    _MISSING,
    browser,
    database_url,
    live_server,
    open_page,
    settings_overrides,
    wait_loaded,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_MISSING), reason=_MISSING or "")]


@pytest.fixture
def operator_page(browser, live_server):
    """A signed-in page that answers the comment prompts itself (open_page accepts every dialog
    with an empty answer) and records script errors and CSP violations, which fail the test."""
    from tests.conftest import DASHBOARD_PASSWORD, DASHBOARD_USER

    context = browser.new_context(http_credentials={"username": DASHBOARD_USER, "password": DASHBOARD_PASSWORD})
    problems: list[str] = []
    answers: list[str | None] = []
    page = context.new_page()
    page.set_default_timeout(15000)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on(
        "dialog",
        lambda dialog: dialog.accept(answers.pop(0)) if answers[0] is not None else (answers.pop(0), dialog.dismiss()),
    )
    page.answers = answers
    page.base = live_server
    yield page
    context.close()
    assert not problems, problems


def test_acknowledge_and_resolve_from_the_alert_page(operator_page, client, auth):
    alert = _store("run-1", _candidate("L7")).created[0].id
    _store("run-2", _candidate("L7"))
    page = operator_page
    page.goto(page.base + "/dashboard/")
    wait_loaded(page)
    row = page.locator(f"#card-alerts tr[data-alert='{alert}']")
    assert row.get_attribute("data-state") == "open"
    assert "run-2" in row.inner_text()  # the latest run that saw it
    row.locator("a", has_text="L7 over capacity").click()
    page.wait_for_selector("#alert-page[data-ready='true']")
    assert page.locator("#sightings tbody tr").count() == 2
    page.answers.append("taking a look")
    page.click(".alert-actions button[data-action='acknowledge']")
    feedback = page.locator(".alert-actions .feedback")
    feedback.filter(has_text=f"alert {alert} acknowledged").wait_for()
    assert page.locator("#alert-state").inner_text() == "acknowledged"
    # the feedback sits next to the button that asked for it
    button_box = page.locator(".alert-actions button[data-action='resolve']").bounding_box()
    feedback_box = feedback.bounding_box()
    assert abs(feedback_box["y"] - button_box["y"]) < 40
    page.answers.append("shift added")
    page.click(".alert-actions button[data-action='resolve']")
    feedback.filter(has_text=f"alert {alert} resolved").wait_for()
    body = client.get(f"/api/alerts/{alert}", headers=auth).get_json()
    assert body["state"] == "resolved" and body["comment"] == "shift added"
    assert body["acknowledged_by"].startswith("dashboard:") and body["resolved_by"].startswith("dashboard:")


def test_the_alert_list_filters_by_state(operator_page, client, auth):
    open_alert = _store("r", _candidate("A")).created[0].id
    closed = _store("r", _candidate("B")).created[0].id
    client.post(f"/api/alerts/{closed}/resolve", headers=auth)
    page = operator_page
    page.goto(page.base + "/dashboard/alerts")
    page.wait_for_selector("#alerts-page[data-ready='true']")
    assert page.locator("#alert-list tbody tr").count() == 2
    page.select_option("select[name=state]", "open")
    page.click(".filters button[type=submit]")
    page.wait_for_url("**state=open**")
    rows = page.locator("#alert-list tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-alert") == str(open_alert)
    page.answers.append(None)  # changed their mind: nothing is posted
    page.click(f"tr[data-alert='{open_alert}'] button[data-action='resolve']")
    page.wait_for_function("() => true")
    assert page.answers == []
    assert client.get(f"/api/alerts/{open_alert}", headers=auth).get_json()["state"] == "open"


def test_the_cards_show_last_success_failure_and_skipped_slots(operator_page):
    from datetime import timedelta

    from app.connections import db_session
    from app.models import JobRun, utcnow
    from app.runs import record_skipped_slot

    now = utcnow()
    with db_session():
        for run_id, status in (("good-run", "finished"), ("bad-run", "failed")):
            JobRun.create(
                id=run_id,
                job_name="forecast",
                queue="forecast",
                trigger="manual",
                status=status,
                enqueued_at=now,
                started_at=now,
                ended_at=now,
                attempts=1,
            )
    record_skipped_slot(
        "forecast", (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0), "schedule paused"
    )
    page = operator_page
    page.goto(page.base + "/dashboard/")
    wait_loaded(page)
    outcomes = page.locator("#card-jobs tr[data-job='forecast'] td.outcomes")
    assert "good-run" in outcomes.inner_text() and "bad-run" in outcomes.inner_text()
    skips = page.locator("#card-schedules tr[data-schedule='forecast'] td.skips")
    assert skips.get_attribute("data-skipped") == "1" and "schedule paused" in skips.inner_text()
