"""Retry that keeps history (issue 14, point 1): every attempt recorded, a retry is a new linked run.

Runs execute in real work-horses forked by the service's worker class (`run_worker`), against
real Redis and, where the database matters, SQLite and PostgreSQL. After any retry (API,
dashboard, CLI, rq-dashboard's requeue) the failed run still reads failed, with its error and
each attempt's traceback, and the job's success rate counts both runs.
"""

from __future__ import annotations

import json
from datetime import timedelta, timezone

import pytest
from rq import Queue, requeue_job
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry

from app.connections import db_session
from app.models import JobRun, RunAttempt, utcnow
from app.runs import reconcile
from app.runs.lifecycle import REPLACED_ERROR, end_attempt, mark_started
from app.runs.status import RunStatus
from tests.test_dashboard import SAME_ORIGIN, enqueue_never_run
from tests.test_dashboard_browser import browser, live_server, open_page  # noqa: F401 - fixtures
from tests.test_jobs_api import trigger


@pytest.fixture
def settings_overrides(settings_overrides):
    return {
        **settings_overrides,
        "forecast_pipeline": "tests.pipelines:fail_unless_retry",
        "job_max_retries": 1,
        "job_retry_delay": 0,
    }


@pytest.fixture
def creds():
    from tests.test_dashboard import basic

    return basic()


def status_of(client, run_id: str, job: str = "forecast") -> dict:
    return client.get(f"/api/jobs/{job}/{run_id}").get_json()


def attempts_of(client, run_id: str, job: str = "forecast") -> dict:
    response = client.get(f"/api/jobs/{job}/{run_id}/attempts")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def failed_run(client, auth, run_worker) -> str:
    """A forecast run that failed both its attempts (RQ's retry included), executed by a real work-horse."""
    run_id = trigger(client, auth).get_json()["job_id"]
    run_worker(["forecast"])
    assert status_of(client, run_id)["status"] == "failed"
    return run_id


def row_count() -> int:
    with db_session():
        return JobRun.select().count()


def add_run(run_id: str, status: str, minutes_ago: float, job: str = "forecast", error: str | None = None) -> None:
    with db_session():
        JobRun.create(
            id=run_id,
            job_name=job,
            queue="forecast" if job == "forecast" else "reports",
            trigger="manual",
            status=status,
            enqueued_at=utcnow() - timedelta(minutes=minutes_ago),
            error=error,
        )


# --- every attempt keeps its error and traceback; a retry is a new run -------------------------------


def test_attempts_keep_errors_and_tracebacks_and_a_retry_never_erases_the_failure(client, auth, run_worker):
    run_id = failed_run(client, auth, run_worker)
    before = status_of(client, run_id)
    assert before["attempts"] == 2 and before["error"] == "RuntimeError: planned failure on attempt 2"
    assert before["retry_of"] is None

    history = attempts_of(client, run_id)
    first, second = history["attempts_detail"]
    assert [first["number"], second["number"]] == [1, 2]
    assert [first["status"], second["status"]] == ["failed", "failed"]
    assert first["error"] == "RuntimeError: planned failure on attempt 1"  # not overwritten by attempt 2
    for attempt in (first, second):
        assert attempt["traceback"].startswith("Traceback (most recent call last)")
        assert "fail_unless_retry" in attempt["traceback"] and "RuntimeError" in attempt["traceback"]
        assert attempt["worker"] and attempt["started_at"] and attempt["ended_at"]
    assert first["next_retry_at"] is not None  # RQ retried the run after it
    assert second["next_retry_at"] is None  # retries exhausted: the run failed
    assert history["retried_by"] == []

    response = client.post(f"/api/jobs/forecast/{run_id}/retry", headers=auth)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    retry_id = body["job_id"]
    assert retry_id != run_id and body["retry_of"] == run_id and body["status"] == "queued"
    assert response.headers["Location"].endswith(f"/api/jobs/forecast/{retry_id}")
    assert status_of(client, retry_id)["trigger"] == "retry"
    assert status_of(client, retry_id)["retry_of"] == run_id

    run_worker(["forecast"])
    retried = attempts_of(client, retry_id)
    assert retried["status"] == "finished" and retried["error"] is None
    assert [(a["number"], a["status"], a["error"]) for a in retried["attempts_detail"]] == [(1, "finished", None)]

    # The failed run reads exactly as before, attempts and tracebacks included, linked to its retry.
    after = attempts_of(client, run_id)
    assert {k: after[k] for k in before} == before
    assert after["attempts_detail"] == history["attempts_detail"]
    assert after["retried_by"] == [retry_id]
    # Both count: one success, one failure (rq-dashboard's requeue made this 100 %).
    figures = client.get("/api/jobs/stats", headers=auth).get_json()["last_24h"]["jobs"]["forecast"]
    assert (figures["success"], figures["failure"]) == (1, 1)
    runs = client.get("/api/jobs/forecast/history?trigger=retry").get_json()["runs"]
    assert [r["job_id"] for r in runs] == [retry_id]


