"""rq-dashboard under /dashboard/rq: no request value reaches a script, every URL names something
real or is a 404 before any template renders, and every job link opens a working page.

Issue 11, points 1 (reflected XSS through a queue name in the URL, allowed by a CSP that hashed
the response's own inline scripts) and 7 (the job data of a run queued with `force` was a 500;
"rq →" links of skipped or expired runs opened a raw JSON 404). The browser side of the same
is in test_dashboard_browser.py.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from urllib.parse import quote

import pytest
from flask import template_rendered
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

from tests.test_dashboard import SAME_ORIGIN, basic, enqueue_never_run

# The issue's URL, and the same break-out in other shapes. None may run, none may be reflected.
ISSUE_URL = (
    "/dashboard/rq/0/view/jobs/x%27%29%3B%7D%7D%29%3Bwindow.__pwned%3Ddocument.domain%3B%24%28function"
    "%28%29%7Bif%281%29%7B%24%28this%29.val%28%27/queued/20/asc/1"
)
HOSTILE = [
    "x');}});window.__pwned=document.domain;$(function(){if(1){$(this).val('",
    "x');fetch('\\x2fdashboard\\x2fschedules\\x2fforecast\\x2fpause',{method:'POST'});0",
    "x</script><img src=x onerror=window.__pwned=1>",
    "x</SCRIPT ><svg onload=window.__pwned=1>",
    "x\\u0027);window.__pwned=1;0",
    "x\u2028window.__pwned=1;0",
    "x\uff07);window.__pwned=1;0",
    "x%27);window.__pwned=1;0",
    "x%2527);window.__pwned=1;0",
    'x";window.__pwned=1;0',
    "x`;window.__pwned=1;0${1}",
    "{{7*7}}pwned",
    "<%= window.__pwned=1 %>",
    "pwned\x00",
    "pwned\r\nX-Injected: 1",
    "forecast pwned",
    "Forecast",
    "..",
    "-1",
    "0",
    "00",
    "1e3",
    "201",
    "1000001",
    "99999999999999999999999",
    "pwned" * 2000,
    "é-pwned",
    "null",
    "undefined",
    "queued;pwned",
    "asc pwned",
]
# Valid values for every segment of every rq-dashboard route, so one segment at a time is hostile.
VALID = {
    "instance_number": "0",
    "queue_name": "forecast",
    "registry_name": "failed",
    "per_page": "8",
    "order": "asc",
    "page": "1",
    "filename": "css/main.css",
}
ALSO_VALID = {"instance_number": {"0", "00"}, "page": {"201"}}  # instance 0 exists; page 201 is a page
EXECUTABLE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*text/template)(?![^>]*application/json)[^>]*>", re.I)


@pytest.fixture
def creds():
    return basic()


@pytest.fixture
def job(redis):
    return enqueue_never_run(redis, 1)


@contextmanager
def rendered_templates(app):
    names: list[str] = []

    def record(sender, template, context, **extra):
        names.append(template.name)

    template_rendered.connect(record, app)
    try:
        yield names
    finally:
        template_rendered.disconnect(record, app)


def rq_rules(app):
    return [r for r in app.url_map.iter_rules() if r.endpoint.startswith("rq_dashboard.")]


def build_path(rule, values: dict[str, str]) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: values[m.group(1)], rule.rule)


def assert_harmless(response, value: str = "pwned") -> None:
    """Never a 500; never the value back; never an executable inline script."""
    body = response.get_data(as_text=True)
    assert response.status_code < 500, (response.status_code, body[:300])
    assert "pwned" not in body.lower() and "Traceback" not in body
    assert EXECUTABLE_SCRIPT.search(body) is None
    csp = response.headers["Content-Security-Policy"]
    assert "sha256-" not in csp and "'unsafe-inline'" not in csp.split("; ")[1]


# --- point 1: the reported URL and its shapes ------------------------------------------------------


@pytest.mark.any_database
def test_the_reported_url_is_404_before_any_template(app, client, creds):
    with rendered_templates(app) as rendered:
        response = client.get(ISSUE_URL, headers=creds)
    assert response.status_code == 404
    assert response.get_json()["error"] == {"code": "not_found", "message": "no such queue"}
    assert rendered == []
    assert_harmless(response)


def refusals(value: str) -> set[int]:
    """404 for a name that names nothing; a NUL anywhere in a URL is refused earlier, app-wide (400)."""
    return {400, 404} if "\x00" in value else {404}


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.any_database
def test_hostile_queue_names_are_404_in_every_queue_route(app, client, creds, redis, value):
    enqueue_never_run(redis, 1)
    segment = quote(value, safe="")
    paths = [
        f"/dashboard/rq/0/view/jobs/{segment}/queued/8/asc/1",
        f"/dashboard/rq/0/data/jobs/{segment}/queued/8/asc/1.json",
    ]
    posts = [
        f"/dashboard/rq/queue/{segment}/queued/empty",
        f"/dashboard/rq/queue/{segment}/compact",
        f"/dashboard/rq/requeue/{segment}",
    ]
    with rendered_templates(app) as rendered:
        for path in paths:
            response = client.get(path, headers=creds)
            assert response.status_code in refusals(value), path
            assert_harmless(response)
        for path in posts:
            response = client.post(path, headers={**creds, **SAME_ORIGIN})
            assert response.status_code in refusals(value), path
            assert_harmless(response)
    assert rendered == []
    assert Queue("forecast", connection=redis).count == 1


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/rq/0/view/jobs/forecast/nope/8/asc/1",  # registry
        "/dashboard/rq/0/view/jobs/forecast/queued/0/asc/1",  # page size 0 (upstream: ZeroDivisionError)
        "/dashboard/rq/0/view/jobs/forecast/queued/201/asc/1",
        "/dashboard/rq/0/view/jobs/forecast/queued/8/up/1",  # order
        "/dashboard/rq/0/view/jobs/forecast/queued/8/asc/0",  # page
        "/dashboard/rq/0/view/jobs/forecast/queued/8/asc/99999999999",
        "/dashboard/rq/0/data/jobs/forecast/nope/8/asc/1.json",  # upstream: UnboundLocalError, 500
        "/dashboard/rq/0/data/jobs/forecast/queued/0/asc/1.json",
        "/dashboard/rq/0/data/jobs/forecast/queued/x/asc/1.json",  # upstream: ValueError, 500
        "/dashboard/rq/0/data/jobs/forecast/queued/8/asc/-1.json",
        "/dashboard/rq/0/data/jobs/forecast/queued/8/sideways/1.json",
        "/dashboard/rq/0/data/jobs/no-such-queue/queued/8/asc/1.json",
        "/dashboard/rq/0/data/job/no-such-job.json",
        "/dashboard/rq/0/data/job/bad.id.json",
    ],
)
@pytest.mark.any_database
def test_unknown_segments_are_404_before_any_template(app, client, creds, path):
    with rendered_templates(app) as rendered:
        response = client.get(path, headers=creds)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    assert rendered == []


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/rq/queue/forecast/nope/empty",
        "/dashboard/rq/job/no-such-job/delete",
        "/dashboard/rq/job/no-such-job/requeue",
        "/dashboard/rq/queue/nope/compact",
        "/dashboard/rq/requeue/nope",
    ],
)
@pytest.mark.any_database
def test_actions_on_unknown_things_are_404(client, creds, redis, path):
    enqueue_never_run(redis, 1)
    response = client.post(path, headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 404
    assert Queue("forecast", connection=redis).count == 1


@pytest.mark.any_database
def test_real_names_still_work(client, creds, redis, job):
    """The guard is no wall: every queue of the service and every registry opens, with data."""
    enqueue_never_run(redis, 1, queue="reports")
    for queue in ("forecast", "reports", "maintenance", "default"):
        for registry in ("queued", "scheduled", "deferred", "started", "finished", "failed", "canceled"):
            for order in ("asc", "dsc"):
                view = client.get(f"/dashboard/rq/0/view/jobs/{queue}/{registry}/200/{order}/3", headers=creds)
                assert view.status_code == 200, (queue, registry)
                data = client.get(f"/dashboard/rq/0/data/jobs/{queue}/{registry}/8/{order}/1.json", headers=creds)
                assert data.status_code == 200, (queue, registry)
    jobs = client.get("/dashboard/rq/0/data/jobs/forecast/queued/8/asc/1.json", headers=creds).get_json()["jobs"]
    assert [j["id"] for j in jobs] == [job.id]
    assert client.get(f"/dashboard/rq/0/view/job/{job.id}", headers=creds).status_code == 200
    assert client.get("/dashboard/rq/0/view/jobs", headers=creds).status_code == 200  # RQ's default queue


@pytest.mark.any_database
def test_a_queue_rq_has_in_redis_opens_too(client, creds, redis):
    enqueue_never_run(redis, 1, queue="adhoc-queue.v2")
    assert client.get("/dashboard/rq/0/view/jobs/adhoc-queue.v2/queued/8/asc/1", headers=creds).status_code == 200
    assert client.get("/dashboard/rq/0/view/jobs/adhoc-queue.v3/queued/8/asc/1", headers=creds).status_code == 404


@pytest.mark.any_database
def test_a_hostile_queue_name_stored_in_redis_is_not_served(client, creds, redis):
    """Only someone with Redis could store one; it still never reaches a page."""
    name = "x');window.__pwned=1;0"
    enqueue_never_run(redis, 1, queue=name)
    response = client.get(f"/dashboard/rq/0/view/jobs/{quote(name, safe='')}/queued/8/asc/1", headers=creds)
    assert response.status_code == 404
    assert_harmless(response)


def test_fuzz_every_rq_dashboard_route_one_segment_at_a_time(app, client, creds, job):
    """Each variable of each rule gets each hostile value, by each method: 404/405, never a 500,
    never reflected, never a template rendered for a value that names nothing."""
    rules = rq_rules(app)
    assert {
        "rq_dashboard.jobs_overview",
        "rq_dashboard.list_jobs",
        "rq_dashboard.job_info",
        "rq_dashboard.empty_queue",
        "rq_dashboard.static",
    } <= {r.endpoint for r in rules}
    checked = 0
    for rule in rules:
        for name in re.findall(r"<(?:[^:>]+:)?([^>]+)>", rule.rule):
            for value in HOSTILE:
                if value in ALSO_VALID.get(name, ()):
                    continue
                path = build_path(rule, {**VALID, "job_id": job.id, name: quote(value, safe="")})
                for method in sorted(rule.methods - {"OPTIONS"}):
                    with rendered_templates(app) as rendered:
                        response = client.open(path, method=method, headers={**creds, **SAME_ORIGIN})
                    assert response.status_code in refusals(value) | {405}, (method, path, response.status_code)
                    # none of rq-dashboard's; a missing job's page is the service's own explanation
                    assert set(rendered) <= {"dashboard/rq_missing_job.html"}, (method, path)
                    assert_harmless(response)
                    checked += 1
    assert checked > 1000


SEGMENT_PARTS = st.sampled_from(
    [
        "'",
        '"',
        "<",
        ">",
        "</script>",
        "\\u0027",
        "%27",
        "%2527",
        "\u2028",
        "\x00",
        "`",
        "${",
        "{{",
        "<%=",
        "forecast",
        "queued",
        "asc",
        "8",
        "1",
        "..",
        " ",
        "é",
        "pwned",
    ]
)
SEGMENTS = st.lists(st.one_of(SEGMENT_PARTS, st.text(min_size=1, max_size=8)), min_size=1, max_size=6).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_random_segments(app, client, creds, data):
    rule = data.draw(st.sampled_from([r for r in rq_rules(app) if r.arguments - {"instance_number"}]))
    values = {**VALID, "job_id": "no-such-job"}
    for name in rule.arguments - {"instance_number"}:
        values[name] = quote(data.draw(SEGMENTS, label=name), safe="")
    path = build_path(rule, values)
    method = data.draw(st.sampled_from(sorted(rule.methods - {"OPTIONS"})))
    response = client.open(path, method=method, headers={**creds, **SAME_ORIGIN})
    assert response.status_code < 500, (method, path)
    body = response.get_data(as_text=True)
    assert EXECUTABLE_SCRIPT.search(body) is None and "Traceback" not in body
    if response.status_code == 200 and response.mimetype == "text/html":
        assert "pwned" not in body


@pytest.mark.any_database
def test_page_values_reach_the_page_only_as_json_data(client, creds, job):
    """Even where a value does reach a page, it is JSON in a block that never runs, escaped."""
    html = client.get("/dashboard/rq/0/view/jobs/forecast/failed/8/dsc/2", headers=creds).get_data(as_text=True)
    block = re.search(r'<script type="application/json" id="rq-page-config">(.*?)</script>', html, re.S)[1]
    assert json.loads(block) == {
        "poll_interval": 2500,
        "rq_url_prefix": "/dashboard/rq/",
        "current_instance": 0,
        "id": None,
        "queue_name": "forecast",
        "registry_name": "failed",
        "per_page": 8,
        "order": "dsc",
        "page": 2,
    }
    assert EXECUTABLE_SCRIPT.search(html) is None
    job_html = client.get(f"/dashboard/rq/0/view/job/{job.id}", headers=creds).get_data(as_text=True)
    assert json.loads(re.search(r'id="rq-page-config">(.*?)</script>', job_html, re.S)[1])["id"] == job.id


@pytest.mark.any_database
def test_without_the_path_guard_the_page_still_cannot_run_a_payload(app, client, creds, monkeypatch):
    """Defence in depth: with the segment check switched off, upstream renders the hostile name,
    but only as escaped JSON data, and the CSP is the fixed one (no hash of anything)."""
    import dashboard.rq_guard

    monkeypatch.setattr(dashboard.rq_guard, "check_rq_request", lambda: None)
    for value in [v for v in HOSTILE[:11] if "/" not in v]:  # a "/" splits the segment: no route
        response = client.get(f"/dashboard/rq/0/view/jobs/{quote(value, safe='')}/queued/8/asc/1", headers=creds)
        assert response.status_code == 200, (value, response.get_data(as_text=True)[:200])
        html = response.get_data(as_text=True)
        assert EXECUTABLE_SCRIPT.search(html) is None
        assert response.headers["Content-Security-Policy"].split("; ")[1] == "script-src 'self' 'unsafe-eval'"
        block = re.search(r'<script type="application/json" id="rq-page-config">(.*?)</script>', html, re.S)[1]
        assert json.loads(block)["queue_name"] == value
        assert not re.search(r"[<>']", block)  # tojson escapes what could end the block or a string
        assert value not in html.replace(block, "") or not re.search(r"[<>'\"&]", value)


@pytest.mark.any_database
def test_compiled_scripts_are_fixed_at_start_up(client, creds, redis):
    """The script a page loads is the same bytes whatever the URL or data: it holds no values."""
    from dashboard.rq_pages import PAGE_SCRIPTS

    assert set(PAGE_SCRIPTS) == {"queues", "workers", "jobs", "job"}
    enqueue_never_run(redis, "<script>")
    for page in PAGE_SCRIPTS:
        first = client.get(f"/dashboard/rq-scripts/{page}.js", headers=creds)
        assert first.data == PAGE_SCRIPTS[page].body and first.headers["ETag"]
        again = client.get(
            f"/dashboard/rq-scripts/{page}.js", headers={**creds, "If-None-Match": first.headers["ETag"]}
        )
        assert again.status_code == 304
        text = first.get_data(as_text=True)
        assert "RQ_PAGE[" in text and "{{" not in text and "{%" not in text
    assert '$(this).val(RQ_PAGE["queue_name"])' in PAGE_SCRIPTS["jobs"].body.decode()


def test_a_changed_upstream_template_fails_at_start_up(tmp_path):
    """If an rq-dashboard upgrade adds a script expression or an inline script, the app refuses
    to start rather than serve it."""
    import shutil

    import rq_dashboard.web
    from jinja2 import FileSystemLoader

    from dashboard.rq_pages import RqPagesError, build_page_scripts, rewrite_template

    upstream = rq_dashboard.web.blueprint.jinja_loader.searchpath[0]
    copy = tmp_path / "templates"
    shutil.copytree(upstream, copy)
    pages = build_page_scripts(FileSystemLoader(str(copy)))
    assert set(pages) == {"queues", "workers", "jobs", "job"}
    jobs_js = copy / "rq_dashboard" / "scripts" / "jobs.js"
    jobs_js.write_text(jobs_js.read_text() + "\nvar leak = '{{ request.path }}';\n")
    with pytest.raises(RqPagesError, match="unknown template expression"):
        build_page_scripts(FileSystemLoader(str(copy)))
    with pytest.raises(RqPagesError, match="executable inline"):
        rewrite_template("rq_dashboard/x.html", "<p></p><script>var a = 1;</script>", pages)
    with pytest.raises(RqPagesError, match="inline script block"):
        rewrite_template("rq_dashboard/base.html", "<html></html>", pages)


# --- point 7: job data of forced runs, and every job link --------------------------------------------


def _force(client, auth) -> tuple[str, str]:
    first = client.post("/api/jobs/forecast/trigger", headers=auth).get_json()["job_id"]
    forced = client.post("/api/jobs/forecast/trigger", headers=auth, json={"force": True})
    assert forced.status_code == 202, forced.get_json()
    return first, forced.get_json()["job_id"]


def test_job_data_of_a_run_queued_with_force(client, creds, auth, redis):
    """Upstream decodes rq 2.x's str dependency ids: AttributeError, a 500 and a blank page."""
    first, forced = _force(client, auth)
    response = client.get(f"/dashboard/rq/0/data/job/{forced}.json", headers=creds)
    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_json()
    assert data["id"] == forced and data["status"] == "deferred"
    assert data["depends_on"] == [first] and data["depends_on_status"] == ["active"]
    assert client.get(f"/dashboard/rq/0/view/job/{forced}", headers=creds).status_code == 200
    Job.fetch(first, connection=redis).delete()
    data = client.get(f"/dashboard/rq/0/data/job/{forced}.json", headers=creds).get_json()
    assert data["depends_on_status"] == ["expired"]


