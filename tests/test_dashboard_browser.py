"""The dashboard in a real headless Chromium (Debian's `chromium-headless-shell`, driven by Playwright).

The app is served by werkzeug on a loopback port, with real Redis, a real worker process and
SQLite (the page's SQL runs on both databases in test_dashboard.py). Every page is also checked
for script errors and Content-Security-Policy violations.

Skipped when Chromium or Playwright is missing, unless REQUIRE_BROWSER=1 (CI sets it).
`make screenshots` runs `test_screenshots` with SCREENSHOT_DIR=screenshots.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from rq import Queue

from tests.conftest import DASHBOARD_PASSWORD, DASHBOARD_USER

# Chromium's headless shell (Blink and V8 of the same release, without the desktop browser's
# per-tab services) is what Playwright itself runs headless: opening a page costs its browser
# process about a tenth of the CPU the full `chromium` spends, which is most of the suite's browser
# time. The full browser still works (CHROMIUM=/usr/bin/chromium, or when it is all there is).
CHROMIUM = (
    os.environ.get("CHROMIUM")
    or shutil.which("chromium-headless-shell")
    or shutil.which("chromium")
    or "/usr/bin/chromium-headless-shell"
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PAYLOAD = '<img src=x onerror="window.__xss=1">'

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # requirements-dev.txt installs it
    sync_playwright = expect = None

_MISSING = (
    "playwright is not installed"
    if sync_playwright is None
    else None
    if os.access(CHROMIUM, os.X_OK)
    else f"no Chromium at {CHROMIUM} (apt-get install chromium-headless-shell)"
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(_MISSING) and os.environ.get("REQUIRE_BROWSER") != "1", reason=_MISSING or ""),
]


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: the browser tests are about the page; both databases run test_dashboard.py."""
    return f"sqlite:///{tmp_path / 'browser.db'}"


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "forecast_pipeline": "tests.pipelines:two_alerts"}


@pytest.fixture
def browser(chromium_browser):
    """The worker's Chromium (tests/conftest.py); `open_page` gives each test its own context."""
    return chromium_browser


