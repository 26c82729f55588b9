"""The dashboard: Basic auth on every /dashboard route, CSRF on actions, CSP, escaping."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry

from tests.conftest import DASHBOARD_PASSWORD, DASHBOARD_USER

SCRIPT = "<script>alert(1)</script>"
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


@pytest.mark.any_database
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
@pytest.mark.any_database
def test_wrong_credentials_are_refused(client, headers):
    response = client.get("/dashboard/", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="dashboard"'


@pytest.mark.any_database
def test_every_dashboard_rule_and_method_needs_credentials(app, client):
    """Walks the URL map, so a route added later (by either blueprint) cannot slip through."""
    from app.login_throttle import LoginThrottle

    app.extensions["login_throttle"] = LoginThrottle(0)  # ~100 wrong logins; the budget: test_login_throttle.py
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
    [
        "/dashboard",
        "/dashboard/nope",
        "/dashboard/rq/nope",
        "/dashboard/rq/static/js/jquery-3.5.1.min.js",
        "/dashboard/rq/static/../../web.py",
        "/dashboard/rq/favicon.ico",
    ],
)
@pytest.mark.any_database
def test_unknown_and_static_paths_need_credentials(client, path):
    response = client.get(path)
    assert response.status_code == 401


@pytest.mark.any_database
def test_double_slash_does_not_serve_the_dashboard(client):
    response = client.get("//dashboard/rq/")
    assert response.status_code in (308, 401, 404)
    assert "RQ dashboard" not in response.get_data(as_text=True)


@pytest.mark.parametrize("missing", ["dashboard_username", "dashboard_password"])
@pytest.mark.any_database
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
    [
        "/dashboard/rq/",
        "/dashboard/rq/0/view/workers",
        "/dashboard/rq/0/view/jobs",
        "/dashboard/rq/0/view/jobs/forecast/failed/8/asc/1",
        "/dashboard/rq/0/data/queues.json",
        "/dashboard/rq/0/data/workers.json",
        "/dashboard/rq/static/js/jquery-3.5.1.min.js",
        "/dashboard/rq/favicon.ico",
    ],
)
@pytest.mark.any_database
def test_rq_dashboard_pages_are_reachable(client, creds, path):
    response = client.get(path, headers=creds)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]


@pytest.mark.any_database
def test_rq_dashboard_shows_this_apps_queues(client, creds, redis):
    enqueue_never_run(redis, 1)
    queues = client.get("/dashboard/rq/0/data/queues.json", headers=creds).get_json()["queues"]
    assert {q["name"]: q["count"] for q in queues}["forecast"] == 1
    job_page = client.get("/dashboard/rq/0/view/jobs/forecast/queued/8/asc/1", headers=creds)
    assert job_page.status_code == 200


@pytest.mark.any_database
def test_unknown_redis_instance_is_404_not_500(client, creds):
    response = client.get("/dashboard/rq/1/view/queues", headers=creds)
    assert response.status_code == 404


@pytest.mark.any_database
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


@pytest.mark.any_database
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


@pytest.mark.any_database
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
@pytest.mark.any_database
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
@pytest.mark.any_database
def test_same_origin_action_is_accepted(client, creds, redis, headers):
    enqueue_never_run(redis, 1)
    response = client.post("/dashboard/rq/queue/forecast/queued/empty", headers={**creds, **headers})
    assert response.status_code == 200
    assert response.get_json() == {"status": "OK"}
    assert Queue("forecast", connection=redis).count == 0


@pytest.mark.any_database
def test_same_origin_is_scheme_and_host_of_the_request(app, creds, redis):
    enqueue_never_run(redis, 1)  # rq's compact() fails on a queue that does not exist
    client = app.test_client()
    base = "https://dash.example.com"
    ok = client.post(
        "/dashboard/rq/queue/forecast/compact",
        base_url=base,
        headers={**creds, "Origin": "https://dash.example.com:443"},
    )
    assert ok.status_code == 200
    refused = client.post(
        "/dashboard/rq/queue/forecast/compact", base_url=base, headers={**creds, "Origin": "http://dash.example.com"}
    )
    assert refused.status_code == 403


@pytest.mark.any_database
def test_every_rq_action_checks_origin(app, client, creds):
    actions = [r for r in dashboard_rules(app) if "POST" in r.methods]
    assert {r.endpoint for r in actions} >= {
        "rq_dashboard.requeue_all",
        "rq_dashboard.delete_job_view",
        "rq_dashboard.requeue_job_view",
        "rq_dashboard.empty_queue",
        "rq_dashboard.compact_queue",
    }
    for rule in actions:
        response = client.post(dummy_path(rule), headers={**creds, "Origin": "http://evil.example"})
        assert response.status_code == 403, rule.rule


def _failed_job(redis: Redis):
    job = enqueue_never_run(redis, 1)
    Queue("forecast", connection=redis).remove(job.id)
    FailedJobRegistry("forecast", connection=redis).add(job, exc_string="boom")
    return job


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
@pytest.mark.any_database
def test_requeue_all_refuses_get(client, creds, redis, method):
    job = _failed_job(redis)
    response = client.open("/dashboard/rq/requeue/forecast", method=method, headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert FailedJobRegistry("forecast", connection=redis).get_job_ids(cleanup=False) == [job.id]


@pytest.mark.any_database
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


@pytest.mark.parametrize(
    "path", ["/dashboard/", "/dashboard/rq/", "/dashboard/rq/0/data/queues.json", "/dashboard/rq/static/css/main.css"]
)
@pytest.mark.any_database
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


@pytest.mark.any_database
def test_api_responses_do_not_get_dashboard_headers(client):
    assert "Content-Security-Policy" not in client.get("/healthz").headers


@pytest.mark.any_database
def test_home_page_allows_only_its_own_script_and_style_files(client, creds):
    """No inline script or style at all on the project's page: injected markup could not run."""
    response = client.get("/dashboard/", headers=creds)
    csp = _directives(response.headers["Content-Security-Policy"])
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    html = response.get_data(as_text=True)
    assert re.findall(r"<script\b([^>]*)>", html) == [
        ' src="/dashboard/static/clock.js" defer',
        ' src="/dashboard/static/dashboard.js" defer',
    ]
    assert "style=" not in html and "<style" not in html


