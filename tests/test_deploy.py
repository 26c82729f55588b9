"""Heroku-style deploy: the Procfile's processes under honcho against Redis over TLS and PostgreSQL,
certificate checks for rediss://, gunicorn settings, and the deploy files' structure."""

from __future__ import annotations

import configparser
import json
import os
import re
import runpy
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis.exceptions

from app.config import Settings, configure
from app.connections import redis_client_url, redis_connection
from tests.servers import _wait_for_port, free_port

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
REDIS_PASSWORD = "redis-pass-4f8a2c"
PG_PASSWORD = "pg-pass-9d3e1b"
API_TOKEN = "deploy-token-7c1f9a0b-3e5d8f2a6b4c9d1e"  # production: at least 32 characters
DASHBOARD_PASSWORD = "dash-pass-2b7d5e"


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


# -- Redis over TLS with certificates made here --------------------------------------------------
def make_certificates(directory: Path) -> dict[str, Path]:
    """A private CA and a server certificate for 127.0.0.1/localhost, like Heroku Redis's self-signed one."""
    if not subprocess.run(["sh", "-c", "command -v openssl"], capture_output=True).stdout:
        pytest.fail("openssl CLI missing (make test installs it)")
    files = {name: directory / name for name in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt", "ext")}
    files["ext"].write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(files["ca.key"]),
        "-out",
        str(files["ca.crt"]),
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(files["server.key"]),
        "-out",
        str(files["server.csr"]),
    )
    openssl(
        "x509",
        "-req",
        "-in",
        str(files["server.csr"]),
        "-CA",
        str(files["ca.crt"]),
        "-CAkey",
        str(files["ca.key"]),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(files["ext"]),
        "-out",
        str(files["server.crt"]),
    )
    return files


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls-redis")
    certs = make_certificates(directory)
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(certs["server.crt"]),
            "--tls-key-file",
            str(certs["server.key"]),
            "--tls-ca-cert-file",
            str(certs["ca.crt"]),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            REDIS_PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_port(port, proc)
    yield {"url": f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{port}/0", "ca": str(certs["ca.crt"])}
    proc.terminate()
    proc.wait(10)


def _settings(**overrides) -> Settings:
    return Settings(_env_file=None, **overrides)


def test_rediss_checks_certificates_by_default(tls_redis):
    settings = _settings(redis_url=tls_redis["url"])
    assert settings.redis_ssl_cert_reqs == "required"
    with pytest.raises(redis.exceptions.ConnectionError, match="(?i)certificate"):
        redis_connection(settings).ping()


def test_rediss_with_its_ca_or_with_checks_off(tls_redis):
    assert redis_connection(_settings(redis_url=tls_redis["url"], redis_ssl_ca_certs=tls_redis["ca"])).ping()
    assert redis_connection(_settings(redis_url=tls_redis["url"], redis_ssl_cert_reqs="none")).ping()


def test_client_url_carries_tls_options_and_url_options_win():
    url = redis_client_url(_settings(redis_url="rediss://:pw@host:6380/0", redis_ssl_cert_reqs="none"))
    assert "ssl_cert_reqs=none" in url and url.startswith("rediss://:pw@host:6380/0?")
    kept = redis_client_url(_settings(redis_url="rediss://h:1/0?ssl_cert_reqs=required", redis_ssl_cert_reqs="none"))
    assert "ssl_cert_reqs=required" in kept and "none" not in kept
    assert redis_client_url(_settings(redis_url="redis://h:1/0", redis_ssl_cert_reqs="none")) == "redis://h:1/0"


def test_redis_ssl_cert_reqs_rejects_unknown_values():
    with pytest.raises(ValueError, match="redis_ssl_cert_reqs"):
        _settings(redis_ssl_cert_reqs="maybe")


# -- the Procfile under honcho ----------------------------------------------------------------
def _request(method: str, url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")


def _honcho_env(env_file: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TZ")}
    env["PATH"] = f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["ENV_FILE"] = "/dev/null"  # only what the platform sets: never a developer's .env
    return env


@pytest.mark.slow
def test_procfile_processes_run_a_job_over_tls_redis_and_postgres(tls_redis, postgres_server, tmp_path):
    from tests.conftest import _reset_postgres

    _reset_postgres(postgres_server.url)
    database_url = postgres_server.url.replace("postgresql://forecast@", f"postgres://forecast:{PG_PASSWORD}@")
    port = free_port()
    env_file = tmp_path / "platform.env"  # what `heroku config` would hold
    env_file.write_text(
        "\n".join(
            [
                "APP_ENV=production",
                f"REDIS_URL={tls_redis['url']}",
                "REDIS_SSL_CERT_REQS=none",  # Heroku Redis: self-signed certificate
                f"DATABASE_URL={database_url}",
                f"API_TOKEN={API_TOKEN}",
                "DASHBOARD_USERNAME=ops",
                f"DASHBOARD_PASSWORD={DASHBOARD_PASSWORD}",
                "WEB_CONCURRENCY=1",
                "GUNICORN_TIMEOUT=60",
                "SCHEDULER_INTERVAL=1",
                "LOG_FORMAT=json",
                "LOG_LEVEL=INFO",
                "ENV_FILE=/dev/null",
            ]
        )
        + "\n"
    )
    honcho = [str(VENV_BIN / "honcho"), "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "-e", str(env_file)]
    env = _honcho_env(env_file)

    release = subprocess.run([*honcho, "start", "release"], env=env, capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stdout + release.stderr
    assert "0001_initial" in release.stdout
    seeded = subprocess.run(
        [*honcho, "run", "flask", "--app", "app", "seed-demo", "--items", "3", "--days", "90"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr

    log_path = tmp_path / "honcho.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*honcho, "start", "-p", str(port), "web", "worker", "scheduler"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _request("GET", f"{api}/readyz")[0] == 200, 90, "web ready on $PORT")
        status, body = _request("POST", f"{api}/api/jobs/forecast/trigger", API_TOKEN)
        assert status == 202, body
        run_id = body["job_id"]

        def ended_run():
            body = _request("GET", f"{api}/api/jobs/forecast/{run_id}", API_TOKEN)[1]  # production reads need it
            return body if body["status"] in ("finished", "failed") else None

        def registered_schedules():
            schedules = _request("GET", f"{api}/api/schedules", API_TOKEN)[1]["schedules"]
            return schedules if all(s["registered"] for s in schedules) else None

        run = _wait_for(ended_run, 120, "run ended")
        assert run["status"] == "finished", run
        assert run["attempts"] == 1 and run["result"]["status"] == "completed"
        schedules = _wait_for(registered_schedules, 30, "schedules registered by the scheduler")
        assert {s["name"] for s in schedules} == {"forecast", "daily-summary", "cleanup"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        output = log_path.read_text(errors="replace")
        print(output[-8000:])

    records = []
    for line in output.splitlines():
        name, sep, payload = line.partition(" | ")
        if not sep or name.split()[-1] == "system":
            continue
        try:
            records.append((name.split()[-1].split(".")[0], json.loads(payload)))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON log line: {line!r}")
    processes = {process for process, _ in records}
    assert processes == {"web", "worker", "scheduler"}
    assert any(
        r["logger"] == "gunicorn.access" and "/api/jobs/forecast/trigger" in r["message"]
        for p, r in records
        if p == "web"
    )
    assert any(r["logger"].startswith("gunicorn.error") for p, r in records if p == "web")
    run_lines = [r for p, r in records if p == "worker" and run_id in json.dumps(r)]
    assert len(run_lines) >= 4 and any(r["logger"].startswith("rq.") for r in run_lines)
    assert all(r.get("job_id") == run_id and r.get("job_name") == "forecast" for r in run_lines), run_lines
    assert any(r["message"].startswith("started forecast") for r in run_lines)
    for secret in (REDIS_PASSWORD, PG_PASSWORD, API_TOKEN, DASHBOARD_PASSWORD):
        assert secret not in output


# -- deploy files -----------------------------------------------------------------------------
def test_procfile_declares_the_four_processes():
    processes = procfile()
    assert set(processes) == {"web", "worker", "scheduler", "release"}
    assert processes["web"].startswith("gunicorn --config gunicorn.conf.py ")
    assert processes["release"] == "flask --app app migrate"
    assert processes["worker"] == "python -m workers" and processes["scheduler"] == "python scheduler.py"


def test_gunicorn_settings_come_from_the_environment(monkeypatch):
    for key, value in {
        "PORT": "8123",
        "WEB_CONCURRENCY": "3",
        "GUNICORN_TIMEOUT": "45",
        "ENV_FILE": "/dev/null",
        "LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(key, value)
    configure(None)
    try:
        conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    finally:
        configure(None)
    assert (conf["bind"], conf["workers"], conf["timeout"]) == ("0.0.0.0:8123", 3, 45)
    assert conf["loglevel"] == "warning" and conf["accesslog"] == "-"
    assert conf["logger_class"].__name__ == "ServiceLogger"


def test_gunicorn_defaults_match_the_settings(monkeypatch):
    for key in ("PORT", "WEB_CONCURRENCY", "GUNICORN_TIMEOUT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ENV_FILE", "/dev/null")
    configure(None)
    try:
        conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    finally:
        configure(None)
    assert (conf["bind"], conf["workers"], conf["timeout"]) == ("0.0.0.0:8000", 2, 30)


def test_python_version_file_names_a_supported_python():
    version = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", version)
    assert tuple(map(int, version.split("."))) >= (3, 11)
    assert sys.version_info[:2] >= tuple(map(int, version.split(".")))


def test_docker_compose_runs_redis_postgres_and_every_process():
    yaml = pytest.importorskip("yaml", reason="pyyaml comes with requirements-dev.txt")
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "postgres", "release", "web", "worker", "scheduler"}
    processes = procfile()
    for name in ("release", "web", "worker", "scheduler"):
        service = services[name]
        assert shlex.join(service["command"]).replace("'", "") == processes[name].replace("'", ""), name
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        env = service["environment"]
        assert env["REDIS_URL"].startswith("redis://") and "@redis:6379" in env["REDIS_URL"]
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["APP_ENV"] == "production"
        for secret in ("API_TOKEN", "DASHBOARD_PASSWORD"):
            assert env[secret].startswith("${") and ":?" in env[secret], f"{name}: {secret} must be required"
    for name in ("web", "worker", "scheduler"):
        deps = services[name]["depends_on"]
        assert deps["release"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == deps["postgres"]["condition"] == "service_healthy"
    assert services["release"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["release"]["restart"] == "no"
    assert services["web"]["ports"] == ["${PORT:-8000}:8000"] and services["web"]["environment"]["PORT"] == "8000"
    assert "healthcheck" in services["redis"] and "healthcheck" in services["postgres"]
    assert set(compose["volumes"]) == {"redis-data", "postgres-data"}
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile and "USER forecast" in dockerfile


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((ROOT / "deploy" / "systemd" / name).read_text())
    return parser


def test_systemd_units_run_the_procfile_processes():
    processes = procfile()
    commands = {
        "forecast-release.service": "release",
        "forecast-web.service": "web",
        "forecast-worker@.service": "worker",
        "forecast-scheduler.service": "scheduler",
    }
    for unit_name, process in commands.items():
        unit = _unit(unit_name)
        exec_start = unit["Service"]["ExecStart"]
        program, *args = shlex.split(exec_start)
        assert program.startswith("/opt/forecast/.venv/bin/"), unit_name
        expected = shlex.split(processes[process])
        assert [Path(program).name, *args] == expected, unit_name
        assert unit["Service"]["EnvironmentFile"] == "/etc/forecast/forecast.env"
        assert unit["Service"]["User"] == "forecast"
        if process != "release":
            assert "forecast-release.service" in unit["Unit"]["Requires"]
            assert "forecast-release.service" in unit["Unit"]["After"]
            assert unit["Service"]["Restart"] == "always"
    assert _unit("forecast-release.service")["Service"]["Type"] == "oneshot"
    target = _unit("forecast.target")
    for unit_name in ("forecast-web.service", "forecast-scheduler.service", "forecast-worker@1.service"):
        assert unit_name in target["Unit"]["Wants"]