@pytest.fixture
def live_server(app):
    """The test app on a loopback port, in a thread (it shares the test's Redis and database)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


class PageProblems(list):
    """Script errors and CSP violations a page reported; the test fails on any."""


@pytest.fixture
def open_page(browser, live_server):
    contexts = []
    problems = PageProblems()

    def open_(path: str = "/dashboard/", viewport=(1400, 1000)):
        context = browser.new_context(
            http_credentials={"username": DASHBOARD_USER, "password": DASHBOARD_PASSWORD},
            viewport={"width": viewport[0], "height": viewport[1]},
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
        page.on("dialog", lambda dialog: dialog.accept())
        page.last_response = page.goto(live_server + path)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not problems, problems


def wait_loaded(page) -> None:
    page.wait_for_selector("#dashboard[data-loaded='true']")


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def run_status(client, job_id: str, job: str = "forecast") -> str:
    return client.get(f"/api/jobs/{job}/{job_id}").get_json()["status"]


def trigger(client, auth, job: str = "forecast") -> str:
    response = client.post(f"/api/jobs/{job}/trigger", headers=auth)
    assert response.status_code == 202, response.get_data(as_text=True)
    return response.get_json()["job_id"]


# --- tests ----------------------------------------------------------------------------------------


def test_login_is_required(open_page, browser, live_server):
    """Headless Chromium shows no login prompt: without (right) credentials the navigation fails
    or shows the 401 answer; with them the page loads."""
    from playwright.sync_api import Error as PlaywrightError

    for credentials in (None, {"username": DASHBOARD_USER, "password": "wrong"}):
        context = browser.new_context(http_credentials=credentials)
        try:
            response = context.request.get(live_server + "/dashboard/data.json")
            assert response.status == 401 and response.headers["www-authenticate"] == 'Basic realm="dashboard"'
            page = context.new_page()
            try:
                refused = page.goto(live_server + "/dashboard/")
            except PlaywrightError as exc:  # no credentials at all: Chromium gives up on the challenge
                assert "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)
            else:  # wrong ones: Chromium shows the 401 answer
                assert refused.status == 401
                assert page.locator("#dashboard").count() == 0
        finally:
            context.close()
    page = open_page()
    assert page.last_response.status == 200
    wait_loaded(page)
    expect(page.locator("h1")).to_have_text("Forecast jobs")


def test_cards_are_filled_from_a_real_run(open_page, client, auth, start_process):
    job_id = trigger(client, auth)
    start_process("-m", "workers")
    wait_for(lambda: run_status(client, job_id) == "finished")
    page = open_page()
    assert page.last_response.status == 200
    wait_loaded(page)

    forecast = page.locator("#card-jobs tr[data-job='forecast']")
    expect(forecast).to_contain_text("100.0 %")
    assert forecast.locator("td").nth(1).inner_text() == "1"  # runs in the last 24 h
    expect(page.locator("#chart-total")).to_have_text("1 runs in 24 h")
    assert page.locator("#card-chart svg rect.bar-finished").count() == 1
    expect(page.locator("#card-queues tbody tr")).to_have_count(4)
    expect(page.locator("#card-queues tr[data-queue='forecast'] td[data-registry='finished']")).to_have_text("1")
    expect(page.locator("#card-schedules tbody tr")).to_have_count(3)
    expect(page.locator(f"#card-runs tr[data-run='{job_id}']").first).to_contain_text("finished")
    expect(page.locator("#card-alerts [data-window='24h']")).to_contain_text("1 high")
    expect(page.locator("#card-alerts tbody tr")).to_have_count(2)
    worker = page.locator("#card-workers tbody tr").first
    expect(worker).to_contain_text("idle")
    expect(worker).to_contain_text("MiB")  # RSS the worker published itself
    expect(worker.locator("td").nth(4)).to_contain_text("%")
    # every card links to rq-dashboard but the search card and forecast accuracy (database data only)
    assert page.locator(".card .rq-link").count() == page.locator(".card").count() - 2
    assert page.locator("#search-result .rq-link, #card-accuracy .rq-link").count() == 0


def test_page_refreshes_itself_without_reloading(open_page, client, auth):
    page = open_page()
    wait_loaded(page)
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#card-runs")).to_contain_text("Nothing queued or running.")
    job_id = trigger(client, auth)
    expect(page.locator(f"#card-runs tr[data-run='{job_id}']").first).to_contain_text("queued", timeout=15000)
    assert page.evaluate("window.__sameDocument") is True  # no navigation happened


def test_pause_and_resume_a_schedule(open_page, client):
    page = open_page()
    wait_loaded(page)
    row = page.locator("#card-schedules tr[data-schedule='forecast']")
    expect(row.locator("td.state")).to_contain_text("active")
    row.locator("button[data-action='pause']").click()
    expect(row.locator("td.state")).to_contain_text("paused")
    expect(row.locator(".action-feedback")).to_contain_text("forecast")  # next to the button, not at the top
    assert {s["name"]: s["paused"] for s in client.get("/api/schedules").get_json()["schedules"]}["forecast"] is True
    row.locator("button[data-action='resume']").click()
    expect(row.locator("td.state")).to_contain_text("active")
    assert not any(s["paused"] for s in client.get("/api/schedules").get_json()["schedules"])


def test_run_a_schedule_now_and_409_is_shown(open_page, client, redis):
    page = open_page()
    wait_loaded(page)
    button = page.locator("#card-schedules tr[data-schedule='cleanup'] button[data-action='run']")
    button.click()
    feedback = page.locator("#card-schedules tr[data-schedule='cleanup'] .action-feedback")
    expect(feedback).to_contain_text("cleanup run queued")
    queued = client.get("/api/jobs/cleanup/history").get_json()["runs"][0]["job_id"]
    expect(feedback).to_contain_text(f"run {queued}")  # names the run
    expect(page.locator("#card-runs tr[data-status='queued']").first).to_contain_text("cleanup")
    assert Queue("maintenance", connection=redis).count == 1
    button.click()
    expect(page.locator("#card-schedules tr[data-schedule='cleanup'] .action-feedback.error")).to_contain_text(
        "already queued or running"
    )
    expect(page.locator(".action-feedback")).to_have_count(0, timeout=12000)  # it clears itself


class TestStop:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "forecast_pipeline": "tests.pipelines:sleepy"}

    def test_stop_a_running_run(self, open_page, client, auth, start_process):
        job_id = trigger(client, auth)
        start_process("-m", "workers")
        wait_for(lambda: run_status(client, job_id) == "started")
        page = open_page()
        wait_loaded(page)
        worker = page.locator("#card-workers tbody tr").first
        expect(worker).to_contain_text("busy")
        expect(worker).to_contain_text(job_id)
        page.locator(f"#card-runs button[data-action='stop'][data-run='{job_id}']").first.click()
        expect(page.locator(f"tr[data-run='{job_id}'] .action-feedback").first).to_contain_text("stop requested")
        wait_for(lambda: run_status(client, job_id) == "stopped")
        expect(page.locator(f"#card-runs tr[data-run='{job_id}']").first).to_contain_text("stopped", timeout=15000)
        expect(page.locator(f"button[data-run='{job_id}']")).to_have_count(0, timeout=15000)


def test_search_a_run_and_cancel_it(open_page, client, auth):
    job_id = trigger(client, auth)
    page = open_page()
    wait_loaded(page)
    page.fill("#search-q", job_id[:8])
    page.press("#search-q", "Enter")
    hit = page.locator(f"#search-result .search-hit[data-run='{job_id}']")
    expect(hit).to_contain_text("queued")
    hit.locator("button[data-action='cancel']").click()
    expect(page.locator(f"#search-result .search-hit[data-run='{job_id}']")).to_contain_text("canceled")
    assert run_status(client, job_id) == "canceled"
    page.fill("#search-q", "no-such-run")
    page.press("#search-q", "Enter")
    expect(page.locator("#search-result")).to_contain_text("No run with an id starting with no-such-run.")


def test_open_rq_dashboard_from_the_cards(open_page, client, auth):
    trigger(client, auth)  # so rq-dashboard has a queue to list
    page = open_page()
    wait_loaded(page)
    hrefs = page.eval_on_selector_all(".card .rq-link", "links => links.map(a => a.getAttribute('href'))")
    assert hrefs and all(h.startswith("/dashboard/rq/") for h in hrefs)
    page.locator("#card-workers .rq-link").click()
    page.wait_for_url("**/dashboard/rq/0/view/workers")
    expect(page.locator("body")).to_contain_text("Workers")
    page.go_back()
    wait_loaded(page)
    page.locator("#card-queues .rq-link").click()
    page.wait_for_url("**/dashboard/rq/")
    expect(page.locator("body")).to_contain_text("forecast")  # rq-dashboard lists this app's queues


def test_markup_in_job_data_is_shown_as_text(open_page, client, redis):
    """Stored XSS attempts (job arguments, worker name, error text, alert text) stay text."""
    from rq import Worker

    from app.connections import db_session
    from app.models import Alert, JobRun, utcnow

    job = Queue("forecast", connection=redis).enqueue("tests.no_such_module.f", PAYLOAD, meta={"job_name": "forecast"})
    worker = Worker(["forecast"], connection=redis, name="w-xss-img")
    worker.register_birth()
    worker.set_state("busy")
    worker.set_current_job_id(job.id)
    with db_session():
        JobRun.create(
            id="xss-run",
            job_name="forecast",
            queue="forecast",
            trigger="manual",
            status="failed",
            enqueued_at=utcnow(),
            attempts=1,
            error=f"RuntimeError: {PAYLOAD}",
        )
        Alert.create(
            type="demand_spike",
            severity="high",
            title=PAYLOAD,
            message=PAYLOAD,
            subject=PAYLOAD,
            fingerprint="xss",
            figures={},
        )
    page = open_page()
    wait_loaded(page)
    expect(page.locator("#card-alerts")).to_contain_text(PAYLOAD)
    expect(page.locator("#card-runs")).to_contain_text(PAYLOAD)
    expect(page.locator("#card-workers")).to_contain_text(PAYLOAD)
    page.fill("#search-q", "xss-run")
    page.press("#search-q", "Enter")
    expect(page.locator("#search-result pre.error")).to_contain_text(PAYLOAD)
    assert page.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None

    for path in (
        f"/dashboard/rq/0/view/job/{job.id}",
        "/dashboard/rq/0/view/workers",
        "/dashboard/rq/0/view/jobs/forecast/queued/8/asc/1",
    ):
        rq_page = open_page(path)
        expect(rq_page.locator("body")).to_contain_text(job.id if "workers" not in path else "w-xss-img")
        rq_page.wait_for_timeout(300)  # rq-dashboard renders its Underscore templates after a fetch
        assert rq_page.locator("img[src='x']").count() == 0, path
        assert rq_page.evaluate("window.__xss") is None, path


# --- screenshots (`make screenshots`) ---------------------------------------------------------------


def _history(now, count_per_job: int = 60) -> None:
    """A week of varied runs and alerts, so every card and the chart have something to show."""
    import random

    from app.models import Alert, JobRun

    rng = random.Random(5)
    rows = []
    for job, queue, base in (
        ("forecast", "forecast", 40.0),
        ("daily-summary", "reports", 6.0),
        ("cleanup", "maintenance", 2.0),
    ):
        for i in range(count_per_job):
            enqueued = now - timedelta(hours=rng.uniform(0.2, 24 if i % 2 else 24 * 7))
            status = rng.choices(["finished", "failed", "stopped", "canceled", "skipped"], [88, 6, 2, 2, 2])[0]
            started = (
                enqueued + timedelta(seconds=rng.uniform(0.1, 3))
                if status in ("finished", "failed", "stopped")
                else None
            )
            ended = started + timedelta(seconds=rng.lognormvariate(0, 0.4) * base) if started else enqueued
            rows.append(
                dict(
                    id=f"{job}-hist-{i:03d}",
                    job_name=job,
                    queue=queue,
                    trigger=rng.choice(["scheduled", "manual"]),
                    status=status,
                    enqueued_at=enqueued,
                    started_at=started,
                    ended_at=ended,
                    attempts=1,
                    error="RuntimeError: upstream feed timed out" if status == "failed" else None,
                    # insert_many skips JobRun.save, which writes the duration the p50/p95 read
                    duration_s=(ended - started).total_seconds() if started else None,
                )
            )
    JobRun.insert_many(rows).execute()
    for i, (severity, kind, subject) in enumerate(
        [
            ("high", "capacity_warning", "line:L1"),
            ("medium", "demand_spike", "item:A@L1"),
            ("low", "capacity_warning", "line:L3"),
            ("medium", "demand_spike", "item:C@L2"),
        ]
    ):
        created = now - timedelta(hours=3 * i + 1)
        Alert.create(
            type=kind,
            severity=severity,
            title=f"{kind.replace('_', ' ')} on {subject}",
            message="forecast load 112% of capacity" if kind == "capacity_warning" else "demand 9.1 MADs over baseline",
            subject=subject,
            fingerprint=f"{kind}|{subject}",
            figures={},
            created_at=created,
            last_seen_at=created,
        )


class TestScreenshots:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "forecast_pipeline": "tests.pipelines:sleepy"}

    def test_screenshots(self, open_page, app, client, auth, redis, start_process, tmp_path):
        from app.connections import db_session
        from app.models import utcnow
        from scheduler import ServiceScheduler

        out = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path / "screenshots")
        out.mkdir(parents=True, exist_ok=True)
        with db_session():
            _history(utcnow())
        ServiceScheduler(app.config["SETTINGS"], redis).register_schedules()
        client.post("/api/schedules/cleanup/pause", headers=auth)
        running = trigger(client, auth)
        queued = trigger(client, auth, "daily-summary")
        start_process("-m", "workers", "forecast")  # serves forecasts only: daily-summary stays queued
        wait_for(lambda: run_status(client, running) == "started")

        page = open_page(viewport=(1440, 900))
        wait_loaded(page)
        expect(page.locator("#card-workers tbody tr").first).to_contain_text("busy")
        expect(page.locator("#card-workers tbody tr").first).to_contain_text("MiB")
        for job in ("forecast", "daily-summary", "cleanup"):  # the showcase has every p50 / p95
            cells = page.locator(f"#card-jobs tr[data-job='{job}'] td.num").all_inner_texts()
            assert "–" not in cells, (job, cells)
        shots = {"dashboard.png": page}
        page.screenshot(path=str(out / "dashboard.png"), full_page=True)
        page.fill("#search-q", queued)
        page.press("#search-q", "Enter")
        expect(page.locator("#search-result .search-hit")).to_contain_text("queued")
        page.locator("#search-result").screenshot(path=str(out / "dashboard-search.png"))
        for name, path in (
            ("rq-dashboard.png", "/dashboard/rq/"),
            ("rq-dashboard-workers.png", "/dashboard/rq/0/view/workers"),
            ("rq-dashboard-job.png", f"/dashboard/rq/0/view/job/{running}"),
        ):
            rq_page = open_page(path, viewport=(1440, 900))
            rq_page.wait_for_load_state("networkidle")
            rq_page.screenshot(path=str(out / name), full_page=True)
            shots[name] = rq_page
        for name in [*shots, "dashboard-search.png"]:
            data = (out / name).read_bytes()
            assert data.startswith(b"\x89PNG") and len(data) > 10_000, name


# --- issue 11: reflected payloads in rq-dashboard URLs; every link opens a working page ------------

# Each shape breaks out of the string upstream's scripts/jobs.js wrote the URL's queue name into
# (`$(this).val('{{ queue.name }}')`, and the tojson'd call above it). One POSTs to pause a
# schedule (same origin, so the Origin check would pass). A "/" cannot be in a path segment,
# so `</script>` shapes are spelt without one.
REFLECTED = [
    "x');}});window.__pwned=document.domain;$(function(){if(1){$(this).val('",
    "x');}});fetch('\\x2fdashboard\\x2fschedules\\x2fforecast\\x2fpause',{method:'POST'});"
    "$(function(){if(1){$(this).val('",
    "x</script><img src=x onerror=window.__pwned=1>",
    "x\\u0027);window.__pwned=1;0",
    "x\uff07);window.__pwned=1;0",
    "x\u2028window.__pwned=1;0",
    "x%27);window.__pwned=1;0",
    'x");window.__pwned=1;0',
]


def _jobs_url(queue_segment: str) -> str:
    return f"/dashboard/rq/0/view/jobs/{queue_segment}/queued/20/asc/1"


def _assert_not_run(page, redis) -> None:
    from app.scheduling import PAUSED_KEY

    page.wait_for_timeout(500)  # a payload would run while the page loads or on its first poll
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    assert redis.smembers(PAUSED_KEY) == set()


def test_the_reported_reflected_xss_does_not_run(open_page, redis):
    from urllib.parse import quote

    reported = (
        "/dashboard/rq/0/view/jobs/x%27%29%3B%7D%7D%29%3Bwindow.__pwned%3Ddocument.domain%3B%24%28function"
        "%28%29%7Bif%281%29%7B%24%28this%29.val%28%27/queued/20/asc/1"
    )
    for path in [
        reported,
        *(_jobs_url(quote(value, safe="")) for value in REFLECTED),
        _jobs_url("x%252527);window.__pwned=1;0"),
    ]:
        page = open_page(path)
        _assert_not_run(page, redis)
        assert page.last_response.status == 404, path


def test_reflected_payloads_cannot_run_even_without_the_path_check(open_page, redis, monkeypatch):
    """Defence in depth: with rq_guard's segment check off, upstream renders the page for the
    hostile name; the value is data (JSON, never executed) and the CSP is fixed, so nothing runs,
    also when the queue field's handlers (which once held the value as code) fire."""
    from urllib.parse import quote

    import dashboard.rq_guard

    monkeypatch.setattr(dashboard.rq_guard, "check_rq_request", lambda: None)
    for value in REFLECTED:
        if "/" in value:
            continue
        page = open_page(_jobs_url(quote(value, safe="")))
        assert page.last_response.status == 200, value
        expect(page.locator("table#jobs tbody")).to_contain_text("No jobs.")  # the page's own script ran
        assert page.input_value("#select-queue") == value
        page.click("#select-queue")  # clears the field; leaving it puts the queue name back
        assert page.input_value("#select-queue") == ""
        page.dispatch_event("#select-queue", "mouseout")  # jQuery binds mouseleave as mouseout
        assert page.input_value("#select-queue") == value
        _assert_not_run(page, redis)


