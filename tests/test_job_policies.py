"""Retry, hard time limit, waiting-for-retry and stop of a running run, with real workers."""

from __future__ import annotations

import time

import pytest

from app.models import JobRun
from tests.test_jobs_api import trigger


def use(overrides, **extra):
    return {**overrides, **extra}


class TestRetry:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return use(settings_overrides, forecast_pipeline="tests.pipelines:fail_twice")

    def test_fails_twice_then_succeeds_under_one_id(self, client, auth, run_worker):
        job_id = trigger(client, auth).get_json()["job_id"]
        run_worker()
        body = client.get(f"/api/jobs/forecast/{job_id}").get_json()
        assert body["status"] == "finished", body
        assert body["attempts"] == 3
        assert body["error"] is None
        assert JobRun.select().count() == 1


class TestRetriesExhausted:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return use(settings_overrides, forecast_pipeline="tests.pipelines:always_fail", job_max_retries=2)

    def test_failed_after_all_retries_and_job_is_free_again(self, client, auth, run_worker):
        job_id = trigger(client, auth).get_json()["job_id"]
        run_worker()
        body = client.get(f"/api/jobs/forecast/{job_id}").get_json()
        assert body["status"] == "failed" and body["attempts"] == 3
        assert "planned failure" in body["error"]
        assert trigger(client, auth).status_code == 202


class TestWaitingForRetry:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return use(settings_overrides, forecast_pipeline="tests.pipelines:always_fail", job_retry_delay=300)

    def test_status_scheduled_then_cancel(self, client, auth, run_worker, redis):
        job_id = trigger(client, auth).get_json()["job_id"]
        run_worker()
        body = client.get(f"/api/jobs/forecast/{job_id}").get_json()
        assert body["status"] == "scheduled" and body["attempts"] == 1
        assert redis.zscore("rq:scheduled:forecast", job_id) is not None
        assert trigger(client, auth).status_code == 409  # still this job's active run
        response = client.post(f"/api/jobs/forecast/{job_id}/cancel", headers=auth)
        assert response.get_json()["status"] == "canceled"
        assert redis.zscore("rq:scheduled:forecast", job_id) is None
        assert client.get(f"/api/jobs/forecast/{job_id}").get_json()["status"] == "canceled"


class TestHardTimeLimit:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return use(settings_overrides, forecast_pipeline="tests.pipelines:sleepy", job_timeout=1, job_max_retries=0)

    def test_run_over_limit_fails(self, client, auth, run_worker):
        job_id = trigger(client, auth).get_json()["job_id"]
        run_worker()
        body = client.get(f"/api/jobs/forecast/{job_id}").get_json()
        assert body["status"] == "failed"
        assert "JobTimeoutException" in body["error"]


def wait_for(predicate, timeout=20.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


class TestStopRunning:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return use(settings_overrides, forecast_pipeline="tests.pipelines:sleepy")

    def test_stop_running_run(self, client, auth, start_process, redis):
        job_id = trigger(client, auth).get_json()["job_id"]
        start_process("-m", "workers")
        wait_for(lambda: client.get(f"/api/jobs/forecast/{job_id}").get_json()["status"] == "started")
        assert {q.decode() for q in redis.smembers("rq:queues")} >= {
            f"rq:queue:{q}" for q in ("forecast", "reports", "maintenance", "default")
        }
        response = client.post(f"/api/jobs/forecast/{job_id}/cancel", headers=auth)
        assert response.status_code == 202 and response.get_json()["status"] == "stopping"
        body = wait_for(
            lambda: (b := client.get(f"/api/jobs/forecast/{job_id}").get_json())["status"] == "stopped" and b
        )
        assert body["attempts"] == 1 and body["ended_at"]
        assert trigger(client, auth).status_code == 202