RQ_PAGES = {
    "/dashboard/rq/": "queues",
    "/dashboard/rq/0/view/workers": "workers",
    "/dashboard/rq/0/view/jobs": "jobs",
    "/dashboard/rq/0/view/jobs/forecast/failed/8/dsc/2": "jobs",
}


@pytest.mark.parametrize("path", list(RQ_PAGES))
@pytest.mark.any_database
def test_rq_pages_have_no_inline_script_and_a_fixed_csp(client, creds, path):
    """Scripts come from files compiled at start-up; the page's values travel in a JSON block
    that is never executed; the CSP is the same for every rq page, whatever the response holds."""
    from dashboard.rq_pages import PAGE_SCRIPTS

    response = client.get(path, headers=creds)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    tags = re.findall(r"<script\b([^>]*)>", html)
    executable = [
        attrs
        for attrs in tags
        if "src=" not in attrs and "text/template" not in attrs and "application/json" not in attrs
    ]
    assert executable == []
    page = RQ_PAGES[path]
    assert f' src="/dashboard/rq-scripts/{page}.js"' in tags
    assert _directives(response.headers["Content-Security-Policy"])["script-src"] == "'self' 'unsafe-eval'"
    config = json.loads(re.search(r'<script type="application/json" id="rq-page-config">(.*?)</script>', html, re.S)[1])
    assert config["rq_url_prefix"] == "/dashboard/rq/" and config["current_instance"] == 0
    script = client.get(f"/dashboard/rq-scripts/{page}.js", headers=creds)
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert script.data == PAGE_SCRIPTS[page].body
    assert "{{" not in script.get_data(as_text=True) and "{%" not in script.get_data(as_text=True)
    assert client.get(f"/dashboard/rq-scripts/{page}.js").status_code == 401
    assert client.get("/dashboard/rq-scripts/nope.js", headers=creds).status_code == 404


# --- escaping ---------------------------------------------------------------------------------


def _busy_worker(redis: Redis, job) -> Worker:
    worker = Worker(["forecast"], connection=redis, name=f"busy-{SCRIPT}")
    worker.register_birth()
    worker.set_state("busy")
    worker.set_current_job_id(job.id)
    return worker


