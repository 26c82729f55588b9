"""The dashboard: Basic auth on every /dashboard route, CSRF on actions, CSP, escaping."""
from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry

from tests.conftest import DASHBOARD_PASSWORD, DASHBOARD_USER

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
SAME_ORIGIN = {"Origin": "http://localhost"}


def basic(user: str = DASHBOARD_USER, password: str = DASHBOARD_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def creds():
    return basic()


def enqueue_never_run(redis: Redis, *args, queue: str = "forecast"):
    """A dotted-path function that does not exist: no worker runs here, and none could."""
    return Queue(queue, connection=redis).enqueue("tests.no_such_module.no_such_function", *args)


def dashboard_rules(app):
    return [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/dashboard")]


def dummy_path(rule) -> str:
    return re.sub(r"<[^>]+>", "1", rule.rule)


# --- authentication ----------------------------------------------------------------------


def test_home_needs_credentials(client, creds):
    response = client.get("/dashboard/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="dashboard"'
    assert response.get_json()["error"]["code"] == "unauthorized"

    response = client.get("/dashboard/", headers=creds)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "/dashboard/rq/" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "headers",
    [
        basic(password="wrong"),
        basic(user="someone-else"),
        basic(password=DASHBOARD_PASSWORD + "x"),
        {"Authorization": f"Bearer {DASHBOARD_PASSWORD}"},
        {"Authorization": "Basic not-base64!"},
    ],
)
def test_wrong_credentials_are_refused(client, headers):
    response = client.get("/dashboard/", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="dashboard"'


def test_every_dashboard_rule_and_method_needs_credentials(app, client):
    """Walks the URL map, so a route added later (by either blueprint) cannot slip through."""
    rules = dashboard_rules(app)
    endpoints = {rule.endpoint for rule in rules}
    assert {"dashboard.home", "rq_dashboard.static", "rq_dashboard.requeue_all", "rq_dashboard.job_view"} <= endpoints
    checked = 0
    for rule in rules:
        path = dummy_path(rule)
        for method in sorted(rule.methods):
            for headers in ({}, basic(password="wrong")):
                response = client.open(path, method=method, headers={**headers, **SAME_ORIGIN})
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.headers["WWW-Authenticate"] == 'Basic realm="dashboard"'
                body = response.get_data(as_text=True)
                assert "Traceback" not in body
                checked += 1
    assert checked > 50


@pytest.mark.parametrize(
    "path",
    ["/dashboard", "/dashboard/nope", "/dashboard/rq/nope", "/dashboard/rq/static/js/jquery-3.5.1.min.js",
     "/dashboard/rq/static/../../web.py", "/dashboard/rq/favicon.ico"],
)
def test_unknown_and_static_paths_need_credentials(client, path):
    response = client.get(path)
    assert response.status_code == 401


def test_double_slash_does_not_serve_the_dashboard(client):
    response = client.get("//dashboard/rq/")
    assert response.status_code in (308, 401, 404)
    assert "RQ dashboard" not in response.get_data(as_text=True)


@pytest.mark.parametrize("missing", ["dashboard_username", "dashboard_password"])
def test_empty_configured_credentials_refuse_everything(settings_overrides, missing):
    from app import create_app

    app = create_app({**settings_overrides, missing: ""})
    client = app.test_client()
    user = "" if missing == "dashboard_username" else DASHBOARD_USER
    password = "" if missing == "dashboard_password" else DASHBOARD_PASSWORD
    for path in ("/dashboard/", "/dashboard/rq/"):
        assert client.get(path, headers=basic(user, password)).status_code == 401
        assert client.get(path, headers=basic()).status_code == 401


# --- rq-dashboard mounted and connected ----------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/dashboard/rq/", "/dashboard/rq/0/view/workers", "/dashboard/rq/0/view/jobs",
     "/dashboard/rq/0/view/jobs/forecast/failed/8/asc/1", "/dashboard/rq/0/data/queues.json",
     "/dashboard/rq/0/data/workers.json", "/dashboard/rq/static/js/jquery-3.5.1.min.js",
     "/dashboard/rq/favicon.ico"],
)
def test_rq_dashboard_pages_are_reachable(client, creds, path):
    response = client.get(path, headers=creds)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]


def test_rq_dashboard_shows_this_apps_queues(client, creds, redis):
    enqueue_never_run(redis, 1)
    queues = client.get("/dashboard/rq/0/data/queues.json", headers=creds).get_json()["queues"]
    assert {q["name"]: q["count"] for q in queues}["forecast"] == 1
    job_page = client.get("/dashboard/rq/0/view/jobs/forecast/queued/8/asc/1", headers=creds)
    assert job_page.status_code == 200


def test_unknown_redis_instance_is_404_not_500(client, creds):
    response = client.get("/dashboard/rq/1/view/queues", headers=creds)
    assert response.status_code == 404