def test_a_failed_run_requeued_in_rq_is_not_executed_again(client, auth, run_worker, redis):
    """`rq requeue` (or any RQ-level requeue) of a tracked failed run cannot turn it into a success."""
    run_id = failed_run(client, auth, run_worker)
    requeue_job(run_id, connection=redis)
    run_worker(["forecast"])
    job = Job.fetch(run_id, connection=redis)
    assert job.get_status() == JobStatus.FINISHED and job.return_value()["status"] == "not_executed"
    after = status_of(client, run_id)
    assert (after["status"], after["attempts"]) == ("failed", 2)
    assert after["error"] == "RuntimeError: planned failure on attempt 2"


# --- refusals: clear JSON errors, nothing changed ---------------------------------------------------


def test_retry_refusals_change_nothing(client, auth):
    add_run("waiting", "queued", 5)
    add_run("done", "finished", 10)
    add_run("broken", "failed", 20, error="ValueError: x")
    count = row_count()
    cases = [
        ("/api/jobs/nope/broken/retry", None, 404, "unknown job"),
        ("/api/jobs/forecast/missing/retry", None, 404, "no forecast run with id missing"),
        ("/api/jobs/forecast/bad%20id/retry", None, 400, "invalid job id"),
        ("/api/jobs/forecast/waiting/retry", None, 409, "run waiting is queued"),
        ("/api/jobs/forecast/done/retry", None, 409, "run done is finished"),
        ("/api/jobs/forecast/broken/retry", b'{"force": "yes"}', 400, "force"),
        ("/api/jobs/forecast/broken/retry", b"[1]", 400, "JSON object"),
        ("/api/jobs/daily-summary/broken/retry", None, 404, "no daily-summary run"),
    ]
    for url, data, code, text in cases:
        response = client.post(url, headers={**auth, "Content-Type": "application/json"}, data=data)
        assert response.status_code == code, (url, response.get_json())
        assert text in response.get_json()["error"]["message"], (url, response.get_json())
    assert client.post("/api/jobs/forecast/broken/retry").status_code == 401
    assert client.get("/api/jobs/forecast/retry-failed").status_code == 405
    assert row_count() == count
    with db_session():
        assert JobRun.get_by_id("broken").status == "failed"


def test_retry_takes_the_overlap_lock_like_a_trigger(client, auth):
    add_run("broken", "failed", 20, error="ValueError: x")
    active = trigger(client, auth).get_json()["job_id"]
    response = client.post("/api/jobs/forecast/broken/retry", headers=auth)
    assert response.status_code == 409
    assert response.get_json()["error"]["active_job_id"] == active
    response = client.post("/api/jobs/forecast/broken/retry", headers=auth, json={"force": True})
    assert response.status_code == 202 and response.get_json()["waits_for"] == active
    retry_id = response.get_json()["job_id"]
    assert status_of(client, retry_id)["retry_of"] == "broken"
    assert attempts_of(client, "broken")["retried_by"] == [retry_id]


# --- retry of every failure since a time -------------------------------------------------------------