@pytest.mark.any_database
def test_job_data_survives_an_unserialisable_result_and_meta(client, creds, redis):
    job = enqueue_never_run(redis, 1)
    job.meta["when"] = {1, 2}  # a set: not JSON
    job.save_meta()
    response = client.get(f"/dashboard/rq/0/data/job/{job.id}.json", headers=creds)
    assert response.status_code == 200
    assert "{1, 2}" in response.get_json()["metadata"]


@pytest.mark.any_database
def test_requeue_of_a_job_that_did_not_fail_is_409_and_compact_of_an_empty_queue_is_ok(client, creds, redis, job):
    response = client.post(f"/dashboard/rq/job/{job.id}/requeue", headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "conflict"
    assert Queue("forecast", connection=redis).get_job_ids() == [job.id]
    Queue("forecast", connection=redis).remove(job.id)
    FailedJobRegistry("forecast", connection=redis).add(job, exc_string="boom")
    response = client.post(f"/dashboard/rq/job/{job.id}/requeue", headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 200 and Queue("forecast", connection=redis).get_job_ids() == [job.id]
    assert client.post("/dashboard/rq/queue/reports/compact", headers={**creds, **SAME_ORIGIN}).status_code == 200


def _row(run_id: str, status: str, error: str | None = None):
    from app.connections import db_session
    from app.models import JobRun, utcnow

    with db_session():
        JobRun.create(
            id=run_id,
            job_name="forecast",
            queue="forecast",
            trigger="scheduled",
            status=status,
            enqueued_at=utcnow(),
            ended_at=utcnow(),
            attempts=0,
            error=error,
        )


def test_data_says_which_runs_have_an_rq_job(client, creds, auth, redis):
    queued = client.post("/api/jobs/forecast/trigger", headers=auth).get_json()["job_id"]
    _row("skipped-run", "skipped", "skipped: the previous run was still active")
    _row("expired-run", "finished")
    data = client.get("/dashboard/data.json", headers=creds).get_json()
    flags = {r["job_id"]: r["rq_job"] for r in data["recent_runs"]}
    assert flags == {queued: True, "skipped-run": False, "expired-run": False}
    assert [(r["job_id"], r["rq_job"]) for r in data["active_runs"]] == [(queued, True)]
    found = client.get("/dashboard/runs?q=skipped-run", headers=creds).get_json()["runs"]
    assert [(r["job_id"], r["rq_job"]) for r in found] == [("skipped-run", False)]


def test_worker_whose_job_expired_has_no_job_link(client, creds, redis, job):
    from rq import Worker

    worker = Worker(["forecast"], connection=redis, name="w-expired")
    worker.register_birth()
    worker.set_current_job_id("gone-job")
    busy = Worker(["forecast"], connection=redis, name="w-busy")
    busy.register_birth()
    busy.set_current_job_id(job.id)
    rows = {w["name"]: w for w in client.get("/dashboard/data.json", headers=creds).get_json()["workers"]}
    assert rows["w-expired"]["current_job_exists"] is False and rows["w-busy"]["current_job_exists"] is True


@pytest.mark.parametrize(
    ("run_id", "status", "says"),
    [
        ("skipped-run", "skipped", "never queued in RQ"),
        ("expired-run", "finished", "no longer keeps"),
        ("never-was", None, "no run with it either"),
    ],
)
def test_the_job_page_of_a_missing_rq_job_explains(app, client, creds, run_id, status, says):
    if status:
        _row(run_id, status, "skipped: <b>previous run active</b>" if status == "skipped" else None)
    response = client.get(f"/dashboard/rq/0/view/job/{run_id}", headers=creds)
    assert response.status_code == 404 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert says in html and 'href="/dashboard/"' in html
    assert "<b>" not in html  # the stored reason is shown as text
    assert EXECUTABLE_SCRIPT.search(html) is None and "<script" not in html


@pytest.mark.any_database
def test_the_job_page_of_a_malformed_id_does_not_echo_it(client, creds):
    response = client.get("/dashboard/rq/0/view/job/" + quote("x'><svg onload=alert(1)>pwned", safe=""), headers=creds)
    assert response.status_code == 404
    assert_harmless(response)


@pytest.mark.any_database
def test_rq_workers_list_survives_a_worker_whose_job_expired(client, creds, redis, job):
    """Upstream fetched each current job: one expired job made the whole list a 404."""
    from rq import Worker

    for name, current in (("w-gone", "job-long-gone"), ("w-busy", job.id)):
        worker = Worker(["forecast"], connection=redis, name=name)
        worker.register_birth()
        worker.set_state("busy")
        worker.set_current_job_id(current)
    response = client.get("/dashboard/rq/0/data/workers.json", headers=creds)
    assert response.status_code == 200
    rows = {w["name"]: w for w in response.get_json()["workers"]}
    assert rows["w-gone"]["current_job"]["job_id"] == "job-long-gone" and rows["w-gone"]["state"] == "busy"
    assert rows["w-busy"]["current_job"]["job_id"] == job.id