def test_several_apps_in_one_process_each_use_their_own_redis(app, settings_overrides, redis, creds):
    from app import create_app

    parts = urlsplit(settings_overrides["redis_url"])
    other_url = urlunsplit(parts._replace(path="/1"))
    Redis.from_url(other_url).flushdb()
    enqueue_never_run(redis, 1)
    other = create_app({**settings_overrides, "redis_url": other_url})

    def forecast_count(flask_app) -> int:
        queues = flask_app.test_client().get("/dashboard/rq/0/data/queues.json", headers=creds).get_json()["queues"]
        return {q["name"]: q["count"] for q in queues}.get("forecast", 0)

    assert forecast_count(app) == 1
    assert forecast_count(other) == 0
    assert forecast_count(app) == 1
    assert other.test_client().get("/dashboard/", headers=creds).status_code == 200


def test_password_protected_redis_url_works(settings_overrides, creds):
    from app import create_app
    from tests.servers import RedisServer

    server = RedisServer(password="dash-redis-secret").start()
    try:
        app = create_app({**settings_overrides, "redis_url": server.url})
        enqueue_never_run(app.extensions["redis"], 1)
        client = app.test_client()
        assert client.get("/dashboard/", headers=creds).status_code == 200
        response = client.get("/dashboard/rq/0/data/queues.json", headers=creds)
        assert response.status_code == 200
        assert [q["count"] for q in response.get_json()["queues"] if q["name"] == "forecast"] == [1]
        page = client.get("/dashboard/rq/", headers=creds).get_data(as_text=True)
        assert "dash-redis-secret" not in page
    finally:
        server.cleanup()


def test_rq_client_url_keeps_tls_and_password_and_adds_timeouts():
    from dashboard import rq_client_url

    url = rq_client_url("rediss://:p%40ss@redis.example.com:6380/2?ssl_cert_reqs=none")
    assert url.startswith("rediss://:p%40ss@redis.example.com:6380/2?")
    client = Redis.from_url(url)
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert kwargs["password"] == "p@ss"
    assert kwargs["db"] == 2
    assert kwargs["socket_timeout"] == 30.0
    assert kwargs["socket_connect_timeout"] == 5.0
    assert rq_client_url("redis://h:6379/0?socket_timeout=3").count("socket_timeout") == 1


def test_rq_dashboard_per_request_client_has_timeouts(app, client, creds):
    """rq-dashboard opens a new client from its configured URL on each view/data request."""
    client.get("/dashboard/rq/0/data/queues.json", headers=creds)
    kwargs = app.redis_conn.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 30.0
    assert kwargs["socket_connect_timeout"] == 5.0


# --- CSRF and the GET requeue ---------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "https://localhost"},
        {"Origin": "http://localhost.evil.example"},
        {"Origin": "null"},
        {"Origin": "null", "Referer": "http://localhost/dashboard/rq/"},
        {"Referer": "http://evil.example/dashboard/rq/"},
        {},
    ],
)
def test_cross_origin_action_is_refused(client, creds, redis, headers):
    enqueue_never_run(redis, 1)
    response = client.post("/dashboard/rq/queue/forecast/queued/empty", headers={**creds, **headers})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "cross_origin_refused"
    assert Queue("forecast", connection=redis).count == 1


@pytest.mark.parametrize(
    "headers",
    [SAME_ORIGIN, {"Origin": "http://localhost:80"}, {"Referer": "http://localhost/dashboard/rq/0/view/jobs"}],
)
def test_same_origin_action_is_accepted(client, creds, redis, headers):
    enqueue_never_run(redis, 1)
    response = client.post("/dashboard/rq/queue/forecast/queued/empty", headers={**creds, **headers})
    assert response.status_code == 200
    assert response.get_json() == {"status": "OK"}
    assert Queue("forecast", connection=redis).count == 0


def test_same_origin_is_scheme_and_host_of_the_request(app, creds, redis):
    enqueue_never_run(redis, 1)  # rq's compact() fails on a queue that does not exist
    client = app.test_client()
    base = "https://dash.example.com"
    ok = client.post("/dashboard/rq/queue/forecast/compact", base_url=base,
                     headers={**creds, "Origin": "https://dash.example.com:443"})
    assert ok.status_code == 200
    refused = client.post("/dashboard/rq/queue/forecast/compact", base_url=base,
                          headers={**creds, "Origin": "http://dash.example.com"})
    assert refused.status_code == 403


def test_every_rq_action_checks_origin(app, client, creds):
    actions = [r for r in dashboard_rules(app) if "POST" in r.methods]
    assert {r.endpoint for r in actions} >= {"rq_dashboard.requeue_all", "rq_dashboard.delete_job_view",
                                            "rq_dashboard.requeue_job_view", "rq_dashboard.empty_queue",
                                            "rq_dashboard.compact_queue"}
    for rule in actions:
        response = client.post(dummy_path(rule), headers={**creds, "Origin": "http://evil.example"})
        assert response.status_code == 403, rule.rule


