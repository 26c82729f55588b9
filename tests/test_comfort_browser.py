"""The comfort of the pages in a real Chromium: the OpenAPI viewer renders, dark mode follows the system."""

from __future__ import annotations

import pytest

from tests.conftest import DASHBOARD_PASSWORD, DASHBOARD_USER
from tests.test_dashboard_browser import (  # noqa: F401 - fixtures
    _MISSING,
    browser,
    database_url,
    expect,
    live_server,
    open_page,
    settings_overrides,
    wait_loaded,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_MISSING), reason=_MISSING or "")]


def _luminance(rgb: str) -> float:
    red, green, blue = (int(part) for part in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def test_the_openapi_viewer_renders_every_route_without_csp_violations(open_page, client):
    page = open_page("/api/docs")
    assert page.last_response.status == 200
    page.wait_for_selector(".opblock")
    documented = client.get("/api/openapi.json").get_json()["paths"]
    operations = sum(
        len([m for m in item if m in ("get", "post", "put", "patch", "delete")]) for item in documented.values()
    )
    assert page.locator(".opblock").count() == operations
    assert page.locator(".opblock-summary-path", has_text="/api/jobs/{job_name}/trigger").count() == 1


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_dashboard_follows_the_system_colour_scheme(browser, live_server, scheme):
    context = browser.new_context(
        http_credentials={"username": DASHBOARD_USER, "password": DASHBOARD_PASSWORD}, color_scheme=scheme
    )
    try:
        page = context.new_page()
        page.goto(live_server + "/dashboard/")
        wait_loaded(page)
        body = _luminance(page.evaluate("getComputedStyle(document.body).backgroundColor"))
        text = _luminance(page.evaluate("getComputedStyle(document.body).color"))
        card = _luminance(page.evaluate("getComputedStyle(document.querySelector('.card')).backgroundColor"))
        if scheme == "dark":
            assert body < 60 and card < 60 and text > 180
        else:
            assert body > 200 and card > 200 and text < 80
    finally:
        context.close()


def test_the_favicon_is_used_by_the_pages(browser, live_server):
    context = browser.new_context(http_credentials={"username": DASHBOARD_USER, "password": DASHBOARD_PASSWORD})
    try:
        page = context.new_page()
        page.goto(live_server + "/dashboard/")
        href = page.evaluate("document.querySelector('link[rel=icon]').href")
        assert href.endswith("/favicon.ico")
        assert context.request.get(href).status == 200
    finally:
        context.close()


def test_times_follow_the_browser_zone_and_the_utc_toggle_is_remembered(browser, live_server, app):
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from app.connections import db_session
    from app.models import JobRun, utcnow

    enqueued = (utcnow() - timedelta(hours=1)).replace(second=0, microsecond=0)
    with db_session():
        JobRun.create(
            id="tz-run",
            job_name="forecast",
            queue="forecast",
            trigger="manual",
            status="finished",
            enqueued_at=enqueued,
            started_at=enqueued,
            ended_at=enqueued + timedelta(seconds=5),
            attempts=1,
        )
    zone = "America/New_York"
    local = enqueued.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
    in_utc = enqueued.strftime("%Y-%m-%d %H:%M")
    context = browser.new_context(
        http_credentials={"username": DASHBOARD_USER, "password": DASHBOARD_PASSWORD}, timezone_id=zone
    )
    try:
        page = context.new_page()
        page.goto(live_server + "/dashboard/")
        wait_loaded(page)
        row = page.locator("#card-runs tr[data-run='tz-run']").first
        toggle = page.locator("#tz-toggle")
        assert toggle.inner_text() == zone and toggle.get_attribute("aria-pressed") == "false"
        assert local in row.inner_text() and zone in page.locator("#card-runs thead").inner_text()
        toggle.click()
        assert in_utc in row.inner_text() and "UTC" in page.locator("#card-runs thead").inner_text()
        assert "UTC" in page.locator("#refreshed").inner_text()
        page.reload()
        wait_loaded(page)
        assert page.locator("#tz-toggle").get_attribute("aria-pressed") == "true"
        assert in_utc in page.locator("#card-runs tr[data-run='tz-run']").first.inner_text()
    finally:
        context.close()


def test_at_phone_width_nothing_scrolls_sideways_and_every_action_is_on_screen(open_page, client, auth, app):
    from app.connections import db_session
    from app.models import JobRun, utcnow

    with db_session():
        JobRun.create(
            id="phone-run-with-a-long-identifier-0123456789",
            job_name="forecast",
            queue="forecast",
            trigger="manual",
            status="queued",
            enqueued_at=utcnow(),
        )
    page = open_page(viewport=(390, 844))
    wait_loaded(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    buttons = page.locator("main button:visible")
    assert buttons.count() >= 4  # find, zone, the schedules' actions, the run's cancel
    for index in range(buttons.count()):
        box = buttons.nth(index).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, buttons.nth(index).inner_text()
    cell = page.locator("#card-runs td[data-label='run']").first
    assert cell.is_visible()
    # the run id keeps whole lines, not 3-character columns
    assert cell.bounding_box()["width"] > 250
    schedule_actions = page.locator("#card-schedules td.actions button")
    assert schedule_actions.count() >= 3


def test_the_run_page_and_list_show_times_in_the_browser_zone_too(browser, live_server, app):
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from app.connections import db_session
    from app.models import JobRun, utcnow

    enqueued = (utcnow() - timedelta(hours=3)).replace(microsecond=0)
    with db_session():
        JobRun.create(
            id="tz-run-page",
            job_name="forecast",
            queue="forecast",
            trigger="manual",
            status="finished",
            enqueued_at=enqueued,
            started_at=enqueued,
            ended_at=enqueued + timedelta(seconds=5),
            attempts=1,
        )
    zone = "America/St_Johns"  # a half-hour offset: no hour-only shortcut passes
    local = enqueued.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
    context = browser.new_context(
        http_credentials={"username": DASHBOARD_USER, "password": DASHBOARD_PASSWORD}, timezone_id=zone
    )
    try:
        page = context.new_page()
        for path in ("/dashboard/runs/tz-run-page", "/dashboard/runs?job=forecast"):
            page.goto(live_server + path)
            expect(page.locator("time[data-clock]").first).to_contain_text(zone.split("/")[1])
            assert f"{local} {zone}" in page.locator("main").inner_text(), path
        page.click("#tz-toggle")
        expect(page.locator("time[data-clock]").first).to_contain_text("UTC")
        assert enqueued.strftime("%Y-%m-%d %H:%M:%S UTC") in page.locator("main").inner_text()
    finally:
        context.close()