class TestEveryLink:
    """Issue 11 point 7: every link the monitoring page shows opens a working page."""

    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "forecast_pipeline": "tests.pipelines:sleepy"}

    def test_every_link_opens_a_working_page(self, open_page, client, auth, redis, live_server):
        from rq import Worker

        from app.connections import db_session
        from app.models import JobRun, utcnow

        first = trigger(client, auth)
        forced = client.post("/api/jobs/forecast/trigger", headers=auth, json={"force": True}).get_json()["job_id"]
        trigger(client, auth, "daily-summary")
        with db_session():
            for run_id, status in (("skipped-run", "skipped"), ("expired-run", "finished")):
                JobRun.create(
                    id=run_id,
                    job_name="cleanup",
                    queue="maintenance",
                    trigger="scheduled",
                    status=status,
                    enqueued_at=utcnow(),
                    ended_at=utcnow(),
                    attempts=0,
                    error="skipped: the previous run was still active" if status == "skipped" else None,
                )
        worker = Worker(["forecast"], connection=redis, name="w-with-expired-job")
        worker.register_birth()
        worker.set_state("busy")
        worker.set_current_job_id("job-long-gone")

        page = open_page()
        wait_loaded(page)
        expect(page.locator(f"#card-runs tr[data-run='{forced}']").first).to_contain_text("queued")
        for run_id in ("skipped-run", "expired-run"):
            row = page.locator(f"#card-runs tr[data-run='{run_id}']").first
            expect(row.locator(".no-rq-job")).to_have_text("no rq job")
            assert row.locator("a.rq-job").count() == 0
        expect(page.locator("#card-workers tr[data-worker='w-with-expired-job']")).to_contain_text("job-long-gone")
        assert page.locator("#card-workers tr[data-worker='w-with-expired-job'] a").count() == 0
        page.fill("#search-q", "skipped-run")
        page.press("#search-q", "Enter")
        expect(page.locator("#search-result .no-rq-job")).to_have_count(1)

        hrefs = sorted(
            set(
                page.eval_on_selector_all(
                    "a[href]", "links => links.map(a => a.getAttribute('href')).filter(h => !h.startsWith('#'))"
                )
            )
        )
        kinds = {"job": [h for h in hrefs if "/view/job/" in h], "jobs": [h for h in hrefs if "/view/jobs/" in h]}
        assert {f"/dashboard/rq/0/view/job/{first}", f"/dashboard/rq/0/view/job/{forced}"} <= set(kinds["job"])
        gone = ("skipped-run", "expired-run", "long-gone")  # no rq-dashboard link; their run pages remain
        assert not [h for h in hrefs if any(g in h for g in gone) and not h.startswith("/dashboard/runs/")]
        assert kinds["jobs"] and "/dashboard/rq/" in hrefs and "/dashboard/rq/0/view/workers" in hrefs
        viewer = open_page("/dashboard/")
        for href in hrefs:
            response = viewer.goto(live_server + href)
            assert response.status == 200, href
            if href.endswith(".json"):
                continue
            if "/view/job/" in href:
                job_id = href.rsplit("/", 1)[1]
                expect(viewer.locator("#job-data")).to_contain_text("Status")  # data loaded and rendered
                if job_id == forced:
                    expect(viewer.locator("#job-data")).to_contain_text("deferred")
                    expect(viewer.locator(f"#job-data a[href$='/view/job/{first}']")).to_have_text(first)
            elif href.startswith("/dashboard/rq"):
                expect(viewer.locator("tr[data-role=loading-placeholder]")).to_have_count(0)

        for run_id, says in (("skipped-run", "never queued in RQ"), ("expired-run", "no longer keeps")):
            response = viewer.goto(f"{live_server}/dashboard/rq/0/view/job/{run_id}")
            assert response.status == 404
            expect(viewer.locator("#missing-job")).to_contain_text(says)
            viewer.locator("#missing-job a", has_text="monitoring page").click()
            viewer.wait_for_url("**/dashboard/")
            wait_loaded(viewer)