def _failed_job(redis: Redis):
    job = enqueue_never_run(redis, 1)
    Queue("forecast", connection=redis).remove(job.id)
    FailedJobRegistry("forecast", connection=redis).add(job, exc_string="boom")
    return job


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_requeue_all_refuses_get(client, creds, redis, method):
    job = _failed_job(redis)
    response = client.open("/dashboard/rq/requeue/forecast", method=method, headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert FailedJobRegistry("forecast", connection=redis).get_job_ids(cleanup=False) == [job.id]


def test_requeue_all_works_by_same_origin_post(client, creds, redis):
    job = _failed_job(redis)
    response = client.post("/dashboard/rq/requeue/forecast", headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 200
    assert response.get_json() == {"status": "OK", "count": 1}
    assert FailedJobRegistry("forecast", connection=redis).get_job_ids(cleanup=False) == []
    assert Queue("forecast", connection=redis).get_job_ids() == [job.id]


# --- headers ----------------------------------------------------------------------------------


def _directives(csp: str) -> dict[str, str]:
    return {part.strip().split(" ", 1)[0]: part.strip().partition(" ")[2] for part in csp.split(";")}


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/rq/", "/dashboard/rq/0/data/queues.json",
                                  "/dashboard/rq/static/css/main.css"])
def test_security_headers(client, creds, path):
    for headers in ({}, creds):
        response = client.get(path, headers=headers)
        csp = _directives(response.headers["Content-Security-Policy"])
        assert csp["default-src"] == "'self'"
        assert csp["frame-ancestors"] == "'none'"
        assert csp["object-src"] == "'none'"
        assert "'unsafe-inline'" not in csp["script-src"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_api_responses_do_not_get_dashboard_headers(client):
    assert "Content-Security-Policy" not in client.get("/healthz").headers


def test_home_page_allows_no_script_at_all(client, creds):
    csp = _directives(client.get("/dashboard/", headers=creds).headers["Content-Security-Policy"])
    assert csp["script-src"] == "'self'"


@pytest.mark.parametrize("path", ["/dashboard/rq/", "/dashboard/rq/0/view/workers", "/dashboard/rq/0/view/jobs"])
def test_rq_pages_allow_exactly_their_inline_script(client, creds, path):
    """Allowed by hash (plus the 'unsafe-eval' Underscore's templates need), not 'unsafe-inline'."""
    response = client.get(path, headers=creds)
    html = response.get_data(as_text=True)
    inline = [body for attrs, body in re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
              if "src=" not in attrs and "text/template" not in attrs]
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    script_src = _directives(response.headers["Content-Security-Policy"])["script-src"].split()
    assert sorted(script_src) == sorted(["'self'", "'unsafe-eval'", f"'sha256-{digest}'"])


# --- escaping ---------------------------------------------------------------------------------


def _busy_worker(redis: Redis, job) -> Worker:
    worker = Worker(["forecast"], connection=redis, name=f"busy-{SCRIPT}")
    worker.register_birth()
    worker.set_state("busy")
    worker.set_current_job_id(job.id)
    return worker


def test_job_arguments_are_escaped_on_home_page(client, creds, redis):
    job = enqueue_never_run(redis, SCRIPT)
    _busy_worker(redis, job)
    html = client.get("/dashboard/", headers=creds).get_data(as_text=True)
    assert SCRIPT not in html
    assert ESCAPED in html  # the job description and the worker name
    assert job.id in html
    assert re.search(r"<td class=\"num\">1</td>", html)  # forecast: one queued


def test_job_arguments_are_escaped_on_rq_dashboard_pages(client, creds, redis):
    """rq-dashboard renders job data in the browser with Underscore; its `<%= %>` inserts raw
    HTML (issue 526), so every interpolation must have become an escaping `<%- %>`."""
    job = enqueue_never_run(redis, SCRIPT)
    _busy_worker(redis, job)
    pages = [
        "/dashboard/rq/",
        "/dashboard/rq/0/view/workers",
        "/dashboard/rq/0/view/jobs/forecast/queued/8/asc/1",
        f"/dashboard/rq/0/view/job/{job.id}",
    ]
    for path in pages:
        response = client.get(path, headers=creds)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        assert SCRIPT not in html, path
        assert "<%=" not in html, path
    job_page = client.get(f"/dashboard/rq/0/view/job/{job.id}", headers=creds).get_data(as_text=True)
    assert "<%- d.description %>" in job_page and "<%- d.exc_info %>" in job_page
    jobs_page = client.get("/dashboard/rq/0/view/jobs/forecast/queued/8/asc/1", headers=creds).get_data(as_text=True)
    assert "<%- d.description %>" in jobs_page  # escaped once, not twice


def test_job_data_is_served_as_json_only(client, creds, redis):
    job = enqueue_never_run(redis, SCRIPT)
    for path in (f"/dashboard/rq/0/data/job/{job.id}.json", "/dashboard/rq/0/data/jobs/forecast/queued/8/asc/1.json"):
        response = client.get(path, headers=creds)
        assert response.mimetype == "application/json"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    description = client.get(f"/dashboard/rq/0/data/job/{job.id}.json", headers=creds).get_json()["description"]
    assert SCRIPT in description  # raw in the data; escaped where the page inserts it
