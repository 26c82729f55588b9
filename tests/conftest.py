"""Fixtures: real Redis and PostgreSQL servers on free ports, the app, its client and CLI runner.

Tests that take `app` run twice, on SQLite and on PostgreSQL: once, on SQLite, when marked
`any_database` (they run no SQL), and once, on PostgreSQL, when marked `postgres_only` (they run
SQL, but what they assert is the processes', Redis's, the logs' or the pages' and not the
database's). Set REQUIRE_POSTGRES=1 (CI does) to fail instead of skip when PostgreSQL is not
installed.

Safe under pytest-xdist (`make test` runs `-n auto --dist worksteal`): session fixtures run once per
xdist worker process, so each worker has its own Redis and PostgreSQL on its own free ports and data
dirs, and its own Chromium (`chromium_browser`; each test opens its own browser context).
The collection is laid out longest tests first across the workers (tests/ordering.py).
Temporary files (tmp_path, the servers' data dirs, SQLite databases) go to RAM (/dev/shm) when it
has room, so SQLite commits do not wait on the disk; TMPDIR set by the caller wins.
"""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

from tests import ordering
from tests.servers import PostgresServer, RedisServer, ServerUnavailable

RAM_TMPDIR = "/dev/shm"
RAM_TMPDIR_MIN_FREE = 2 << 30  # bytes; a small /dev/shm (as in a default container) keeps the disk


def _use_ram_for_temporary_files() -> None:
    if os.environ.get("TMPDIR"):
        return
    try:
        stat = os.statvfs(RAM_TMPDIR)
    except OSError:
        return
    if stat.f_bavail * stat.f_frsize >= RAM_TMPDIR_MIN_FREE and os.access(RAM_TMPDIR, os.W_OK | os.X_OK):
        tempfile.tempdir = RAM_TMPDIR


_use_ram_for_temporary_files()

TEST_TOKEN = "test-token-0123456789"
DASHBOARD_USER = "operator"
DASHBOARD_PASSWORD = "dashboard-pass-0123"


WORKERS_PER_CORE = 2  # most tests wait on processes, sockets and browsers, not on the CPU


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`-n auto` (`make test`): two xdist workers per core; PYTEST_XDIST_AUTO_NUM_WORKERS=N still wins."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return WORKERS_PER_CORE * len(os.sched_getaffinity(0))


@pytest.hookimpl(trylast=True)  # after `-k`/`-m` deselection: the layout depends on the item count
def pytest_collection_modifyitems(config, items):
    ordering.reorder(config, items)


@pytest.fixture(scope="session")
def chromium_browser():
    """One headless Chromium per xdist worker (Playwright's driver and browser take seconds to start)."""
    from tests.test_dashboard_browser import _MISSING, CHROMIUM, CHROMIUM_ARGS, sync_playwright

    if _MISSING:
        pytest.fail(f"REQUIRE_BROWSER=1 but {_MISSING}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def redis_server():
    try:
        server = RedisServer().start()
    except ServerUnavailable as exc:
        pytest.fail(str(exc))
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_server():
    try:
        server = PostgresServer().start()
    except ServerUnavailable as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server):
    from redis import Redis

    Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc):
    """`any_database`: a test whose outcome cannot depend on the database runs on SQLite only;
    `postgres_only`: one that runs SQL the database does not change the outcome of, on PostgreSQL only.

    A test that parametrizes `database_url` itself keeps its own choice. The matrix stays where
    the database matters: queries, transactions, races, types, migrations.
    """
    if "database_url" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("any_database") is not None:
        only = "sqlite"
    elif metafunc.definition.get_closest_marker("postgres_only") is not None:
        only = "postgres"
    else:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if "database_url" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return
    metafunc.definition.add_marker(pytest.mark.parametrize("database_url", [only], indirect=True))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    server = request.getfixturevalue("postgres_server")
    _reset_postgres(server.url)
    return server.url


def _reset_postgres(url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    conn.close()


@pytest.fixture
def settings_overrides(redis_url, database_url):
    """Settings every test app and test worker share; tests may add to the dict."""
    return {
        "redis_url": redis_url,
        "database_url": database_url,
        "api_token": TEST_TOKEN,
        "dashboard_username": DASHBOARD_USER,
        "dashboard_password": DASHBOARD_PASSWORD,
        "job_retry_delay": 0,
        "log_level": "WARNING",
    }


@pytest.fixture
def app(settings_overrides):
    from app import create_app
    from app.config import configure
    from app.connections import database, db_session
    from app.models import create_tables

    app = create_app(settings_overrides)
    with db_session():
        create_tables()
    yield app
    if not database.is_closed():
        database.close()
    configure(None)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def auth():
    return {"Authorization": f"Bearer {TEST_TOKEN}"}


@pytest.fixture
def redis(app):
    return app.extensions["redis"]


def settings_env(overrides: dict) -> dict:
    """Environment for a worker/scheduler subprocess with the same settings as the test app."""
    import sys

    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ", "PYTHONPATH")}
    env.update({key.upper(): str(value) for key, value in overrides.items()})
    env["ENV_FILE"] = "/dev/null"
    env["PYTHONPATH"] = str(__import__("pathlib").Path(__file__).resolve().parent.parent)
    env["PYTHON"] = sys.executable
    return env


def _children(pid: int) -> list[int]:
    try:
        found = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(child) for child in fh.read().split()]
        return found
    except FileNotFoundError:  # gone, or a kernel without the children files: scan /proc
        pass
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def kill_process_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants, whatever their process group or signal handlers.

    Each process is stopped (SIGSTOP) before its children are listed, so none forks a new child
    that would escape; then all are killed.
    """
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            os.kill(current, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        tree.append(current)
        pending.extend(_children(current))
    for member in tree:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def start_process(settings_overrides, tmp_path):
    """Start `python -m <module> args…` with the test settings; all are stopped at teardown.

    Output goes to a file (a pipe nobody reads could block the process) and is printed at
    teardown, so a failing test shows it.
    """
    import subprocess
    import sys

    procs = []

    def start(*args, env_extra: dict | None = None):
        env = settings_env(settings_overrides)
        env.update(env_extra or {})
        log = open(tmp_path / f"proc-{len(procs)}.log", "wb")
        proc = subprocess.Popen([sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        proc.log_path = log.name
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        # The test is over: no graceful shutdown to wait for (RQ's work-horse ignores SIGTERM and
        # runs in its own process group, so it would outlive a killed worker and write into the
        # next test's Redis). The whole tree is frozen, then killed.
        kill_process_tree(proc.pid)
        proc.wait()
        with open(proc.log_path, "rb") as fh:
            print(
                f"--- output of {proc.args[1:]} (exit {proc.returncode}):\n{fh.read().decode(errors='replace')[-30000:]}"
            )


@pytest.fixture
def run_worker(app):
    """Drain the queues in this process with the service's worker class (forking), like RQ's tests."""
    from workers.worker import build_worker

    def run(queues=None):
        worker = build_worker(app.config["SETTINGS"], app.extensions["redis"], queues)
        worker.work(burst=True, with_scheduler=False)
        return worker

    return run
