"""The run pages (`/dashboard/runs/<id>`, `/dashboard/runs`) and `GET /api/runs`, through Flask's
client, on SQLite and PostgreSQL, with real Redis and real RQ jobs (a real fan-out for the chunks).

What a browser does with them (links from the home page, actions and their feedback, the phone
width) is in tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from app.connections import db_session
from app.core import run_history
from app.models import Alert, JobRun, RunAttempt
from tests.test_dashboard import SAME_ORIGIN, basic

# The pages render what the queries return: PostgreSQL only. The listing's filters, pages and
# cursors are SQL, so those tests run on both databases (`BOTH_DATABASES`).
pytestmark = pytest.mark.postgres_only
BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)

SCRIPT = "<script>window.__x=1</script>"
QUOTES = 'it\'s "quoted" & <b>bold</b>'
BASE = datetime(2026, 11, 1, 12, 0, 0)


@pytest.fixture
def creds():
    return basic()


def make_run(run_id: str, **fields) -> JobRun:
    values = {
        "job_name": "forecast",
        "queue": "forecast",
        "trigger": "manual",
        "status": "finished",
        "enqueued_at": BASE,
        "attempts": 1,
    }
    values.update(fields)
    with db_session():
        return JobRun.create(id=run_id, **values)


def html(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


# --- one run ----------------------------------------------------------------------------------------


def test_run_page_shows_the_run_its_attempts_result_and_alerts(client, creds):
    started = BASE + timedelta(seconds=2)
    make_run(
        "run-failed-twice",
        status="failed",
        trigger="scheduled",
        slot=BASE,
        started_at=started + timedelta(minutes=1),
        ended_at=started + timedelta(minutes=1, seconds=30),
        attempts=2,
        error="RuntimeError: feed down",
        result={"partial": True, "note": "kept"},
    )
    with db_session():
        RunAttempt.create(
            run="run-failed-twice",
            number=1,
            worker="worker-a",
            started_at=started,
            ended_at=started + timedelta(seconds=5),
            status="failed",
            error="TimeoutError: first",
            traceback='Traceback (most recent call last):\n  File "x.py", line 1\nTimeoutError: first',
            next_retry_at=started + timedelta(minutes=1),
        )
        RunAttempt.create(
            run="run-failed-twice",
            number=2,
            worker="worker-b",
            started_at=started + timedelta(minutes=1),
            ended_at=started + timedelta(minutes=1, seconds=30),
            status="failed",
            error="RuntimeError: feed down",
            traceback="Traceback (most recent call last):\nRuntimeError: feed down",
        )
        for i, job_id in enumerate(["run-failed-twice", "run-failed-twice", "another-run"]):
            Alert.create(
                type="demand_spike",
                severity="high",
                title=f"spike {i}",
                message="m",
                subject=f"item:{i}",
                fingerprint=f"f{i}",
                job_id=job_id,
            )
    page = html(client.get("/dashboard/runs/run-failed-twice", headers=creds))
    assert 'id="run-status">failed<' in page
    assert "scheduler" in page  # who triggered it: the scheduler, for a scheduled run
    assert "2026-11-01 12:00:00 UTC" in page  # enqueued / slot
    assert "30.0 s" in page  # duration of the run (its last attempt)
    attempts = re.findall(r'data-attempt="(\d)" data-status="(\w+)"', page)
    assert attempts == [("1", "failed"), ("2", "failed")]
    assert "worker-a" in page and "worker-b" in page
    assert "TimeoutError: first" in page and "next retry" in page
    assert page.count('<details class="traceback">') == 2  # full tracebacks, collapsed
    assert "File &#34;x.py&#34;, line 1" in page
    assert "&#34;partial&#34;: true" in page  # the result JSON
    assert 'Alerts it raised <span class="muted">(2)</span>' in page
    assert "spike 0" in page and "spike 1" in page and "spike 2" not in page
    assert re.findall(r'data-action="(\w+)"', page) == ["retry"]


def test_run_page_of_a_run_without_attempt_records_shows_its_last_attempt(client, creds):
    make_run("old-run", status="failed", started_at=BASE, ended_at=BASE + timedelta(seconds=3), attempts=3, error="E")
    page = html(client.get("/dashboard/runs/old-run", headers=creds))
    assert re.findall(r'data-attempt="(\d)"', page) == ["3"]
    assert "were not recorded one by one" in page
    assert "manual (who is not recorded)" in page


@pytest.mark.parametrize(
    ("status", "actions"),
    [("queued", ["cancel"]), ("scheduled", ["cancel"]), ("started", ["stop"]), ("finished", []),
     ("failed", ["retry"]), ("stopped", ["retry"]), ("canceled", ["retry"]), ("skipped", ["retry"])],
)  # fmt: skip
def test_actions_follow_the_status(client, creds, status, actions):
    make_run("r", status=status)
    page = html(client.get("/dashboard/runs/r", headers=creds))
    assert re.findall(r'data-action="(\w+)"', page) == actions
    assert f'data-active="{"true" if status in ("queued", "scheduled", "started") else "false"}"' in page


def test_markup_in_run_data_is_text(client, creds):
    """Errors, tracebacks, results, alert texts and worker names are data: escaped, never markup."""
    make_run("xss", status="failed", error=f"E: {SCRIPT} {QUOTES}", result={"x": SCRIPT})
    with db_session():
        RunAttempt.create(run="xss", number=1, worker=SCRIPT, status="failed", error=SCRIPT, traceback=QUOTES)
        Alert.create(
            type="t", severity="high", title=SCRIPT, message=QUOTES, subject=SCRIPT, fingerprint="x", job_id="xss"
        )
    response = client.get("/dashboard/runs/xss", headers=creds)
    page = html(response)
    assert "<script>window" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;window.__x=1&lt;/script&gt;" in page
    assert "it&#39;s &#34;quoted&#34; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert re.findall(r"<script\b([^>]*)>", page) == [
        ' src="/dashboard/static/clock.js" defer',
        ' src="/dashboard/static/runs.js" defer',
    ]
    assert "style=" not in page and "<style" not in page
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp
    assert response.headers["Cache-Control"] == "no-store"


def test_retry_links_both_ways(client, creds):
    make_run("first", status="failed", error="E")
    make_run("second", status="failed", trigger="retry", retry_of="first", enqueued_at=BASE + timedelta(minutes=1))
    make_run("third", status="finished", trigger="retry", retry_of="second", enqueued_at=BASE + timedelta(minutes=2))
    first = html(client.get("/dashboard/runs/first", headers=creds))
    assert 'href="/dashboard/runs/second"' in first and "retry of" not in first
    second = html(client.get("/dashboard/runs/second", headers=creds))
    assert 'id="run-retry-of" href="/dashboard/runs/first"' in second
    assert 'href="/dashboard/runs/third"' in second


def test_run_page_errors_are_json(client, creds):
    assert client.get("/dashboard/runs/r1").status_code == 401
    missing = client.get("/dashboard/runs/no-such-run", headers=creds)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    for bad in ("bad.id", "a" * 65):
        response = client.get(f"/dashboard/runs/{bad}", headers=creds)
        assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_request"


# --- chunks of a fanned-out run -----------------------------------------------------------------------


class TestChunks:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "forecast_fanout_threshold": 20, "forecast_chunk_size": 16}

    def test_chunk_progress_of_a_real_fan_out(self, app, client, creds, auth):
        from app.forecast import demo
        from tests.test_fanout import work

        with db_session():
            demo.seed_demo(items=60, days=120, seed=3)
        run_id = client.post("/api/jobs/forecast/trigger", headers=auth).get_json()["job_id"]
        work(app, max_jobs=1)  # the run's own job plans and fans out: 4 chunks queued
        page = html(client.get(f"/dashboard/runs/{run_id}", headers=creds))
        assert "0 of 4 chunks finished" in page and "gather deferred" in page
        assert re.findall(r'data-chunk="(\d)" data-status="(\w+)"', page) == [(str(i), "queued") for i in range(4)]
        assert 'data-action="stop"' in page

        work(app, max_jobs=2)
        page = html(client.get(f"/dashboard/runs/{run_id}", headers=creds))
        assert "2 of 4 chunks finished" in page

        work(app)
        page = html(client.get(f"/dashboard/runs/{run_id}", headers=creds))
        assert 'id="run-status">finished<' in page and "4 of 4 chunks finished" in page
        detail = run_history.run_detail(run_id, app.extensions["redis"])
        assert detail["chunks"]["done"] == 4 and all(c["worker"] for c in detail["chunks"]["chunks"])

    def test_a_chunk_that_failed_for_good_is_named_with_its_error(self, app, client, creds, auth):
        from app.forecast import demo
        from tests.test_fanout import use_settings, work

        with db_session():
            demo.seed_demo(items=60, days=120, seed=3)
        use_settings(app.config["SETTINGS"], forecast_chunk_fault="2:99", job_max_retries=1)
        run_id = client.post("/api/jobs/forecast/trigger", headers=auth).get_json()["job_id"]
        work(app)
        page = html(client.get(f"/dashboard/runs/{run_id}", headers=creds))
        assert 'id="run-status">failed<' in page
        row = re.search(r'<tr data-chunk="2" data-status="failed">(.*?)</tr>', page, re.S).group(1)
        assert "planned failure of chunk 2" in row and '<td class="num">2</td>' in row  # its 2nd attempt
        assert "3 of 4 chunks finished" in page and 'data-action="retry"' in page

    def test_without_redis_the_page_still_answers(self, settings_overrides, creds):
        from app import create_app
        from app.models import create_tables

        app = create_app({**settings_overrides, "redis_url": "redis://127.0.0.1:1/0"})
        with app.app_context(), db_session():
            create_tables()
        make_run("fanned", status="finished", result={"fanout": {"chunks": 4}})
        make_run("running", status="started", started_at=BASE)
        make_run("small", status="finished", result={"series": 3})
        client = app.test_client()
        page = html(client.get("/dashboard/runs/fanned", headers=creds))
        assert "4 chunks; progress unavailable: Redis is unreachable" in page
        assert "Redis is unreachable" in html(client.get("/dashboard/runs/running", headers=creds))
        assert 'id="run-chunks"' not in html(client.get("/dashboard/runs/small", headers=creds))
        assert "1 run matches" in html(client.get("/dashboard/runs?job=forecast&status=started", headers=creds))


# --- the list ---------------------------------------------------------------------------------------------


def seed_history() -> list[str]:
    """36 runs over three jobs, two of them sharing each enqueue time (keyset ties); newest first."""
    rows = []
    jobs = [("forecast", "forecast"), ("daily-summary", "reports"), ("cleanup", "maintenance")]
    for i in range(36):
        job, queue = jobs[i % 3]
        status = ["finished", "failed", "stopped", "queued"][i % 4]
        rows.append(
            {
                "id": f"h-{i:03d}",
                "job_name": job,
                "queue": queue,
                "trigger": "scheduled" if i % 2 else "manual",
                "status": status,
                "enqueued_at": BASE + timedelta(minutes=i // 2),
                "attempts": 1,
                "error": f"RuntimeError: 100%_done feed {i}" if status == "failed" else None,
            }
        )
    with db_session():
        JobRun.insert_many(rows).execute()
    return [r["id"] for r in sorted(rows, key=lambda r: (r["enqueued_at"], r["id"]), reverse=True)]


def api_pages(client, **params) -> list[dict]:
    pages = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/runs", query_string=query)
        assert response.status_code == 200, response.get_json()
        pages.append(response.get_json())
        cursor = pages[-1]["next_cursor"]
        if not cursor:
            return pages


@BOTH_DATABASES
def test_api_pages_through_every_run_once_newest_first(client):
    expected = seed_history()
    pages = api_pages(client, limit=7)
    assert [len(p["runs"]) for p in pages] == [7, 7, 7, 7, 7, 1]
    assert [r["job_id"] for p in pages for r in p["runs"]] == expected
    assert {p["total"] for p in pages} == {36} and not any(p["total_capped"] for p in pages)


@BOTH_DATABASES
@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"job": "cleanup"}, lambda i: i % 3 == 2),
        ({"status": "failed"}, lambda i: i % 4 == 1),
        ({"trigger": "manual"}, lambda i: i % 2 == 0),
        ({"job": "forecast", "status": "finished"}, lambda i: i % 3 == 0 and i % 4 == 0),
        ({"since": "2026-11-01T12:05:00", "until": "2026-11-01T12:10:00"}, lambda i: 10 <= i < 20),
        ({"since": "2026-11-01T13:05:00+01:00"}, lambda i: i >= 10),  # a zone: converted to UTC
        ({"error": "100%_DONE feed 1"}, lambda i: i % 4 == 1 and str(i).startswith("1")),  # any case, % _ literal
        ({"error": "1_0"}, lambda i: False),  # as a LIKE wildcard "_" would match "100"
        ({"error": "feed%1"}, lambda i: False),  # as a LIKE wildcard "%" would match "feed 1"
        ({"job": "", "status": "", "error": "  "}, lambda i: True),  # empty: not filtered
    ],
)
def test_api_filters(client, params, keep):
    expected = [run_id for run_id in seed_history() if keep(int(run_id[2:]))]
    pages = api_pages(client, limit=4, **params)
    assert [r["job_id"] for p in pages for r in p["runs"]] == expected
    assert pages[0]["total"] == len(expected)


@BOTH_DATABASES
def test_total_is_capped(client, monkeypatch):
    seed_history()
    monkeypatch.setattr(run_history, "COUNT_CAP", 10)
    body = client.get("/api/runs?limit=5").get_json()
    assert (body["total"], body["total_capped"]) == (10, True)
    body = client.get("/api/runs?job=forecast&status=failed").get_json()
    assert (body["total"], body["total_capped"]) == (3, False)


@BOTH_DATABASES
@pytest.mark.parametrize(
    "query",
    [
        "status=bogus",
        "job=nope",
        "trigger=cron",
        "since=yesterday",
        "since=2026-11-02T00:00:00&until=2026-11-01T00:00:00",
        "since=2026-11-01T00:00:00&until=2026-11-01T00:00:00",
        "since=9999-12-31T23:59:59-12:00",
        "limit=0",
        "limit=201",
        "limit=x",
        "cursor=not-a-cursor",
        "cursor=" + "A" * 300,
        "error=" + "e" * 201,
        "colour=red",
        "status=failed&status=stopped",
    ],
)
def test_bad_filters_are_400_json_and_change_nothing(client, creds, query):
    seed_history()
    for path in ("/api/runs", "/dashboard/runs"):
        response = client.get(f"{path}?{query}", headers=creds)
        assert response.status_code == 400, (path, query, response.get_data(as_text=True)[:300])
        error = response.get_json()["error"]
        assert error["code"] == "bad_request" and error["message"]
    with db_session():
        assert JobRun.select().count() == 36


def test_api_runs_needs_the_token_when_reads_are_protected(settings_overrides, auth):
    from app import create_app

    app = create_app({**settings_overrides, "api_read_auth": "on"})
    client = app.test_client()
    assert client.get("/api/runs").status_code == 401
    from app.models import create_tables

    with app.app_context(), db_session():
        create_tables()
    assert client.get("/api/runs", headers=auth).status_code == 200


def test_openapi_documents_api_runs(client):
    document = client.get("/api/openapi.json").get_json()
    operation = document["paths"]["/api/runs"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"job", "status", "trigger", "since", "until", "error", "cursor", "limit"}
    assert "RunListPage" in document["components"]["schemas"]


@BOTH_DATABASES
def test_list_page_filters_and_pages_by_url(client, creds):
    expected = seed_history()
    page = html(client.get("/dashboard/runs", headers=creds))
    assert "36 runs match" in page
    assert re.findall(r'<tr data-run="([^"]+)"', page) == expected[:36]  # 50 a page: all of them

    failed = [r for r in expected if int(r[2:]) % 4 == 1]
    seen: list[str] = []
    url = "/dashboard/runs?status=failed&limit=4"
    while url:
        page = html(client.get(url, headers=creds))
        assert "9 runs match" in page and '<option value="failed" selected>' in page
        seen += re.findall(r'<tr data-run="([^"]+)"', page)
        found = re.search(r'<a href="([^"]+)" id="page-next"', page)
        url = found.group(1).replace("&amp;", "&") if found else None
        if url:
            assert "status=failed" in url and "limit=4" in url
    assert seen == failed
    assert 'id="page-first"' in page and 'id="page-end"' in page
    # the form shows the filters it was given (a shared URL opens the same list)
    page = html(client.get("/dashboard/runs?since=2026-11-01T12:05&error=feed", headers=creds))
    assert 'name="since" step="1" value="2026-11-01T12:05"' in page and 'value="feed"' in page


def test_list_page_escapes_errors(client, creds):
    make_run("xss-list", status="failed", error=f"{SCRIPT} {QUOTES}")
    page = html(client.get("/dashboard/runs?error=script", headers=creds))
    assert "<script>window" not in page and "&lt;script&gt;window.__x=1&lt;/script&gt;" in page
    assert 'href="/dashboard/runs/xss-list"' in page


def test_search_by_id_still_answers_json(client, creds):
    make_run("findme-123")
    response = client.get("/dashboard/runs?q=findme", headers=creds)
    assert [r["job_id"] for r in response.get_json()["runs"]] == ["findme-123"]
    assert client.get("/dashboard/runs?q=", headers=creds).status_code == 400


def test_home_page_links_the_run_list(client, creds):
    page = html(client.get("/dashboard/", headers=creds))
    assert 'id="all-runs" href="/dashboard/runs"' in page


def test_run_actions_from_the_page_urls(client, creds, auth):
    """The cancel URL the page gives works (same-origin POST), and the page then shows the outcome."""
    run_id = client.post("/api/jobs/cleanup/trigger", headers=auth).get_json()["job_id"]
    page = html(client.get(f"/dashboard/runs/{run_id}", headers=creds))
    cancel = re.search(r'data-url-cancel="([^"]+)"', page).group(1)
    response = client.post(cancel, headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 200 and response.get_json()["status"] == "canceled"
    page = html(client.get(f"/dashboard/runs/{run_id}", headers=creds))
    assert 'id="run-status">canceled<' in page


def test_retry_from_the_page_url_links_both_runs(client, creds):
    make_run("failed-run", job_name="cleanup", queue="maintenance", status="failed", error="E")
    page = html(client.get("/dashboard/runs/failed-run", headers=creds))
    retry = re.search(r'data-url-retry="([^"]+)"', page).group(1)
    response = client.post(retry, headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 202, response.get_json()
    new_id = response.get_json()["job_id"]
    page = html(client.get("/dashboard/runs/failed-run", headers=creds))
    assert 'id="run-status">failed<' in page  # the failed run keeps its record
    assert f'href="/dashboard/runs/{new_id}"' in page
    new_page = html(client.get(f"/dashboard/runs/{new_id}", headers=creds))
    assert 'id="run-retry-of" href="/dashboard/runs/failed-run"' in new_page
    assert (
        "(dashboard)" in new_page
        and "who is not recorded" not in new_page
        and re.findall(r'data-action="(\w+)"', new_page) == ["cancel"]
    )
    listed = client.get("/api/runs?trigger=retry").get_json()["runs"]
    assert [(r["job_id"], r["retry_of"]) for r in listed] == [(new_id, "failed-run")]


def test_a_run_waiting_for_its_retry_says_when(client, creds):
    make_run("waiting", status="scheduled", started_at=BASE, attempts=1, error="E")
    with db_session():
        RunAttempt.create(
            run="waiting",
            number=1,
            status="failed",
            error="E",
            started_at=BASE,
            next_retry_at=BASE + timedelta(minutes=5),
        )
    page = html(client.get("/dashboard/runs/waiting", headers=creds))
    assert (
        'id="run-next-retry">retrying at <time datetime="2026-11-01T12:05:00Z" data-clock="seconds">'
        "2026-11-01 12:05:00 UTC</time> (attempt 2)<" in page
    )
    assert re.findall(r'data-action="(\w+)"', page) == ["cancel"]


def test_the_run_page_names_who_triggered_it_from_the_audit_log(client, auth, redis):
    """The API token's trigger and the dashboard user's retry are attributed; a scheduled run is the scheduler's."""
    run_id = client.post("/api/jobs/forecast/trigger", headers=auth).get_json()["job_id"]
    client.post(f"/api/jobs/forecast/{run_id}/cancel", headers=auth)
    page = client.get(f"/dashboard/runs/{run_id}", headers=basic()).get_data(as_text=True)
    assert "api-token (api)" in page
    retried = client.post(f"/dashboard/runs/{run_id}/retry", headers={**basic(), **SAME_ORIGIN})
    new_id = retried.get_json()["job_id"]
    new_page = client.get(f"/dashboard/runs/{new_id}", headers=basic()).get_data(as_text=True)
    assert "(dashboard)" in new_page and "who is not recorded" not in new_page
    # the original run's page still names its own trigger, not the retry that named it in its URL
    assert "api-token (api)" in client.get(f"/dashboard/runs/{run_id}", headers=basic()).get_data(as_text=True)