def test_home_page_data_is_json_and_its_script_inserts_text_only(client, creds, redis):
    """The page's data travels as JSON (raw, served as JSON with nosniff); the script only ever
    inserts it as text nodes. The browser tests check the same in Chromium."""
    job = enqueue_never_run(redis, SCRIPT)
    _busy_worker(redis, job)
    html = client.get("/dashboard/", headers=creds).get_data(as_text=True)
    assert SCRIPT not in html
    response = client.get("/dashboard/data.json", headers=creds)
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    worker = response.get_json()["workers"][0]
    assert worker["name"] == f"busy-{SCRIPT}" and worker["current_job"] == job.id
    assert SCRIPT in worker["current_job_description"]
    script = client.get("/dashboard/static/dashboard.js", headers=creds).get_data(as_text=True)
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "javascript:",
        'setAttribute("style',
    ):
        assert sink not in script, sink


@pytest.mark.any_database
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


@pytest.mark.any_database
def test_job_data_is_served_as_json_only(client, creds, redis):
    job = enqueue_never_run(redis, SCRIPT)
    for path in (f"/dashboard/rq/0/data/job/{job.id}.json", "/dashboard/rq/0/data/jobs/forecast/queued/8/asc/1.json"):
        response = client.get(path, headers=creds)
        assert response.mimetype == "application/json"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    description = client.get(f"/dashboard/rq/0/data/job/{job.id}.json", headers=creds).get_json()["description"]
    assert SCRIPT in description  # raw in the data; escaped where the page inserts it


# --- the monitoring page's data ----------------------------------------------------------------


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "forecast_pipeline": "tests.pipelines:two_alerts"}


def _run_row(run_id: str, job: str, status: str, enqueued, duration: float | None = None, trigger: str = "manual"):
    from datetime import timedelta

    from app.models import JobRun

    started = enqueued + timedelta(seconds=1) if duration is not None else None
    ended = started + timedelta(seconds=duration) if duration is not None else None
    return JobRun.create(
        id=run_id,
        job_name=job,
        queue="forecast",
        trigger=trigger,
        status=status,
        enqueued_at=enqueued,
        started_at=started,
        ended_at=ended,
        attempts=1,
    )


def test_data_is_filled_from_a_real_run(client, creds, auth, run_worker):
    job_id = client.post("/api/jobs/forecast/trigger", headers=auth).get_json()["job_id"]
    run_worker()
    response = client.get("/dashboard/data.json", headers=creds)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    data = response.get_json()
    forecast = data["jobs"]["forecast"]
    for window in ("24h", "7d"):
        assert forecast[window]["runs"] == 1 and forecast[window]["success_rate"] == 1.0
        assert forecast[window]["duration_p50"] is not None and forecast[window]["duration_p95"] is not None
    assert data["jobs"]["cleanup"]["24h"] == {
        "runs": 0,
        "success": 0,
        "failure": 0,
        "by_status": {},
        "success_rate": None,
        "duration_p50": None,
        "duration_p95": None,
        "duration_count": 0,
    }
    assert sum(data["runs_per_hour"]["series"]["finished"]) == 1 and len(data["runs_per_hour"]["hours"]) == 24
    assert data["runs_per_hour"]["series"]["finished"][-1] == 1  # the current hour is the last bar
    assert set(data["queues"]) == {"forecast", "reports", "maintenance", "default"}
    assert data["queues"]["forecast"]["finished"] == 1
    assert [s["name"] for s in data["schedules"]] == ["forecast", "daily-summary", "cleanup"]
    assert data["recent_runs"][0]["job_id"] == job_id and data["recent_runs"][0]["status"] == "finished"
    assert data["active_runs"] == []
    assert data["alerts"]["by_severity"]["24h"] == {"high": 1, "medium": 1, "low": 0}
    assert {a["job_id"] for a in data["alerts"]["recent"]} == {job_id}