# --- issue 14 point 2: a page per run, and the run list ----------------------------------------------


def _run_row(run_id: str, **fields) -> None:
    from app.connections import db_session
    from app.models import JobRun, utcnow

    values = dict(job_name="forecast", queue="forecast", trigger="manual", status="finished", attempts=1)
    values.update(fields)
    values.setdefault("enqueued_at", utcnow())
    with db_session():
        JobRun.create(id=run_id, **values)


def _no_sideways_scroll(page) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


def test_a_run_id_on_the_home_page_opens_the_run_page(open_page, client, auth, live_server):
    from app.connections import db_session
    from app.models import Alert

    job_id = trigger(client, auth, "cleanup")  # queued: no worker here
    with db_session():
        Alert.create(
            type="demand_spike",
            severity="high",
            title="spike",
            message="m",
            subject="s",
            fingerprint="f",
            job_id=job_id,
        )
    page = open_page()
    wait_loaded(page)
    page.locator(f"#card-runs tr[data-run='{job_id}'] a.run-link").first.click()
    page.wait_for_url(f"**/dashboard/runs/{job_id}")
    expect(page.locator("h1")).to_contain_text(job_id)
    expect(page.locator("#run-status")).to_have_text("queued")
    expect(page.locator("#run-alerts tr[data-alert]")).to_have_count(1)
    page.go_back()
    wait_loaded(page)
    page.locator(f"#card-alerts a.run-link[data-run-id='{job_id}']").click()  # an alert's run link
    page.wait_for_url(f"**/dashboard/runs/{job_id}")
    anchored = open_page(f"/dashboard/#run-{job_id}")  # an old #run-<id> link
    anchored.wait_for_url(f"**/dashboard/runs/{job_id}")
    expect(anchored.locator("#run-status")).to_have_text("queued")


