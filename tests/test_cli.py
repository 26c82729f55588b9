"""Operator CLI (`flask --app app ...`): same rules and errors as the API, non-zero exits on error."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from app.alert_store import store_alerts
from app.connections import database
from app.models import DailySummary, JobRun
from app.scheduling import PAUSED_KEY


def invoke(runner, *args):
    return runner.invoke(args=list(args))


def ok(result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output)
    return result.output


def fails(result, code: int, text: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert text in result.output, result.output
    return result.output


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "forecast_pipeline": "tests.pipelines:two_alerts"}


def _run_id(output: str) -> str:
    return output.split()[2]


class TestRuns:
    def test_trigger_conflict_and_force(self, runner):
        first = _run_id(ok(invoke(runner, "trigger", "forecast")))
        assert JobRun.get_by_id(first).trigger == "manual"
        fails(invoke(runner, "trigger", "forecast"), 1, f"already queued or running: {first} (use --force")
        forced = ok(invoke(runner, "trigger", "forecast", "--force"))
        assert f"starts when {first} ends" in forced

    def test_trigger_json_output(self, runner):
        body = json.loads(ok(invoke(runner, "trigger", "daily-summary", "--json")))
        assert body["job_name"] == "daily-summary" and body["status"] == "queued" and body["job_id"]

    @pytest.mark.any_database
    def test_unknown_job_is_a_usage_error(self, runner):
        fails(invoke(runner, "trigger", "nope"), 2, "unknown job 'nope'; known: forecast, daily-summary, cleanup")
        fails(invoke(runner, "runs", "nope"), 2, "unknown job")

    def test_status_and_runs_after_a_run(self, runner, run_worker):
        run_id = _run_id(ok(invoke(runner, "trigger", "forecast")))
        run_worker()
        text = ok(invoke(runner, "status", "forecast", run_id))
        assert "status: finished" in text and "attempts: 1" in text
        body = json.loads(ok(invoke(runner, "status", "forecast", run_id, "--json")))
        assert body["result"]["alerts_generated"] == 2
        listing = ok(invoke(runner, "runs", "forecast"))
        assert run_id in listing and "finished" in listing.splitlines()[1]
        assert json.loads(ok(invoke(runner, "runs", "forecast", "--status", "failed", "--json")))["runs"] == []

    def test_runs_are_paged_like_the_api(self, runner, run_worker, client):
        ids = []
        for _ in range(3):
            ids.append(_run_id(ok(invoke(runner, "trigger", "forecast"))))
            run_worker()
        page = json.loads(ok(invoke(runner, "runs", "forecast", "--limit", "2", "--json")))
        assert [r["job_id"] for r in page["runs"]] == ids[::-1][:2]
        assert page == client.get("/api/jobs/forecast/history?limit=2").get_json()
        rest = json.loads(
            ok(invoke(runner, "runs", "forecast", "--limit", "2", "--cursor", page["next_cursor"], "--json"))
        )
        assert [r["job_id"] for r in rest["runs"]] == [ids[0]]
        assert f"more: --cursor {page['next_cursor']}" in ok(invoke(runner, "runs", "forecast", "--limit", "2"))

    @pytest.mark.parametrize(
        "args,api_query",
        [
            (["--status", "bogus"], "status=bogus"),
            (["--limit", "0"], "limit=0"),
            (["--limit", "abc"], "limit=abc"),
            (["--trigger", "cron"], "trigger=cron"),
            (["--cursor", "garbage"], "cursor=garbage"),
        ],
    )
    @pytest.mark.any_database
    def test_bad_filters_fail_with_the_api_message(self, runner, client, args, api_query):
        api_message = client.get(f"/api/jobs/forecast/history?{api_query}").get_json()["error"]["message"]
        fails(invoke(runner, "runs", "forecast", *args), 2, api_message)

    def test_status_errors(self, runner):
        fails(invoke(runner, "status", "forecast", "0123abcd"), 1, "no forecast run with id 0123abcd")
        fails(invoke(runner, "status", "forecast", "bad.id"), 2, "invalid job id")

    def test_cancel_then_cancel_again(self, runner, redis):
        run_id = _run_id(ok(invoke(runner, "trigger", "forecast")))
        assert "canceled" in ok(invoke(runner, "cancel", "forecast", run_id))
        assert redis.llen("rq:queue:forecast") == 0
        fails(invoke(runner, "cancel", "forecast", run_id), 1, "already ended (canceled)")
        fails(invoke(runner, "cancel", "forecast", "nope1"), 1, "no forecast run with id nope1")


class TestSchedules:
    def test_list_pause_resume(self, runner, redis):
        listing = ok(invoke(runner, "schedules"))
        assert all(name in listing for name in ("forecast", "daily-summary", "cleanup"))
        assert "0 */2 * * *" in listing
        assert ok(invoke(runner, "schedules", "pause", "forecast")).strip() == "schedule forecast paused"
        assert redis.sismember(PAUSED_KEY, "forecast")
        assert "already paused" in ok(invoke(runner, "schedules", "pause", "forecast"))
        body = json.loads(ok(invoke(runner, "schedules", "list", "--json")))
        assert {s["name"]: s["paused"] for s in body["schedules"]}["forecast"] is True
        assert ok(invoke(runner, "schedules", "resume", "forecast")).strip() == "schedule forecast resumed"
        assert not redis.sismember(PAUSED_KEY, "forecast")

    @pytest.mark.any_database
    def test_unknown_schedule_fails(self, runner):
        fails(invoke(runner, "schedules", "pause", "nope"), 1, "unknown schedule 'nope'")

    def test_run_now_is_a_manual_trigger_and_conflicts(self, runner):
        run_id = _run_id(ok(invoke(runner, "schedules", "run", "cleanup")))
        assert JobRun.get_by_id(run_id).trigger == "manual"
        fails(invoke(runner, "schedules", "run", "cleanup"), 1, f"already queued or running: {run_id}")


def _alert(subject, severity="high", type_="capacity_warning"):
    return {
        "type": type_,
        "severity": severity,
        "title": "t",
        "message": "m",
        "subject": subject,
        "fingerprint": f"{type_}|{subject}|w",
    }


class TestAlertsAndReports:
    def test_alerts_filters_and_paging_match_the_api(self, runner, client):
        with database.atomic():
            store_alerts(
                [_alert(f"line:{i}") for i in range(3)] + [_alert("item:x", "medium", "demand_spike")], job_id="run-a"
            )
        text = ok(invoke(runner, "alerts", "--severity", "high"))
        assert text.count("capacity_warning") == 3 and "demand_spike" not in text
        body = json.loads(ok(invoke(runner, "alerts", "--limit", "2", "--json")))
        assert body == client.get("/api/alerts?limit=2").get_json()
        assert (
            json.loads(ok(invoke(runner, "alerts", "--type", "demand_spike", "--json")))["alerts"][0]["subject"]
            == "item:x"
        )

    @pytest.mark.parametrize(
        "args", [["--severity", "urgent"], ["--since", "yesterday"], ["--limit", "-1"], ["--type", "DROP TABLE"]]
    )
    @pytest.mark.any_database
    def test_bad_alert_filters_are_usage_errors(self, runner, args):
        fails(invoke(runner, "alerts", *args), 2, "Error:")

    def test_report(self, runner):
        fails(invoke(runner, "report"), 1, "no daily report yet")
        report = {
            "date": "2024-05-01",
            "alerts": {
                "total": 2,
                "by_type": {"capacity_warning": 2},
                "by_severity": {"high": 2},
                "by_source": {"scheduled_job": 2},
            },
            "runs": {"forecast": {"finished": 12}},
        }
        with database.atomic():
            DailySummary.create(day=date(2024, 5, 1), report=report, job_id="run-r", created_at=datetime(2024, 5, 2))
        text = ok(invoke(runner, "report"))
        assert "daily report 2024-05-01" in text and "alerts: 2" in text and "forecast: finished 12" in text
        assert json.loads(ok(invoke(runner, "report", "--date", "2024-05-01", "--json")))["report"] == report
        fails(invoke(runner, "report", "--date", "2024-05-02"), 1, "no daily report for 2024-05-02")
        fails(invoke(runner, "report", "--date", "2024-02-30"), 2, "Error:")


def test_redis_down_is_a_clear_error(settings_overrides):
    from app import create_app
    from app.config import configure
    from app.connections import db_session
    from app.models import create_tables
    from tests.servers import free_port

    port = free_port()
    app = create_app({**settings_overrides, "redis_url": f"redis://:hidden-pw@127.0.0.1:{port}/0"})
    try:
        with db_session():
            create_tables()
        result = app.test_cli_runner().invoke(args=["trigger", "forecast"])
        fails(result, 1, f"Redis at 127.0.0.1:{port} is unavailable")
        assert "hidden-pw" not in result.output
        assert JobRun.select().count() == 0
    finally:
        configure(None)


@pytest.mark.any_database
def test_every_operator_command_is_registered(app):
    commands = set(app.cli.list_commands(None))
    assert {
        "trigger",
        "status",
        "cancel",
        "runs",
        "schedules",
        "alerts",
        "report",
        "migrate",
        "init-db",
        "seed-demo",
    } <= commands
