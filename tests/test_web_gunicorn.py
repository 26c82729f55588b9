"""The web process's worker model: settings applied by gunicorn.conf.py, and a threaded worker serving."""

from __future__ import annotations

import http.client
import runpy
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.config import configure
from app.models import JobRun
from tests.servers import free_port
from tests.test_job_policies import wait_for

ROOT = Path(__file__).resolve().parent.parent


def _conf(monkeypatch, **env) -> dict:
    monkeypatch.setenv("ENV_FILE", "/dev/null")
    for key in ("WEB_WORKER_CLASS", "WEB_THREADS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    configure(None)
    try:
        return runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    finally:
        configure(None)


def test_worker_class_and_threads_come_from_the_settings(monkeypatch):
    default = _conf(monkeypatch)
    assert (default["worker_class"], default["threads"], default["keepalive"]) == ("gthread", 4, 5)
    sync = _conf(monkeypatch, WEB_WORKER_CLASS="sync", WEB_THREADS="1")
    assert (sync["worker_class"], sync["threads"]) == ("sync", 1)


@pytest.mark.parametrize("env", [{"WEB_WORKER_CLASS": "eventlet"}, {"WEB_THREADS": "0"}])
def test_bad_worker_settings_stop_gunicorn_before_it_binds(monkeypatch, env):
    with pytest.raises(Exception, match="web_worker_class|web_threads"):
        _conf(monkeypatch, **env)


def test_app_package_import_stays_light():
    import subprocess
    import sys

    code = "import app.config, sys; print(sorted({'flask', 'peewee', 'redis'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"ENV_FILE": "/dev/null", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert out.strip() == "[]"  # gunicorn's master imports app.config only


@pytest.mark.slow
def test_one_threaded_worker_serves_concurrent_reads_on_kept_alive_connections(app, start_process):
    for i in range(20):
        JobRun.create(
            id=f"run-{i}", job_name="forecast", queue="forecast", trigger="manual", status="finished", result={"n": i}
        )
    port = free_port()
    start_process(
        "-m",
        "gunicorn",
        "--config",
        "gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        "app:create_app()",
        env_extra={"WEB_CONCURRENCY": "1", "WEB_WORKER_CLASS": "gthread", "WEB_THREADS": "4"},
    )

    def up():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    wait_for(up, timeout=30)

    def client(n: int) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        codes = []
        for i in range(10):  # one connection, many requests: kept alive between them
            path = f"/api/jobs/forecast/run-{(n + i) % 20}" if i % 2 else "/api/jobs/forecast/history?limit=5"
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            codes.append(response.status if body.startswith(b"{") else -1)
            assert response.getheader("Connection", "").lower() != "close"
        conn.close()
        return codes

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = [c for batch in pool.map(client, range(8)) for c in batch]
    assert codes == [200] * 80