def test_retry_failed_retries_the_newest_failure_once_and_reports_what_it_covers(client, auth):
    add_run("old", "failed", 180, error="E: old")
    add_run("mid", "failed", 120, error="E: mid")
    add_run("ok", "finished", 90)
    add_run("new", "failed", 60, error="E: new")
    add_run("stopped", "stopped", 30)  # not a failure
    add_run("other-job", "failed", 10, job="cleanup")
    since = (utcnow() - timedelta(minutes=150)).isoformat() + "Z"
    url = "/api/jobs/forecast/retry-failed"

    response = client.post(url, query_string={"since": since}, headers=auth)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["retry_of"] == "new" and body["covers"] == ["new", "mid"] and body["created"] is True
    retry_id = body["job_id"]
    assert status_of(client, retry_id)["retry_of"] == "new"

    again = client.post(url, query_string={"since": since}, headers=auth)
    assert again.status_code == 200
    assert (again.get_json()["job_id"], again.get_json()["created"]) == (retry_id, False)

    # The retry failed in turn: it is now the newest failure, and is retried.
    with db_session():
        JobRun.update(status="failed", error="E: retry").where(JobRun.id == retry_id).execute()
    from app.runs.lock import release_slot

    release_slot(client.application.extensions["redis"], "forecast", retry_id)
    third = client.post(url, query_string={"since": since}, headers=auth).get_json()
    assert third["retry_of"] == retry_id and third["covers"] == [retry_id, "new", "mid"]

    for statuses in (["old", "mid", "new"], [retry_id]):
        with db_session():
            assert {r.status for r in JobRun.select().where(JobRun.id.in_(statuses))} == {"failed"}

    future = (utcnow() + timedelta(hours=1)).isoformat() + "Z"
    nothing = client.post(url, query_string={"since": future}, headers=auth)
    assert nothing.status_code == 200 and nothing.get_json()["job_id"] is None


def test_retry_failed_of_the_daily_summary_retries_each_failed_day_one_after_another(client, auth, redis):
    """Each daily-summary run reports its slot's day: every failed day since then gets its own retry
    (oldest first, each waiting for the one before); a failure already retried is not queued again."""
    from rq.job import Job

    days = {"day-1": 3, "day-2": 2, "day-3": 1}
    with db_session():
        for run_id, days_ago in days.items():
            slot = (utcnow() - timedelta(days=days_ago)).replace(hour=8, minute=0, second=0, microsecond=0)
            JobRun.create(
                id=run_id,
                job_name="daily-summary",
                queue="reports",
                trigger="scheduled",
                status="failed",
                slot=slot,
                enqueued_at=slot,
                error="E: webhook down",
            )
    since = (utcnow() - timedelta(days=4)).isoformat() + "Z"
    url = "/api/jobs/daily-summary/retry-failed"
    response = client.post(url, query_string={"since": since}, headers=auth)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["covers"] == ["day-3", "day-2", "day-1"] and len(body["retries"]) == 3
    new_runs = [status_of(client, run_id, job="daily-summary") for run_id in body["retries"]]
    assert [r["retry_of"] for r in new_runs] == ["day-1", "day-2", "day-3"]  # oldest day first
    with db_session():
        slots = {r.retry_of: r.slot for r in JobRun.select().where(JobRun.id.in_(body["retries"]))}
        originals = {r.id: r.slot for r in JobRun.select().where(JobRun.id.in_(list(days)))}
    assert slots == originals  # each retry reports its own day
    # each new run waits for the one before: the job's runs never overlap
    second, third = (Job.fetch(run_id, connection=redis) for run_id in body["retries"][1:])
    assert second.dependency_ids == [body["retries"][0]] and third.dependency_ids == [body["retries"][1]]
    again = client.post(url, query_string={"since": since}, headers=auth)
    assert again.status_code == 200 and again.get_json()["created"] is False
    assert again.get_json()["job_id"] == body["retries"][-1]


