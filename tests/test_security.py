"""Secrets: constant-time checks, production refuses weak ones, none leak into logs or bodies."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import DASHBOARD_PASSWORD, TEST_TOKEN, settings_env
from tests.servers import RedisServer
from tests.test_job_policies import wait_for
from tests.test_jobs_api import trigger

REDIS_PASSWORD = "redis-secret-4f9a8b7c"


def test_tokens_are_compared_in_constant_time(client, monkeypatch):
    import app.auth

    calls = []
    real = app.auth.hmac.compare_digest
    monkeypatch.setattr(app.auth.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    client.post("/api/jobs/forecast/trigger", headers={"Authorization": "Bearer wrong"})
    client.get("/dashboard/", headers={"Authorization": "Basic b3BlcmF0b3I6d3Jvbmc="})
    assert len(calls) >= 3  # token, dashboard user and password


@pytest.mark.parametrize("secrets", [{}, {"API_TOKEN": "change-me", "DASHBOARD_USERNAME": "admin",
                                         "DASHBOARD_PASSWORD": "change-me"}])
def test_production_refuses_to_start_without_real_secrets(settings_overrides, secrets):
    env = settings_env({k: v for k, v in settings_overrides.items()
                        if k not in ("api_token", "dashboard_username", "dashboard_password")})
    env.update(APP_ENV="production", **secrets)
    for command in (["-c", "from app import create_app; create_app()"], ["scheduler.py", "--burst"],
                    ["-m", "workers", "--burst"]):
        result = subprocess.run([sys.executable, *command], env=env, capture_output=True, timeout=60)
        output = (result.stdout + result.stderr).decode()
        assert result.returncode != 0, command
        assert "APP_ENV=production needs real values" in output
        assert "change-me" not in output.split("needs real values")[1].split("\n")[0]


def test_wrong_credentials_are_not_echoed(client):
    body = client.post("/api/jobs/forecast/trigger", headers={"Authorization": "Bearer guess-123"}).get_data(True)
    assert "guess-123" not in body and TEST_TOKEN not in body


@pytest.fixture
def password_redis():
    server = RedisServer(password=REDIS_PASSWORD).start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(password_redis):
    return password_redis.url


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'security.db'}"


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "forecast_pipeline": "tests.pipelines:two_alerts", "log_level": "DEBUG",
            "scheduler_interval": 0.5}


def test_redis_with_password_works_and_no_secret_reaches_the_logs(client, auth, start_process, capfd):
    worker = start_process("-m", "workers")
    scheduler = start_process("scheduler.py")
    job_id = trigger(client, auth).get_json()["job_id"]
    wait_for(lambda: client.get(f"/api/jobs/forecast/{job_id}").get_json()["status"] == "finished")
    client.get("/dashboard/rq/", headers={"Authorization": "Basic b3BlcmF0b3I6d3Jvbmc="})
    wait_for(lambda: client.get("/api/jobs/stats").get_json()["schedules"][0]["next_run"] is not None)
    for proc in (worker, scheduler):
        proc.terminate()
        proc.wait(10)
    logs = "".join(open(p.log_path).read() for p in (worker, scheduler)) + "".join(capfd.readouterr())
    assert "completed forecast" in logs  # the logs were captured
    for secret in (REDIS_PASSWORD, TEST_TOKEN, DASHBOARD_PASSWORD):
        assert secret not in logs