def test_run_list_filters_and_pages_by_url(open_page, live_server):
    from app.connections import db_session
    from app.models import utcnow

    with db_session():
        _history(utcnow(), count_per_job=40)
    for i in range(3):
        _run_row(f"feed-timeout-{i}", status="failed", error="RuntimeError: upstream feed timed out")
    page = open_page()
    wait_loaded(page)
    page.locator("#all-runs").click()
    page.wait_for_url("**/dashboard/runs")
    expect(page.locator("#run-count")).to_have_text("123 runs match")
    expect(page.locator("#run-list tbody tr")).to_have_count(50)

    page.select_option("select[name='job']", "forecast")
    page.fill("input[name='error']", "TIMED OUT")
    page.locator("#run-filters button[type='submit']").click()
    page.wait_for_url("**/dashboard/runs?job=forecast&error=TIMED+OUT")  # empty filters stay out of the URL
    failed = page.locator("#run-list tbody tr")
    count = failed.count()
    assert count >= 3 and all(failed.nth(i).get_attribute("data-status") == "failed" for i in range(count))
    expect(page.locator("#run-count")).to_contain_text(f"{count} run")

    page.goto(live_server + "/dashboard/runs?job=cleanup&limit=15")
    seen = []
    while True:
        rows = page.locator("#run-list tbody tr")
        seen += [rows.nth(i).get_attribute("data-run") for i in range(rows.count())]
        if page.locator("#page-next").count() == 0:
            break
        page.locator("#page-next").click()
        page.wait_for_url("**cursor=*")
        shared = page.url
    assert len(seen) == len(set(seen)) == 40 and all(s.startswith("cleanup-") for s in seen)
    expect(page.locator("#page-end")).to_have_text("no older runs")
    again = open_page(shared.removeprefix(live_server))  # the same URL, opened elsewhere: the same page
    expect(again.locator("#run-list tbody tr")).to_have_count(40 - 15 * 2)