@pytest.mark.parametrize(
    "query, text",
    [
        ({}, "since: Field required"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2024-01-01T00:00:00Z", "other": "1"}, "other"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "out of range"),
    ],
)
def test_retry_failed_bad_input_is_a_400(client, auth, query, text):
    add_run("new", "failed", 60)
    count = row_count()
    response = client.post("/api/jobs/forecast/retry-failed", query_string=query, headers=auth)
    assert response.status_code == 400 and text in response.get_json()["error"]["message"]
    assert row_count() == count


# --- attempts through every ending path ---------------------------------------------------------------


def test_attempt_rows_follow_every_ending(app, redis):
    """Replaced, abandoned (reconcile) and canceled attempts are ended with their run, fenced by number."""
    settings = app.config["SETTINGS"]
    add_run("r1", "queued", 1)
    with db_session():
        assert mark_started("r1", "forecast", "forecast", worker="w1") == 1
        # The worker died; RQ ran the run again before reconcile noticed: attempt 1 was replaced.
        assert mark_started("r1", "forecast", "forecast", worker="w2") == 2
        assert not end_attempt("r1", 1, RunStatus.FINISHED)  # the old attempt's outcome is fenced off
        attempts = list(RunAttempt.select().where(RunAttempt.run == "r1").order_by(RunAttempt.number))
        assert [(a.number, a.worker, a.status) for a in attempts] == [(1, "w1", "abandoned"), (2, "w2", "started")]
        assert attempts[0].error == REPLACED_ERROR and attempts[0].ended_at is not None
    # Attempt 2's worker died too and RQ failed the job: reconcile records the attempt abandoned.
    redis.hset("rq:job:r1", mapping={"status": "failed"})
    with db_session():
        assert reconcile(redis, settings) == 1
        run = JobRun.get_by_id("r1")
        assert (run.status, run.error) == ("failed", "abandoned: its worker died")
        attempt = RunAttempt.get((RunAttempt.run == "r1") & (RunAttempt.number == 2))
        assert (attempt.status, attempt.error) == ("abandoned", "abandoned: its worker died")
        # A failed run is never taken again (rq requeue): its attempts stay as they are.
        from app.runs.status import RunNotStartable

        with pytest.raises(RunNotStartable):
            mark_started("r1", "forecast", "forecast", worker="w3")
        assert RunAttempt.select().where(RunAttempt.run == "r1").count() == 2


def test_reconcile_records_when_rq_retries_an_abandoned_attempt(app, redis):
    """A dead worker's run that RQ scheduled again: the attempt is abandoned, with RQ's retry time."""
    add_run("r3", "queued", 1)
    with db_session():
        mark_started("r3", "forecast", "forecast", worker="w1")
    retry_at = (utcnow() + timedelta(minutes=5)).replace(microsecond=0)
    redis.hset("rq:job:r3", mapping={"status": "scheduled"})
    redis.zadd("rq:scheduled:forecast", {"r3": retry_at.replace(tzinfo=timezone.utc).timestamp()})
    with db_session():
        assert reconcile(redis, app.config["SETTINGS"]) == 1
        run = JobRun.get_by_id("r3")
        attempt = RunAttempt.get(RunAttempt.run == "r3")
    assert (run.status, run.ended_at) == ("scheduled", None)
    assert (attempt.status, attempt.error) == ("abandoned", "abandoned: its worker died; retrying")
    assert attempt.next_retry_at is not None and abs((attempt.next_retry_at - retry_at).total_seconds()) < 1


def test_long_tracebacks_keep_their_end(app):
    from app.models import TRACEBACK_MAX_CHARS

    add_run("r2", "queued", 1)
    tb = "Traceback (most recent call last)\n" + "x" * (2 * TRACEBACK_MAX_CHARS) + "\nValueError: the end"
    with db_session():
        mark_started("r2", "forecast", "forecast")
        assert end_attempt("r2", 1, RunStatus.FAILED, error="ValueError: the end", traceback=tb)
        stored = RunAttempt.get(RunAttempt.run == "r2").traceback
    assert len(stored) == TRACEBACK_MAX_CHARS and stored.endswith("ValueError: the end")


# --- the CLI -----------------------------------------------------------------------------------------


def test_cli_attempts_show_each_error_and_traceback(runner, client, auth, run_worker):
    run_id = failed_run(client, auth, run_worker)
    result = runner.invoke(args=["attempts", "forecast", run_id])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"run {run_id} (forecast): failed, 2 attempt(s)" in out
    assert "attempt 1: failed on " in out and "retried at " in out
    assert "  error: RuntimeError: planned failure on attempt 1" in out
    assert "  error: RuntimeError: planned failure on attempt 2" in out
    assert out.count("  | Traceback (most recent call last)") == 2
    body = json.loads(runner.invoke(args=["attempts", "forecast", run_id, "--json"]).output)
    assert body == attempts_of(client, run_id)
    result = runner.invoke(args=["attempts", "forecast", "missing"])
    assert result.exit_code == 1 and "no forecast run with id missing" in result.output


def test_cli_retry_and_failed_since(runner, client):
    add_run("broken", "failed", 20, error="ValueError: x")
    add_run("done", "finished", 10)
    result = runner.invoke(args=["retry", "forecast", "broken"])
    assert result.exit_code == 0, result.output
    retry_id = result.output.split()[6]
    assert f"forecast run broken retried as run {retry_id} queued" in result.output
    assert status_of(client, retry_id)["retry_of"] == "broken"

    result = runner.invoke(args=["retry", "forecast", "--failed-since", "2000-01-01T00:00:00Z"])
    assert result.exit_code == 0 and f"run broken was retried already: run {retry_id}" in result.output

    for args, code, text in [
        (["retry", "forecast"], 2, "give either RUN_ID or --failed-since"),
        (["retry", "forecast", "broken", "--failed-since", "2000-01-01"], 2, "give either"),
        (["retry", "forecast", "--failed-since", "soon"], 2, "since"),
        (["retry", "nope", "broken"], 2, "unknown job"),
        (["retry", "forecast", "done"], 1, "run done is finished"),
        (["retry", "forecast", "missing"], 1, "no forecast run with id missing"),
    ]:
        result = runner.invoke(args=args)
        assert result.exit_code == code and text in result.output, (args, result.output)


# --- the dashboard and rq-dashboard -----------------------------------------------------------------


def test_dashboard_retry_action(client, creds):
    add_run("broken", "failed", 20, error="ValueError: x")
    add_run("waiting", "queued", 5)
    response = client.post("/dashboard/runs/broken/retry", headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["retry_of"] == "broken" and body["job_id"] in body["message"]
    assert client.post("/dashboard/runs/broken/retry", headers=creds).status_code == 403  # no same-origin proof
    refused = client.post("/dashboard/runs/waiting/retry", headers={**creds, **SAME_ORIGIN})
    assert refused.status_code == 409 and "queued" in refused.get_json()["error"]["message"]
    assert client.post("/dashboard/runs/nope/retry", headers={**creds, **SAME_ORIGIN}).status_code == 404
    found = client.get("/dashboard/runs?q=" + body["job_id"], headers=creds).get_json()["runs"]
    assert found[0]["retry_of"] == "broken"


def test_rq_dashboard_requeue_of_a_tracked_run_is_a_retry(client, auth, creds, run_worker, redis):
    run_id = failed_run(client, auth, run_worker)
    failed = FailedJobRegistry("forecast", connection=redis)
    assert failed.get_job_ids() == [run_id]
    response = client.post(f"/dashboard/rq/job/{run_id}/requeue", headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 200, response.get_json()
    retry_id = response.get_json()["job_id"]
    assert retry_id != run_id and response.get_json()["retry_of"] == run_id
    assert failed.get_job_ids() == []
    assert Queue("forecast", connection=redis).get_job_ids() == [retry_id]
    run_worker(["forecast"])
    assert status_of(client, retry_id)["status"] == "finished"
    after = status_of(client, run_id)
    assert (after["status"], after["error"]) == ("failed", "RuntimeError: planned failure on attempt 2")


def test_rq_dashboard_requeue_all_retries_tracked_runs_and_requeues_the_rest(client, auth, creds, run_worker, redis):
    first = failed_run(client, auth, run_worker)
    second = failed_run(client, auth, run_worker)
    untracked = enqueue_never_run(redis, 1)
    Queue("forecast", connection=redis).remove(untracked.id)
    FailedJobRegistry("forecast", connection=redis).add(untracked, exc_string="boom")

    response = client.post("/dashboard/rq/requeue/forecast", headers={**creds, **SAME_ORIGIN})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["count"] == 3 and body["conflicts"] == []
    [retried] = body["retried"]
    assert retried["retry_of"] == second and retried["covers"] == [second, first]
    assert FailedJobRegistry("forecast", connection=redis).get_job_ids() == []
    assert set(Queue("forecast", connection=redis).get_job_ids()) == {retried["job_id"], untracked.id}
    for run_id in (first, second):
        assert status_of(client, run_id)["status"] == "failed"


# --- attempts of runs whose worker process died or shut down (real worker processes) ---------------


class TestAttemptsOfKilledWorkers:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {
            **settings_overrides,
            "forecast_pipeline": "tests.pipelines:slow_first_attempt",
            "worker_heartbeat_interval": 1,
            "worker_abandoned_after": 2,
            "worker_maintenance_interval": 2,
            "job_max_retries": 3,
        }

    @pytest.fixture(autouse=True)
    def seeded(self, app):
        from app.forecast.demo import seed_demo

        seed_demo()

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    def test_a_killed_workers_attempt_is_recorded_abandoned(self, client, auth, start_process):
        from tests.test_faults_worker import kill_tree
        from tests.test_job_policies import wait_for

        run_id = trigger(client, auth).get_json()["job_id"]
        first = start_process("-m", "workers", "--name", "w-killed", env_extra={"TEST_PIPELINE_SLEEP": "30"})
        wait_for(lambda: status_of(client, run_id)["status"] == "started")
        kill_tree(first.pid)
        first.wait()
        start_process("-m", "workers", "--name", "w-second")
        wait_for(lambda: status_of(client, run_id)["status"] == "finished", timeout=60)
        history = attempts_of(client, run_id)
        got = [(a["number"], a["worker"], a["status"]) for a in history["attempts_detail"]]
        assert got == [(1, "w-killed", "abandoned"), (2, "w-second", "finished")]
        assert history["attempts_detail"][0]["error"].startswith("abandoned")
        assert history["attempts_detail"][0]["ended_at"] is not None

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    def test_a_shutdown_attempt_is_recorded_interrupted(self, client, auth, start_process):
        import os
        import signal

        from tests.test_job_policies import wait_for
        from tests.test_worker_modes import _children as children

        run_id = trigger(client, auth).get_json()["job_id"]
        worker = start_process("-m", "workers", "--name", "w-stopping", env_extra={"TEST_PIPELINE_SLEEP": "60"})
        wait_for(lambda: status_of(client, run_id)["status"] == "started")
        for pid in {worker.pid, *children(worker.pid)}:
            os.kill(pid, signal.SIGTERM)
        assert worker.wait(10) == 0
        [attempt] = attempts_of(client, run_id)["attempts_detail"]
        assert (attempt["worker"], attempt["status"]) == ("w-stopping", "interrupted")
        assert "shut down" in attempt["error"] and attempt["next_retry_at"] is not None
        start_process("-m", "workers", "--name", "w-next")
        wait_for(lambda: status_of(client, run_id)["status"] == "finished", timeout=30)
        statuses = [(a["number"], a["status"]) for a in attempts_of(client, run_id)["attempts_detail"]]
        assert statuses == [(1, "interrupted"), (2, "finished")]


# --- the dashboard's Retry button in Chromium -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_retry_button_shows_its_outcome_next_to_it(request, client):
    import os

    from tests import test_dashboard_browser as browser_tests

    if browser_tests._MISSING:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(browser_tests._MISSING)
        pytest.skip(browser_tests._MISSING)
    add_run("broken", "failed", 20, error="ValueError: x")
    add_run("fine", "finished", 10)
    page = request.getfixturevalue("open_page")()
    browser_tests.wait_loaded(page)
    page.fill("#search-q", "fine")
    page.press("#search-q", "Enter")
    hit = page.locator("#search-result .search-hit[data-run='fine']")
    browser_tests.expect(hit).to_contain_text("finished")
    assert hit.locator("button[data-action='retry']").count() == 0  # a finished run has nothing to retry

    page.fill("#search-q", "broken")
    page.press("#search-q", "Enter")
    hit = page.locator("#search-result .search-hit[data-run='broken']")
    hit.locator("button[data-action='retry']").click()
    feedback = hit.locator(".retry-feedback")
    browser_tests.expect(feedback).to_contain_text("retried as run")
    with db_session():
        retry = JobRun.get(JobRun.retry_of == "broken")
        assert JobRun.get_by_id("broken").status == "failed"
    browser_tests.expect(feedback).to_contain_text(retry.id)
    hit.locator("button[data-action='retry']").click()  # its retry is queued: the job is busy
    browser_tests.expect(feedback).to_contain_text(f"Refused: a forecast run is already queued or running: {retry.id}")
