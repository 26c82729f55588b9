"""Daily reports: the API over stored reports, and webhook delivery by a real worker."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

import pytest

from app.connections import database
from app.models import Alert, DailySummary, JobRun
from tests.test_jobs_api import trigger
from tests.test_notify import WebhookServer, refused_url


def _store(day: date, total: int = 1, job_id: str = "run-x") -> None:
    report = {
        "date": day.isoformat(),
        "alerts": {"total": total, "by_type": {}, "by_severity": {}, "by_source": {}},
        "runs": {},
    }
    with database.atomic():
        DailySummary.create(day=day, report=report, job_id=job_id, created_at=datetime(2024, 1, 1))


@pytest.fixture
def webhook():
    server = WebhookServer()
    yield server
    server.close()


class TestReportRoutes:
    def test_report_of_a_day_and_latest(self, client):
        _store(date(2024, 5, 1), total=3)
        _store(date(2024, 5, 2), total=7)
        body = client.get("/api/reports/daily?date=2024-05-01").get_json()
        assert body["date"] == "2024-05-01" and body["report"]["alerts"]["total"] == 3
        assert body["kind"] == "daily" and body["job_id"] == "run-x" and body["created_at"].endswith("Z")
        assert client.get("/api/reports/daily").get_json()["date"] == "2024-05-02"

    def test_unknown_day_and_no_report_are_404(self, client):
        response = client.get("/api/reports/daily")
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
        _store(date(2024, 5, 1))
        assert client.get("/api/reports/daily?date=2024-05-02").status_code == 404

    @pytest.mark.parametrize(
        "query",
        [
            "date=yesterday",
            "date=2024-02-30",
            "date=2024-5-1",
            "date=20240501",
            "date=2024-05-01&date=2024-05-02",
            "day=2024-05-01",
            "date=" + "9" * 300,
        ],
    )
    @pytest.mark.any_database
    def test_bad_date_is_400(self, client, query):
        response = client.get(f"/api/reports/daily?{query}")
        assert response.status_code == 400, response.get_data(as_text=True)
        assert set(response.get_json()["error"]) >= {"code", "message"}

    def test_list_is_newest_first_and_keyset_paginated(self, client):
        days = [date(2024, 4, 28) + timedelta(days=i) for i in range(5)]
        for day in days:
            _store(day)
        first = client.get("/api/reports?limit=2").get_json()
        assert [r["date"] for r in first["reports"]] == ["2024-05-02", "2024-05-01"]
        second = client.get(f"/api/reports?limit=2&cursor={first['next_cursor']}").get_json()
        assert [r["date"] for r in second["reports"]] == ["2024-04-30", "2024-04-29"]
        third = client.get(f"/api/reports?limit=2&cursor={second['next_cursor']}").get_json()
        assert [r["date"] for r in third["reports"]] == ["2024-04-28"] and third["next_cursor"] is None

    @pytest.mark.parametrize(
        "query",
        [
            "limit=0",
            "limit=1000",
            "limit=x",
            "cursor=garbage!",
            "cursor=WyJ4IiwxXQ",
            "cursor=" + "A" * 300,
            "cursor=MjAyNC0xMy0wMQ",
        ],
    )
    @pytest.mark.any_database
    def test_bad_list_query_is_400(self, client, query):
        assert client.get(f"/api/reports?{query}").status_code == 400

    @pytest.mark.any_database
    def test_wrong_method_is_405(self, client, auth):
        assert client.post("/api/reports/daily", headers=auth).status_code == 405


class TestReadAuth:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "api_read_auth": True}

    def test_reports_need_the_token_for_reads(self, client, auth):
        _store(date(2024, 5, 1))
        assert client.get("/api/reports/daily").status_code == 401
        assert client.get("/api/reports").status_code == 401
        assert client.get("/api/reports/daily", headers=auth).status_code == 200


def _yesterday() -> date:
    return datetime.now(timezone.utc).date() - timedelta(days=1)


class TestSummaryWebhook:
    @pytest.fixture
    def settings_overrides(self, settings_overrides, webhook):
        return {**settings_overrides, "summary_webhook_url": webhook.url, "webhook_timeout": 0.5}

    def test_report_is_stored_then_posted_as_slack_message(self, client, auth, run_worker, webhook):
        run_id = trigger(client, auth, job="daily-summary").get_json()["job_id"]
        run_worker()
        run = client.get(f"/api/jobs/daily-summary/{run_id}").get_json()
        assert run["status"] == "finished" and run["result"]["delivered"] is True
        (message,) = webhook.messages()
        assert message["text"].startswith(f"Forecast service daily report {_yesterday().isoformat()}")
        assert isinstance(message["blocks"], list) and message["blocks"][0]["type"] == "header"
        served = client.get(f"/api/reports/daily?date={_yesterday().isoformat()}").get_json()
        assert served["job_id"] == run_id

    @pytest.mark.parametrize("failure", ["500", "timeout"])
    def test_webhook_failure_retries_and_never_loses_the_report(self, client, auth, run_worker, webhook, failure):
        if failure == "500":
            webhook.status = 500
        else:
            webhook.delay = 1.5
        run_id = trigger(client, auth, job="daily-summary").get_json()["job_id"]
        run_worker()  # retry delay 0: every attempt runs in this burst
        run = JobRun.get_by_id(run_id)
        assert run.status == "failed" and run.attempts == 4, (run.status, run.attempts, run.error)
        assert "webhook" in run.error and "s3cr3t" not in run.error
        assert len(webhook.received) == 4  # one POST per attempt: the job's retry policy
        assert DailySummary.select().count() == 1  # each attempt replaced the same day's report
        # the day before the run's (last) attempt: the test may cross midnight UTC
        assert (
            client.get("/api/reports/daily").get_json()["date"]
            == (run.started_at.date() - timedelta(days=1)).isoformat()
        )
        # Once the webhook is back, a re-run replaces the report and delivers it.
        webhook.status, webhook.delay = 200, 0
        again = trigger(client, auth, job="daily-summary").get_json()["job_id"]
        run_worker()
        assert JobRun.get_by_id(again).status == "finished"
        assert DailySummary.select().count() == 1 and DailySummary.get().job_id == again


class TestSummaryWebhookRefused:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "summary_webhook_url": refused_url(), "job_max_retries": 1}

    def test_unreachable_webhook_fails_the_run_keeps_the_report(self, client, auth, run_worker):
        run_id = trigger(client, auth, job="daily-summary").get_json()["job_id"]
        run_worker()
        run = JobRun.get_by_id(run_id)
        assert (run.status, run.attempts) == ("failed", 2)
        assert "unreachable" in run.error
        assert DailySummary.get().job_id == run_id


class TestAlertWebhook:
    @pytest.fixture
    def settings_overrides(self, settings_overrides, webhook):
        return {
            **settings_overrides,
            "forecast_pipeline": "tests.pipelines:two_alerts",
            "alert_webhook_url": webhook.url,
            "webhook_timeout": 0.5,
        }

    def test_new_high_alerts_are_posted_once(self, client, auth, run_worker, webhook):
        run_id = trigger(client, auth).get_json()["job_id"]
        run_worker()
        (message,) = webhook.messages()
        assert message["text"] == "1 new high-severity alert: capacity_warning line:L1"
        assert run_id in json.dumps(message["blocks"])
        trigger(client, auth)
        run_worker()  # the same conditions again: updated, not created, so not posted again
        assert len(webhook.received) == 1

    @pytest.mark.parametrize("failure", ["500", "timeout"])
    def test_webhook_failure_keeps_alerts_and_run(self, client, auth, run_worker, webhook, failure):
        if failure == "500":
            webhook.status = 500
        else:
            webhook.delay = 1.5
        run_id = trigger(client, auth).get_json()["job_id"]
        run_worker()
        assert JobRun.get_by_id(run_id).status == "finished"
        assert Alert.select().where(Alert.job_id == run_id).count() == 2
        assert len(webhook.received) == 1  # logged, not retried