def test_action_feedback_is_next_to_the_control_and_clears(open_page, client, auth):
    job_id = trigger(client, auth, "cleanup")
    page = open_page(f"/dashboard/runs/{job_id}")
    button = page.locator("#run-action-buttons button[data-action='cancel']")
    button.click()
    feedback = page.locator("#run-feedback")
    expect(feedback).to_have_text(f"Run {job_id}: run canceled")
    near, control = feedback.bounding_box(), page.locator("#run-actions").bounding_box()
    assert near["y"] >= control["y"] - 1 and near["y"] + near["height"] <= control["y"] + control["height"] + 1
    expect(page.locator("#run-status")).to_have_text("canceled")  # the page re-read itself
    assert run_status(client, job_id, "cleanup") == "canceled"
    expect(feedback).to_be_hidden(timeout=12000)  # clears itself

    # The canceled run can be retried: a new run, linked from the feedback and from both pages.
    page.locator("#run-action-buttons button[data-action='retry']").click()
    expect(feedback).to_contain_text(f"Run {job_id}: retried as run ")
    new_run = page.locator("#run-feedback-new-run").inner_text()
    expect(page.locator(f"#run-live-summary a[href$='/dashboard/runs/{new_run}']")).to_be_visible()
    expect(page.locator("#run-status")).to_have_text("canceled")  # the original keeps its record
    page.locator("#run-feedback-new-run").click()
    page.wait_for_url(f"**/dashboard/runs/{new_run}")
    expect(page.locator("#run-retry-of")).to_have_text(job_id)

    # A refusal is shown there too, naming the run: the run ends before the operator clicks.
    other = trigger(client, auth, "daily-summary")
    page = open_page(f"/dashboard/runs/{other}")
    client.post(f"/api/jobs/daily-summary/{other}/cancel", headers=auth)
    page.locator("#run-action-buttons button[data-action='cancel']").click()
    expect(page.locator("#run-feedback.error")).to_contain_text(
        f"Run {other}: cancel refused: run {other} already ended"
    )