def test_success_rate_and_percentiles_per_window(client, creds):
    from datetime import timedelta

    from app.models import utcnow

    now = utcnow()
    for i, seconds in enumerate([1, 2, 3, 4, 100]):  # last 24 h: p50 3, p95 80.8
        _run_row(f"day{i}", "forecast", "finished", now - timedelta(hours=1 + i), seconds)
    _run_row("dayfail", "forecast", "failed", now - timedelta(hours=2), 5)
    _run_row("daystop", "forecast", "stopped", now - timedelta(hours=3), 5)
    _run_row("daycancel", "forecast", "canceled", now - timedelta(hours=3))
    _run_row("dayskip", "forecast", "skipped", now - timedelta(hours=3), trigger="scheduled")
    for i in range(5):  # 2-6 days ago: five 10-second runs, one failure
        _run_row(f"week{i}", "forecast", "finished", now - timedelta(days=2 + i), 10)
    _run_row("weekfail", "forecast", "failed", now - timedelta(days=3), 1)
    _run_row("old", "forecast", "finished", now - timedelta(days=8), 1000)  # outside both windows
    _run_row("other", "daily-summary", "finished", now - timedelta(minutes=5), 7)

    jobs = client.get("/dashboard/data.json", headers=creds).get_json()["jobs"]
    day, week = jobs["forecast"]["24h"], jobs["forecast"]["7d"]
    assert (day["runs"], day["success"], day["failure"]) == (9, 5, 2)
    assert day["success_rate"] == round(5 / 7, 4)  # canceled and skipped are neither
    assert day["duration_p50"] == pytest.approx(3.0, abs=0.01)
    assert day["duration_p95"] == pytest.approx(80.8, abs=0.01)
    assert (week["runs"], week["success"], week["failure"]) == (15, 10, 3)
    assert week["duration_p50"] == pytest.approx(10.0, abs=0.01)  # 1 2 3 4 10 10 10 10 10 100
    assert week["duration_count"] == 10
    assert jobs["daily-summary"]["24h"]["duration_p50"] == pytest.approx(7.0, abs=0.01)


def test_runs_per_hour_buckets(client, creds):
    from datetime import timedelta

    from app.models import utcnow

    now = utcnow()
    _run_row("h0", "forecast", "finished", now, 1)
    _run_row("h3a", "forecast", "failed", now - timedelta(hours=3), 1)
    _run_row("h3b", "cleanup", "stopped", now - timedelta(hours=3), 1)
    _run_row("h5", "forecast", "canceled", now - timedelta(hours=5))
    _run_row("h30", "forecast", "finished", now - timedelta(hours=30), 1)  # outside the chart
    chart = client.get("/dashboard/data.json", headers=creds).get_json()["runs_per_hour"]
    assert chart["hours"][-1] == now.replace(minute=0, second=0, microsecond=0).isoformat() + "Z"
    assert chart["series"]["finished"][-1] == 1
    assert chart["series"]["failed"][-4] == 2
    assert chart["series"]["other"][-6] == 1
    assert sum(map(sum, chart["series"].values())) == 4


def test_workers_publish_cpu_and_rss_on_heartbeat(app, client, creds, redis):
    from workers.worker import build_worker

    worker = build_worker(app.config["SETTINGS"], redis, name="resource-worker")
    worker.register_birth()
    worker.set_state("idle")
    worker.heartbeat()
    fields = redis.hgetall(worker.key)
    assert float(fields[b"svc_cpu_percent"]) >= 0 and int(fields[b"svc_rss_bytes"]) > 10 * 2**20
    row = client.get("/dashboard/data.json", headers=creds).get_json()["workers"][0]
    assert row["name"] == "resource-worker" and row["state"] == "idle"
    assert row["rss_bytes"] > 10 * 2**20 and row["cpu_percent"] >= 0
    assert 0 <= row["heartbeat_age_seconds"] < 60 and 0 <= row["resources_age_seconds"] < 60
    assert redis.ttl(worker.key) > 0  # the figures live and expire with the worker's own hash


@pytest.mark.any_database
def test_resources_are_not_published_from_the_work_horse(app, redis):
    from app.worker_resources import publish_worker_resources
    from workers.worker import build_worker

    worker = build_worker(app.config["SETTINGS"], redis, name="horse-check")
    worker.register_birth()
    worker.pid = worker.pid + 1  # as seen from a forked horse: not the worker's own pid
    publish_worker_resources(worker)
    assert redis.hget(worker.key, "svc_cpu_percent") is None


def test_burst_worker_publishes_while_it_works(app, client, creds, auth, run_worker, redis):
    client.post("/api/jobs/forecast/trigger", headers=auth)
    worker = run_worker()
    assert redis.hget(worker.key, "svc_rss_bytes") is not None


# --- actions ------------------------------------------------------------------------------------


