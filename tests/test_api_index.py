"""The API's front door: `/api/` index, the OpenAPI viewer, the favicon and the start-up banner's links."""

from __future__ import annotations

import base64
import re
import subprocess
import sys

import pytest

from tests.conftest import DASHBOARD_PASSWORD, DASHBOARD_USER, settings_env


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: nothing here depends on the database."""
    return f"sqlite:///{tmp_path / 'index.db'}"


@pytest.fixture
def basic():
    token = base64.b64encode(f"{DASHBOARD_USER}:{DASHBOARD_PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_the_api_index_lists_every_api_route_and_its_links_answer(client, auth, basic):
    response = client.get("/api/")
    assert response.status_code == 200 and response.is_json
    body = response.get_json()
    paths = {route["path"] for route in body["routes"]}
    assert {"/api/", "/api/openapi.json", "/api/jobs", "/api/jobs/{job_name}/trigger", "/api/docs"} <= paths
    trigger = next(route for route in body["routes"] if route["path"] == "/api/jobs/{job_name}/trigger")
    assert trigger["methods"] == ["POST"]
    for name, link in body["links"].items():
        headers = basic if link.startswith("/dashboard") else auth
        assert client.get(link, headers=headers).status_code == 200, name


def test_every_documented_path_is_in_the_index(client):
    index = {route["path"] for route in client.get("/api/").get_json()["routes"]}
    documented = set(client.get("/api/openapi.json").get_json()["paths"])
    assert {path for path in documented if path.startswith("/api/")} <= index


def test_the_docs_page_loads_swagger_ui_from_this_origin_only(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert scripts and all(not body.strip() for body in scripts)  # no inline script
    sources = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert sources and all(src.startswith("/api/static/") for src in sources)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp and "script-src 'self' 'unsafe-inline'" not in csp
    for src in sources:
        asset = client.get(src)
        assert asset.status_code == 200 and "javascript" in asset.mimetype
    assert client.get("/api/static/swagger-ui/swagger-ui.css").status_code == 200


def test_the_favicon_is_an_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.data[:4] == b"\x00\x00\x01\x00"  # an ICO header
    assert "icon" in response.mimetype
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_every_link_of_the_start_up_banner_answers_200(client, basic, settings_overrides):
    env = settings_env({**settings_overrides, "port": 8000})
    banner = subprocess.run(
        [sys.executable, "-m", "app.local_redis", "banner"], env=env, capture_output=True, text=True, check=True
    ).stdout
    links = re.findall(r"http://localhost:8000(/[^\s),]*)", banner)
    assert "/api/" in links and "/dashboard/" in links
    for path in links:
        if path.endswith("/trigger"):
            continue  # the banner's curl example is a POST, tested in test_jobs_api.py
        headers = basic if path.startswith("/dashboard") else {}
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.status_code)
