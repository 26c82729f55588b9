"""Real Redis and PostgreSQL servers for tests, on free loopback ports, stopped afterwards.

PostgreSQL refuses to run as root (and CI runs as root), so as root the server runs as the
`postgres` system user (Debian's package creates it) or a `forecast-test` user made here.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


class ServerUnavailable(RuntimeError):
    """The server's binaries are not installed on this machine."""


class PortTaken(RuntimeError):
    """The server exited at start: another process (e.g. another xdist worker) took its free port first."""


# Attempts at starting a server on a new free port: free_port() releases the port before the
# server binds it, so a parallel worker may take it in between; the server then exits at once.
START_ATTEMPTS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PortTaken(f"server exited early with code {proc.returncode} (port {port})")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {timeout}s")


def _start_on_a_free_port(server):
    """The first start moves to another free port when its port was taken; a restart keeps its port."""
    if server.started:
        return server._start()
    for attempt in range(START_ATTEMPTS):
        try:
            server._start()
        except PortTaken:
            if attempt == START_ATTEMPTS - 1:
                raise
            server.port = free_port()
            continue
        server.started = True
        return server
    raise AssertionError("unreachable")


@dataclass
class RedisServer:
    port: int = field(default_factory=free_port)
    password: str | None = None
    appendonly: bool = False
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="redis-test-")))
    proc: subprocess.Popen | None = None
    started: bool = False

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        return _start_on_a_free_port(self)

    def _start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerUnavailable("redis-server not installed (apt-get install redis-server)")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--protected-mode",
            "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise ServerUnavailable(f"PostgreSQL's {name} not installed (apt-get install postgresql)")
    return found


def _server_user() -> pwd.struct_passwd | None:
    """None when not root; else an unprivileged user to run postgres as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "forecast-test"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "forecast-test"], check=True)
    return pwd.getpwnam("forecast-test")


@dataclass
class PostgresServer:
    port: int = field(default_factory=free_port)
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pg-test-")))
    proc: subprocess.Popen | None = None
    started: bool = False
    user: str = "forecast"
    dbname: str = "forecast_test"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    def _demote(self):
        account = _server_user()
        if account is None:
            return None

        def preexec():
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

        return preexec

    def start(self) -> "PostgresServer":
        return _start_on_a_free_port(self)

    def _start(self) -> "PostgresServer":
        initdb, postgres = _pg_bin("initdb"), _pg_bin("postgres")
        account = _server_user()
        datadir = self.dir / "data"
        if not datadir.exists():
            os.chmod(self.dir, 0o755)
            if account is not None:
                os.chown(self.dir, account.pw_uid, account.pw_gid)
            subprocess.run(
                [initdb, "-D", str(datadir), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=self._demote(),
                cwd=self.dir,
            )
        self.proc = subprocess.Popen(
            [
                postgres,
                "-D",
                str(datadir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.dir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=self._demote(),
            cwd=self.dir,
        )
        _wait_for_port(self.port, self.proc)
        self._create_database()
        return self

    def _create_database(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 20
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{self.dbname}"')
        conn.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown; SIGTERM would wait for clients
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