def test_pause_resume_run_a_schedule_from_the_page(client, creds, redis):
    from app.scheduling import PAUSED_KEY

    response = client.post("/dashboard/schedules/forecast/pause", headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 200
    assert response.get_json()["paused"] is True and response.get_json()["changed"] is True
    assert redis.smembers(PAUSED_KEY) == {b"forecast"}
    schedules = client.get("/dashboard/data.json", headers=creds).get_json()["schedules"]
    assert {s["name"]: s["paused"] for s in schedules} == {"forecast": True, "daily-summary": False, "cleanup": False}
    assert (
        client.post("/dashboard/schedules/forecast/resume", headers={**creds, **SAME_ORIGIN}).get_json()["paused"]
        is False
    )
    assert redis.smembers(PAUSED_KEY) == set()

    run = client.post("/dashboard/schedules/daily-summary/run", headers={**creds, **SAME_ORIGIN})
    assert run.status_code == 202
    assert Queue("reports", connection=redis).job_ids == [run.get_json()["job_id"]]
    again = client.post("/dashboard/schedules/daily-summary/run", headers={**creds, **SAME_ORIGIN})
    assert again.status_code == 409 and again.get_json()["error"]["active_job_id"] == run.get_json()["job_id"]


@pytest.mark.parametrize(
    "path", ["/dashboard/schedules/forecast/pause", "/dashboard/schedules/forecast/run", "/dashboard/runs/abc/cancel"]
)
@pytest.mark.any_database
def test_page_actions_refuse_cross_origin_and_get(client, creds, redis, path):
    from app.scheduling import PAUSED_KEY

    refused = client.post(path, headers={**creds, "Origin": "http://evil.example"})
    assert refused.status_code == 403
    assert client.post(path, headers=creds).status_code == 403  # no Origin, no Referer
    assert client.get(path, headers={**creds, **SAME_ORIGIN}).status_code == 405
    assert redis.smembers(PAUSED_KEY) == set() and Queue("forecast", connection=redis).count == 0


def test_unknown_schedule_and_bad_run_ids(client, creds):
    headers = {**creds, **SAME_ORIGIN}
    assert client.post("/dashboard/schedules/nope/pause", headers=headers).status_code == 404
    assert client.post("/dashboard/runs/nope/cancel", headers=headers).status_code == 404
    response = client.post("/dashboard/runs/bad.id/cancel", headers=headers)
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_request"
    assert client.post(f"/dashboard/runs/{'a' * 65}/cancel", headers=headers).status_code == 400


def test_cancel_a_queued_run_from_the_page(client, creds, auth, redis):
    job_id = client.post("/api/jobs/forecast/trigger", headers=auth).get_json()["job_id"]
    active = client.get("/dashboard/data.json", headers=creds).get_json()["active_runs"]
    assert [(r["job_id"], r["status"], r["active"]) for r in active] == [(job_id, "queued", True)]
    response = client.post(f"/dashboard/runs/{job_id}/cancel", headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 200 and response.get_json()["status"] == "canceled"
    assert Queue("forecast", connection=redis).count == 0
    again = client.post(f"/dashboard/runs/{job_id}/cancel", headers={**creds, **SAME_ORIGIN})
    assert again.status_code == 409 and again.get_json()["error"]["run_status"] == "canceled"
    assert client.get("/dashboard/data.json", headers=creds).get_json()["active_runs"] == []


def test_search_a_run_by_id_or_prefix(client, creds, auth):
    job_id = client.post("/api/jobs/forecast/trigger", headers=auth).get_json()["job_id"]
    exact = client.get(f"/dashboard/runs?q={job_id}", headers=creds).get_json()["runs"]
    assert [(r["job_id"], r["status"], r["active"]) for r in exact] == [(job_id, "queued", True)]
    assert [r["job_id"] for r in client.get(f"/dashboard/runs?q={job_id[:6]}", headers=creds).get_json()["runs"]] == [
        job_id
    ]
    assert client.get("/dashboard/runs?q=zz", headers=creds).get_json()["runs"] == []
    assert client.get("/dashboard/runs?q=_", headers=creds).get_json()["runs"] == []  # LIKE wildcards are literal
    assert client.get("/dashboard/runs?q=%25%25%25", headers=creds).status_code == 400
    assert client.get("/dashboard/runs", headers=creds).mimetype == "text/html"  # no q: the run list page
    assert client.get("/dashboard/runs?q=" + "a" * 65, headers=creds).status_code == 400


def test_data_with_redis_down_keeps_the_database_parts(settings_overrides, creds):
    """Issue 14: with Redis down the page still shows runs, alerts, reports and schedules, and says Redis is down."""
    from app import create_app
    from app.connections import db_session
    from app.models import JobRun, create_tables, utcnow
    from tests.servers import free_port

    app = create_app({**settings_overrides, "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with db_session():
        create_tables()
        JobRun.create(
            id="db-run-1",
            job_name="forecast",
            queue="forecast",
            trigger="manual",
            status="failed",
            enqueued_at=utcnow(),
            started_at=utcnow(),
            ended_at=utcnow(),
            attempts=4,
            error="boom",
        )
    client = app.test_client()
    response = client.get("/dashboard/data.json", headers=creds)
    assert response.status_code == 200
    data = response.get_json()
    assert data["unavailable"] == ["redis"]
    assert data["queues"] is None and data["workers"] is None
    assert [r["job_id"] for r in data["recent_runs"]] == ["db-run-1"]
    assert data["alerts"] is not None and data["jobs"]["forecast"]["24h"]["failure"] == 1
    assert {s["name"] for s in data["schedules"]} == {"forecast", "daily-summary", "cleanup"}
    assert all(s["paused"] is None and "Redis unavailable" in s["state_note"] for s in data["schedules"])
    kinds = [p["kind"] for p in data["health"]["problems"]]
    assert "redis_unavailable" in kinds and "failed_runs" in kinds
    assert client.get("/dashboard/", headers=creds).status_code == 200  # the page still loads and says so


@pytest.mark.any_database
def test_static_files_are_guarded_and_typed(client, creds):
    assert client.get("/dashboard/static/dashboard.js").status_code == 401
    script = client.get("/dashboard/static/dashboard.js", headers=creds)
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    style = client.get("/dashboard/static/dashboard.css", headers=creds)
    assert style.status_code == 200 and style.mimetype == "text/css"
    assert client.get("/dashboard/static/../views.py", headers=creds).status_code == 404


def test_percentiles_when_the_window_is_a_small_part_of_the_history(client, creds):
    """Most runs are old: SQLite reads the window through the index instead of a table scan."""
    from datetime import timedelta

    from app.models import utcnow

    now = utcnow()
    for i in range(30):
        _run_row(f"old{i}", "forecast", "finished", now - timedelta(days=20 + i), 500)
    for i, seconds in enumerate([2, 4, 6]):
        _run_row(f"new{i}", "forecast", "finished", now - timedelta(hours=2 + i), seconds)
    week = client.get("/dashboard/data.json", headers=creds).get_json()["jobs"]["forecast"]["7d"]
    assert (week["runs"], week["duration_count"]) == (3, 3)
    assert week["duration_p50"] == pytest.approx(4.0, abs=0.01)
    assert week["duration_p95"] == pytest.approx(5.8, abs=0.01)


def test_unreadable_published_figures_do_not_break_the_page(app, client, creds, redis):
    from workers.worker import build_worker

    worker = build_worker(app.config["SETTINGS"], redis, name="odd-worker")
    worker.register_birth()
    redis.hset(worker.key, mapping={"svc_cpu_percent": "n/a", "svc_rss_bytes": "lots"})
    row = client.get("/dashboard/data.json", headers=creds).get_json()["workers"][0]
    assert (row["cpu_percent"], row["rss_bytes"]) == (None, None)
    assert client.get("/metrics").status_code == 200


def test_data_carries_the_latest_daily_report(client, creds, auth, run_worker):
    assert client.get("/dashboard/data.json", headers=creds).get_json()["daily_report"] is None
    job_id = client.post("/api/jobs/daily-summary/trigger", headers=auth).get_json()["job_id"]
    run_worker()
    report = client.get("/dashboard/data.json", headers=creds).get_json()["daily_report"]
    assert report["job_id"] == job_id and report["alerts"]["total"] == 0
    assert report["date"] == client.get(f"/api/jobs/daily-summary/{job_id}").get_json()["result"]["date"]
    assert 'id="card-report"' in client.get("/dashboard/", headers=creds).get_data(as_text=True)
