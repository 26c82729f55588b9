"""The comfort of the pages in a real Chromium: the OpenAPI viewer renders, dark mode follows the system."""

from __future__ import annotations

import pytest

from tests.conftest import DASHBOARD_PASSWORD, DASHBOARD_USER
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
