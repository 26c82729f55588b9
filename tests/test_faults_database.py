"""PostgreSQL stopped during a run and during API calls, with a real worker process."""

from __future__ import annotations

import time

import pytest

from app.forecast.demo import seed_demo
from app.models import Alert, JobRun
from tests.servers import PostgresServer
from tests.test_job_policies import wait_for
from tests.test_jobs_api import trigger

pytestmark = pytest.mark.slow


@pytest.fixture
def own_postgres():
    server = PostgresServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def database_url(own_postgres):
    return own_postgres.url


@pytest.fixture
def settings_overrides(settings_overrides):
    return {
        **settings_overrides,
        "forecast_pipeline": "tests.pipelines:slow_first_attempt",
        "job_retry_delay": 5,
        "log_level": "INFO",
    }


def test_database_outage_answers_503_and_the_run_retries_to_success(client, auth, start_process, own_postgres):
    seed_demo()
    job_id = trigger(client, auth).get_json()["job_id"]
    start_process("-m", "workers", env_extra={"TEST_PIPELINE_SLEEP": "3"})
    start_process("scheduler.py")  # moves the delayed retry back to its queue, as in the Procfile
    wait_for(lambda: client.get(f"/api/jobs/forecast/{job_id}").get_json()["status"] == "started")

    own_postgres.stop()
    down = client.get("/api/alerts")
    assert down.status_code == 503 and down.get_json()["error"]["code"] == "database_unavailable"
    assert client.get(f"/api/jobs/forecast/{job_id}").status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["database"].startswith("down")
    assert client.post("/api/jobs/cleanup/trigger", headers=auth).status_code == 503
    time.sleep(3)  # the run's first attempt fails on the missing database
    own_postgres.start()

    body = wait_for(
        lambda: (b := client.get(f"/api/jobs/forecast/{job_id}").get_json())["status"] == "finished" and b, timeout=60
    )
    assert body["attempts"] == 2
    assert {a.occurrences for a in Alert.select()} == {1} and Alert.select().count() == 2
    assert JobRun.select().count() == 1  # the refused trigger left no row and no job
    assert client.get("/readyz").status_code == 200
