"""Secrets: constant-time checks, production refuses weak ones, none leak into logs or bodies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DASHBOARD_PASSWORD, TEST_TOKEN, kill_process_tree, settings_env
from tests.servers import RedisServer, free_port
from tests.test_job_policies import wait_for
from tests.test_jobs_api import trigger

REDIS_PASSWORD = "redis-secret-4f9a8b7c"
ROOT = Path(__file__).resolve().parent.parent


def test_tokens_are_compared_in_constant_time(client, monkeypatch):
    import app.auth

    calls = []
    real = app.auth.hmac.compare_digest
    monkeypatch.setattr(app.auth.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    client.post("/api/jobs/forecast/trigger", headers={"Authorization": "Bearer wrong"})
    client.get("/dashboard/", headers={"Authorization": "Basic b3BlcmF0b3I6d3Jvbmc="})
    assert len(calls) >= 3  # token, dashboard user and password


STRONG_TOKEN = "Vq3m9-kR2xW7tY1uZ8pL4nB6cD0eF5gH-prod"
STRONG = {"API_TOKEN": STRONG_TOKEN, "DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "pw-7a8b9c-long"}
# The web process as Heroku and systemd start it, the app factory alone, the scheduler and a worker.
PROCESSES = {
    "gunicorn": ["-m", "gunicorn", "--config", "gunicorn.conf.py", "app:create_app()"],
    "create_app": ["-c", "from app import create_app; create_app()"],
    "scheduler": ["scheduler.py", "--burst"],
    "worker": ["-m", "workers", "--burst"],
}


@pytest.mark.parametrize(
    "secrets,refused",
    [
        ({}, "API_TOKEN"),
        ({"API_TOKEN": "change-me", "DASHBOARD_USERNAME": "admin", "DASHBOARD_PASSWORD": "change-me"}, "API_TOKEN"),
        ({"API_TOKEN": "x"}, "API_TOKEN (at least 32 characters"),
        (
            {"DASHBOARD_USERNAME": "operator-one", "DASHBOARD_PASSWORD": "operator-one"},
            "DASHBOARD_PASSWORD (must not be the user name)",
        ),
        ({"DASHBOARD_PASSWORD": "short-pw"}, "DASHBOARD_PASSWORD (at least 12 characters"),
    ],
)
def test_production_refuses_to_start_with_missing_demo_or_weak_secrets(settings_overrides, secrets, refused):
    """Every process exits at start-up, naming the variable and why, never quoting a secret."""
    env = settings_env(
        {
            k: v
            for k, v in settings_overrides.items()
            if k not in ("api_token", "dashboard_username", "dashboard_password")
        }
    )
    env.update(APP_ENV="production", PORT=str(free_port()), **(STRONG if secrets else {}))
    env.update(secrets)
    procs = {
        name: subprocess.Popen(
            [sys.executable, *command], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for name, command in PROCESSES.items()
    }
    for name, proc in procs.items():
        try:
            output = proc.communicate(timeout=60)[0].decode()
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode != 0, (name, output)
        assert "APP_ENV=production needs real values for: " in output, (name, output)
        line = output.split("needs real values for: ")[1].split("\n")[0]
        assert refused in line, (name, line)
        for value in secrets.values():
            if len(value) >= 4:
                assert value not in line.replace("DASHBOARD_USERNAME", ""), (name, line)


class TestProductionReadAuth:
    """In production the read routes need the token unless API_READ_AUTH=off says otherwise."""

    READS = [
        "/api/alerts",
        "/api/jobs",
        "/api/jobs/stats",
        "/api/jobs/forecast/history",
        "/api/reports",
        "/api/schedules",
        "/metrics",
    ]

    @pytest.fixture
    def settings_overrides(self, settings_overrides, request):
        extra = getattr(request, "param", {})
        return {
            **settings_overrides,
            "app_env": "production",
            "api_token": STRONG_TOKEN,
            "dashboard_username": "ops",
            "dashboard_password": "pw-7a8b9c-long",
            **extra,
        }

    def test_reads_need_the_token_by_default(self, client):
        for path in self.READS:
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.get_json()["error"]["code"] == "unauthorized"
            assert client.get(path, headers={"Authorization": f"Bearer {STRONG_TOKEN}"}).status_code == 200, path
        assert client.get("/healthz").status_code == 200  # platform probes stay open
        assert client.get("/readyz").status_code == 200

    @pytest.mark.parametrize("settings_overrides", [{"api_read_auth": "off"}], indirect=True)
    def test_reads_are_open_when_turned_off_explicitly(self, client):
        for path in self.READS:
            assert client.get(path).status_code == 200, path
        assert client.post("/api/jobs/forecast/trigger").status_code == 401  # writes still need it


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
    return {
        **settings_overrides,
        "forecast_pipeline": "tests.pipelines:two_alerts",
        "log_level": "DEBUG",
        "scheduler_interval": 0.5,
    }


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


def _listening_addresses(port: int) -> set[str]:
    import psutil

    return {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port}


def _start_run_local(tmp_path: Path, name: str, settings_overrides: dict, **env_extra: str | None):
    """`make run`'s script (bin/run-local) in a project of its own (it writes .env and var/ beside itself)."""
    project = tmp_path / f"project-{name}"
    project.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".env", ".git", "var"):
            (project / entry.name).symlink_to(entry)
    env = settings_env({**settings_overrides, "database_url": f"sqlite:///{project / 'run.db'}"})
    env.pop("HOST", None)
    env.update({key: value for key, value in env_extra.items() if value is not None})
    log = open(tmp_path / f"run-local-{name}.log", "wb")
    proc = subprocess.Popen(
        ["bash", str(project / "bin" / "run-local")],
        env=env,
        cwd=project,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


def test_a_stop_signal_to_make_run_stops_every_process_and_its_redis_last(settings_overrides, tmp_path):
    """SIGTERM to bin/run-local alone (a process manager's stop, `kill <pid>`), with the private
    redis-server it starts when none answers: web, worker and scheduler shut down gracefully while
    Redis still answers, then Redis goes; nothing it started is left running."""
    import os
    import signal
    import time
    import urllib.request

    import psutil

    port = free_port()
    proc, log = _start_run_local(
        tmp_path, "stop", settings_overrides, PORT=str(port), REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"
    )
    started: list[psutil.Process] = []

    def everything_up() -> bool:
        assert proc.poll() is None, open(log.name).read()[-3000:]
        started[:] = psutil.Process(proc.pid).children(recursive=True)  # for the teardown too
        commands = " ".join(" ".join(p.cmdline()) for p in started if p.is_running())
        if not all(name in commands for name in ("redis-server", "gunicorn", "-m workers", "scheduler.py")):
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_for(everything_up, timeout=90, interval=0.3)
        time.sleep(1)  # the worker and the scheduler past their start-up

        os.kill(proc.pid, signal.SIGTERM)  # the script only, not its process group
        assert proc.wait(30) != 0
        gone, alive = psutil.wait_procs(started, timeout=15)
        assert not alive, [" ".join(p.cmdline()) for p in alive]
        output = open(log.name).read()
        assert "warm shut down requested" in output and "scheduler stopped" in output, output[-3000:]
        assert "Connection refused" not in output and "Redis unavailable" not in output, output[-3000:]
    finally:
        kill_process_tree(proc.pid)
        for process in started:  # what outlived the script is no longer in its tree
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait()
        log.close()


def test_make_run_listens_on_loopback_unless_host_says_otherwise(settings_overrides, tmp_path):
    """`make run` (bin/run-local, real processes) binds 127.0.0.1 by default and HOST when it is given."""
    import time

    runs = {}
    for host in (None, "0.0.0.0"):
        port = free_port()
        proc, log = _start_run_local(tmp_path, host or "default", settings_overrides, PORT=str(port), HOST=host)
        runs[host] = (proc, port, log)
    try:
        found = {}
        deadline = time.monotonic() + 90
        while len(found) < len(runs) and time.monotonic() < deadline:
            for host, (proc, port, _) in runs.items():
                assert proc.poll() is None, open(runs[host][2].name).read()
                addresses = _listening_addresses(port)
                if addresses:
                    found[host] = addresses
            time.sleep(0.3)
        assert found == {None: {"127.0.0.1"}, "0.0.0.0": {"0.0.0.0"}}, {
            h: open(r[2].name).read()[-3000:] for h, r in runs.items()
        }
    finally:
        for proc, _, log in runs.values():
            # The whole tree: honcho runs each Procfile process in a session of its own, which a
            # signal to the script's process group missed when honcho was slow to stop them.
            kill_process_tree(proc.pid)
            proc.wait()
            log.close()


def test_procfile_web_listens_on_every_interface_by_default(monkeypatch):
    """Heroku routes to the dyno's $PORT on its public interface: without HOST, gunicorn binds 0.0.0.0."""
    import runpy

    from app.config import configure

    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.setenv("ENV_FILE", "/dev/null")
    monkeypatch.setenv("PORT", "5123")
    configure(None)
    try:
        assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == "0.0.0.0:5123"
        monkeypatch.setenv("HOST", "127.0.0.1")
        configure(None)
        assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["bind"] == "127.0.0.1:5123"
    finally:
        configure(None)


@pytest.mark.parametrize("path", ["/api/", "/api/alerts", "/api/openapi.json", "/healthz", "/metrics", "/no-such-page"])
def test_no_response_can_be_sniffed_into_a_script(client, path):
    """The dashboards' CSP allows same-origin scripts, so every response says what it is."""
    assert client.get(path).headers["X-Content-Type-Options"] == "nosniff"