def test_an_active_run_page_follows_the_run_without_reloading(open_page, client, auth):
    job_id = trigger(client, auth, "cleanup")
    page = open_page(f"/dashboard/runs/{job_id}")
    expect(page.locator("#run-refresh-note")).to_be_visible()
    page.evaluate("window.__sameDocument = true")
    client.post(f"/api/jobs/cleanup/{job_id}/cancel", headers=auth)  # elsewhere: the API
    expect(page.locator("#run-status")).to_have_text("canceled", timeout=15000)
    expect(page.locator("#run-action-buttons button[data-action='retry']")).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator("#run-page").get_attribute("data-active") == "false"


def test_markup_in_a_run_is_text_in_the_browser(open_page):
    from app.connections import db_session
    from app.models import RunAttempt

    _run_row("xss-page", status="failed", error=f'RuntimeError: {PAYLOAD} it\'s "quoted"', result={"x": PAYLOAD})
    with db_session():
        RunAttempt.create(run="xss-page", number=1, worker=PAYLOAD, status="failed", error=PAYLOAD, traceback=PAYLOAD)
    page = open_page("/dashboard/runs/xss-page")
    expect(page.locator("#run-error")).to_have_text(f'RuntimeError: {PAYLOAD} it\'s "quoted"')
    page.locator("details.traceback summary").click()
    expect(page.locator("details.traceback pre")).to_have_text(PAYLOAD)
    list_page = open_page("/dashboard/runs?error=onerror")
    expect(list_page.locator("#run-list tbody tr")).to_have_count(1)
    for p in (page, list_page):
        assert p.locator("img").count() == 0
        assert p.evaluate("window.__xss") is None