def test_the_run_page_shows_the_ops_webhook_delivery_of_its_events(client):
    from app.models import OpsEvent, WebhookDelivery

    now = datetime(2026, 11, 30, 10, 0)
    with db_session():
        JobRun.create(
            id="failed-for-good",
            job_name="forecast",
            queue="forecast",
            trigger="manual",
            status="failed",
            enqueued_at=now,
            started_at=now,
            ended_at=now + timedelta(seconds=3),
            attempts=3,
            error="boom",
        )
        event = OpsEvent.create(
            kind="run_failed",
            dedup_key="run_failed:failed-for-good:3",
            subject="failed-for-good",
            job_name="forecast",
            run_id="failed-for-good",
            run_attempts=3,
            message="forecast run failed-for-good failed after 3 attempts: boom",
            created_at=now,
        )
        WebhookDelivery.create(
            event=event,
            target="https://hooks.example",
            status="failed",
            attempts=3,
            last_error="HTTP 500 <b>",
            next_attempt_at=now,
        )
    html = client.get("/dashboard/runs/failed-for-good", headers=basic()).get_data(as_text=True)
    section = html[html.index('id="run-notifications"') :]
    assert "run_failed" in section and "failed after 3 attempts" in section
    assert "https://hooks.example: failed after 3 attempts" in section and "HTTP 500 &lt;b&gt;" in section
