"""Servers and processes for `make bench`: Redis, PostgreSQL and the Procfile's processes.

Every process runs in its own session (process group), so stopping one stops its children
(gunicorn's workers, a worker's work-horse and scheduler child, Celery's pool) and nothing
else. All of them listen on, and all traffic goes to, 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the virtualenv's bin/ (run.py is started with .venv/bin/python)
TOKEN = "bench-token-0123456789abcdef"
sys.path.insert(0, str(ROOT))

from tests.servers import PostgresServer, RedisServer, free_port  # noqa: E402


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until truthy (returned) or `timeout` seconds (RuntimeError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the process's own group, SIGKILL after `timeout`."""
        if not self.alive():
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(10)
        # children that outlived their parent (a work-horse) are in the same group
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def tree_memory(pids: list[int]) -> dict:
    """RSS and PSS (bytes) of the given processes and all their descendants."""
    rss = pss = count = 0
    seen = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
            count += 1
    return {"rss": rss, "pss": pss, "processes": count}


@dataclass
class Bench:
    """The servers, the service's settings and the processes started so far."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))
    redis: RedisServer | None = None
    postgres: PostgresServer | None = None
    web_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    extra_env: dict = field(default_factory=dict)
    started_count: int = 0

    # -- servers ---------------------------------------------------------------------------
    def start_servers(self) -> None:
        self.redis = RedisServer().start()
        self.postgres = PostgresServer(dbname="forecast_bench").start()

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def database_url(self) -> str:
        return self.postgres.url

    def redis_client(self, db: int = 0):
        from redis import Redis

        return Redis(host="127.0.0.1", port=self.redis.port, db=db)

    def pg(self, autocommit: bool = True):
        import psycopg2

        conn = psycopg2.connect(self.database_url)
        conn.autocommit = autocommit
        return conn

    # -- processes -------------------------------------------------------------------------
    def env(self, **overrides) -> dict:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ")}
        env.update(
            {
                "ENV_FILE": "/dev/null",  # the benchmark's settings only, never a developer's .env
                "REDIS_URL": self.redis_url,
                "DATABASE_URL": self.database_url,
                "PORT": str(self.web_port),
                "API_TOKEN": TOKEN,
                "DASHBOARD_USERNAME": "bench",
                "DASHBOARD_PASSWORD": "bench-dashboard-0123456789",
                "LOG_LEVEL": "INFO",
                "PYTHONPATH": str(ROOT),
            }
        )
        env.update(self.extra_env)
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    def start(self, name: str, argv: list[str], env: dict | None = None) -> Proc:
        self.started_count += 1
        log_path = self.workdir / f"{self.started_count:03d}-{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env or self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def migrate(self) -> None:
        subprocess.run(
            [str(BIN / "flask"), "--app", "app", "migrate"],
            cwd=ROOT,
            env=self.env(),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start_web(self, **env) -> Proc:
        """The Procfile's `web` (gunicorn.conf.py), bound to loopback only."""
        proc = self.start(
            "web",
            [
                str(BIN / "gunicorn"),
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{self.web_port}",
                "app:create_app()",
            ],
            self.env(**env),
        )
        wait_http(f"http://127.0.0.1:{self.web_port}/healthz", proc)
        return proc

    def start_worker(self, *queues: str, wait: bool = True, **env) -> Proc:
        """The Procfile's `worker`: `python -m workers`."""
        from rq import Worker

        redis = self.redis_client()
        before = {w.name for w in Worker.all(connection=redis)}
        proc = self.start("worker", [sys.executable, "-m", "workers", *queues], self.env(**env))
        if wait:
            wait_until(
                lambda: (
                    _check_alive(proc)
                    and any(w.pid == proc.pid for w in Worker.all(connection=redis) if w.name not in before)
                ),
                60,
                0.1,
                "the worker to register",
            )
        return proc

    def start_scheduler(self, **env) -> Proc:
        """The Procfile's `scheduler`: `python scheduler.py`."""
        redis = self.redis_client()
        proc = self.start("scheduler", [sys.executable, "scheduler.py"], self.env(**env))
        wait_until(
            lambda: _check_alive(proc) and redis.zcard("rq:scheduler:scheduled_jobs") >= 3,
            60,
            0.1,
            "the scheduler to register its schedules",
        )
        return proc

    def stop(self, proc: Proc, timeout: float = 30.0) -> None:
        proc.stop(timeout)
        if proc in self.procs:
            self.procs.remove(proc)

    def shutdown(self) -> None:
        for proc in reversed(list(self.procs)):
            proc.stop(15)
        self.procs.clear()
        for server in (self.postgres, self.redis):
            if server is not None:
                server.cleanup()


def _check_alive(proc: Proc) -> bool:
    if not proc.alive():
        raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
    return True


def wait_http(url: str, proc: Proc | None = None, timeout: float = 60) -> None:
    def up():
        if proc is not None:
            _check_alive(proc)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    wait_until(up, timeout, 0.1, url)


def http(method: str, url: str, body: dict | None = None, token: str | None = TOKEN, timeout: float = 30):
    """(status, parsed JSON body, seconds) of one request."""
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data if method != "GET" else None, method=method, headers=headers)
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    elapsed = time.perf_counter() - began
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, elapsed


def pct(values, q: float) -> float | None:
    """Percentile (0..100) with linear interpolation; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