def test_phone_width_keeps_run_actions_reachable(open_page, client, auth):
    job_id = trigger(client, auth, "cleanup")
    _run_row("phone-failed", status="failed", error="RuntimeError: " + "a-very-long-token-without-spaces" * 8)
    page = open_page(f"/dashboard/runs/{job_id}", viewport=(390, 844))
    _no_sideways_scroll(page)
    button = page.locator("#run-action-buttons button[data-action='cancel']")
    box = button.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["height"] >= 30
    button.click()
    expect(page.locator("#run-feedback")).to_contain_text(job_id)
    assert page.locator("#run-feedback").bounding_box()["x"] + 10 <= 390
    for path in ("/dashboard/runs/phone-failed", "/dashboard/runs"):
        other = open_page(path, viewport=(390, 844))
        _no_sideways_scroll(other)
    link = other.locator("#run-list a.run-link").first
    assert link.bounding_box()["x"] + link.bounding_box()["width"] <= 390


class TestRunPageScreenshots:
    """`make screenshots`: the run page (a failed run with its attempts, a fan-out in progress, a
    phone) and the run list, with a week of history."""

    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {
            **settings_overrides,
            "forecast_pipeline": "app.forecast.pipeline:run_pipeline",
            "forecast_fanout_threshold": 20,
            "forecast_chunk_size": 16,
        }

    def test_run_page_screenshots(self, open_page, app, client, auth, tmp_path):
        from app.connections import db_session
        from app.forecast import demo
        from app.models import Alert, RunAttempt, utcnow
        from tests.test_fanout import work

        out = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path / "screenshots")
        out.mkdir(parents=True, exist_ok=True)
        now = utcnow()
        with db_session():
            _history(now)
            demo.seed_demo(items=60, days=120, seed=3)
        started = now - timedelta(minutes=42)
        trace = (
            "Traceback (most recent call last):\n"
            '  File "/app/workers/jobs.py", line 88, in run_scheduled_forecast\n'
            "    result = pipeline.run(settings, run_id=run_id)\n"
            '  File "/app/app/forecast/pipeline.py", line 212, in load_history\n'
            "    rows = fetch_demand(plan_)\n"
            "psycopg2.OperationalError: could not connect to server: Connection timed out\n"
        )
        _run_row(
            "forecast-7f3a9c1e",
            status="failed",
            trigger="scheduled",
            slot=started.replace(second=0, microsecond=0),
            enqueued_at=started,
            started_at=started + timedelta(minutes=10),
            ended_at=started + timedelta(minutes=10, seconds=31),
            attempts=3,
            error="psycopg2.OperationalError: could not connect to server: Connection timed out",
        )
        with db_session():
            for number in (1, 2, 3):
                begin = started + timedelta(minutes=5 * (number - 1))
                RunAttempt.create(
                    run="forecast-7f3a9c1e",
                    number=number,
                    worker=f"worker-{number % 2 + 1}.forecast",
                    started_at=begin,
                    ended_at=begin + timedelta(seconds=31),
                    status="failed",
                    error="psycopg2.OperationalError: could not connect to server: Connection timed out",
                    traceback=trace,
                    next_retry_at=begin + timedelta(minutes=5) if number < 3 else None,
                )
            Alert.create(
                type="capacity_warning",
                severity="high",
                title="capacity warning on line:L2",
                message="forecast load 118% of capacity",
                subject="line:L2",
                fingerprint="capacity_warning|line:L2|shot",
                figures={},
                job_id="forecast-7f3a9c1e",
            )
        fanned = trigger(client, auth)
        work(app, max_jobs=3)  # the run fans out into 4 chunks; two of them finish

        page = open_page("/dashboard/runs/forecast-7f3a9c1e", viewport=(1280, 900))
        page.locator("details.traceback summary").last.click()
        page.screenshot(path=str(out / "run-page.png"), full_page=True)
        fan = open_page(f"/dashboard/runs/{fanned}", viewport=(1280, 900))
        expect(fan.locator("#chunk-progress")).to_contain_text("2 of 4 chunks finished")
        fan.screenshot(path=str(out / "run-page-fanout.png"), full_page=True)
        phone = open_page("/dashboard/runs/forecast-7f3a9c1e", viewport=(390, 844))
        _no_sideways_scroll(phone)
        phone.screenshot(path=str(out / "run-page-phone.png"), full_page=False)
        listing = open_page("/dashboard/runs?status=failed", viewport=(1280, 900))
        expect(listing.locator("#run-list tbody tr").first).to_be_visible()
        listing.screenshot(path=str(out / "run-list.png"), full_page=True)
        phone_list = open_page("/dashboard/runs?status=failed", viewport=(390, 844))
        _no_sideways_scroll(phone_list)
        phone_list.screenshot(path=str(out / "run-list-phone.png"), full_page=False)
        for name in ("run-page.png", "run-page-fanout.png", "run-page-phone.png", "run-list.png", "run-list-phone.png"):
            data = (out / name).read_bytes()
            assert data.startswith(b"\x89PNG") and len(data) > 10_000, name
