"""The web's PostgreSQL pool: no ping on checkout, a dead connection fails one request with a 503."""

from __future__ import annotations

import psycopg2
import pytest

from app.connections import CheckedPostgresqlPool, database


@pytest.fixture
def database_url(postgres_server):
    from tests.conftest import _reset_postgres

    _reset_postgres(postgres_server.url)
    return postgres_server.url


def _backend_pid(client) -> int:
    """The pid of the connection the last request returned to the pool."""
    assert client.get("/api/alerts").status_code == 200
    pool = database.obj
    assert isinstance(pool, CheckedPostgresqlPool) and len(pool._connections) == 1
    return pool._connections[0][2].get_backend_pid()


def test_checkout_sends_nothing_to_the_server(client, monkeypatch):
    _backend_pid(client)
    sent = []
    monkeypatch.setattr(database.obj, "_is_closed", _spy(database.obj._is_closed, sent))
    assert client.get("/api/alerts").status_code == 200
    assert sent == [False]  # checked by its local state only, and reused


def _spy(method, calls):
    def wrapped(conn):
        result = method(conn)
        calls.append(result)
        return result

    return wrapped


def test_a_connection_killed_while_idle_fails_one_request_then_the_next_reconnects(client, postgres_server):
    pid = _backend_pid(client)
    admin = psycopg2.connect(postgres_server.url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()

    failed = client.get("/api/reports")  # a route Flask answers (the alerts page has a fast path: below)
    assert failed.status_code == 503
    assert failed.get_json()["error"]["code"] == "database_unavailable"
    assert database.obj._connections == []  # the dead connection was not put back

    assert client.get("/api/reports").status_code == 200
    assert _backend_pid(client) != pid


def test_a_fast_read_on_a_killed_connection_is_answered_by_flask_on_a_fresh_one(client, postgres_server):
    """The read routes' fast path (app/api/fast_reads.py) hands any failure to Flask, whose view
    checks out a new connection: a GET of the alerts page does not fail for a connection that died idle."""
    pid = _backend_pid(client)
    admin = psycopg2.connect(postgres_server.url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()
    assert client.get("/api/alerts").status_code == 200
    assert _backend_pid(client) != pid


def test_a_connection_in_a_failed_transaction_is_never_handed_out(client):
    _backend_pid(client)
    pool = database.obj
    conn = pool._connections[0][2]
    conn.autocommit = False
    with pytest.raises(psycopg2.Error), conn.cursor() as cur:
        cur.execute("SELECT 1/0")  # now in a failed transaction
    assert client.get("/api/alerts").status_code == 200
    assert conn.closed  # discarded at checkout, closed rather than left to the GC


def test_after_a_server_restart_one_request_fails_not_one_per_pooled_connection(client, postgres_server):
    import threading

    pool = database.obj
    pids = []

    def checkout():  # a second thread's connection, returned to the pool idle
        pool.connect()
        pids.append(pool.connection().get_backend_pid())
        pool.close()

    _backend_pid(client)
    pool.connect()  # this thread holds one while another thread opens a second
    thread = threading.Thread(target=checkout)
    thread.start()
    thread.join()
    pids.append(pool.connection().get_backend_pid())
    pool.close()
    assert len(pool._connections) == 2
    admin = psycopg2.connect(postgres_server.url)
    admin.autocommit = True
    with admin.cursor() as cur:
        for pid in pids:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()

    assert client.get("/api/alerts").status_code == 503
    assert pool._connections == []  # the other dead connection went with it
    assert client.get("/api/alerts").status_code == 200


def test_each_app_keeps_its_own_database_redis_and_settings(settings_overrides, tmp_path, auth):
    """create_app sets no process-wide state an app depends on: app A still uses A's database
    (and Redis and settings) after app B was created in the same process."""
    from app import create_app
    from app.config import configure, get_settings
    from app.connections import database, db_session
    from app.models import JobRun, create_tables, utcnow

    apps = {}
    for name in ("a", "b"):
        apps[name] = create_app(
            {**settings_overrides, "database_url": f"sqlite:///{tmp_path / name}.db", "result_ttl": 100 + len(apps)}
        )
        with apps[name].app_context(), db_session():
            create_tables()
            JobRun.create(
                id=f"run-of-{name}",
                job_name="cleanup",
                queue="maintenance",
                trigger="manual",
                status="queued",
                enqueued_at=utcnow(),
            )
    try:
        for name, app in apps.items():
            with app.app_context():
                assert database.obj is app.extensions["database"]
                assert get_settings() is app.config["SETTINGS"]
                assert get_settings().result_ttl == app.config["SETTINGS"].result_ttl
            runs = app.test_client().get("/api/jobs/cleanup/history", headers=auth).get_json()["runs"]
            assert [r["job_id"] for r in runs] == [f"run-of-{name}"]
        assert apps["a"].extensions["redis"] is not apps["b"].extensions["redis"]
    finally:
        configure(None)
