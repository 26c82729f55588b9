"""The one place that creates Redis and database connections.

Everything else receives them explicitly (RQ requires `connection=`), and models use the
`database` proxy bound here. Database connections are opened per unit of work (request,
job, scheduler tick) with `db_session()` and never carried across a fork.

The proxy resolves to the current app's database while one of its app contexts is active (a
context variable, `using_database`), else to the process's (`bind_database`: the worker, the
scheduler, scripts). So two apps in one process each keep their own database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlparse, urlsplit, urlunsplit

import peewee
from playhouse.db_url import parse as parse_db_url
from playhouse.pool import PooledPostgresqlDatabase
from psycopg2.extensions import TRANSACTION_STATUS_IDLE
from redis import Redis

from app.config import Settings


class ContextDatabaseProxy(peewee.DatabaseProxy):
    """peewee's proxy, resolving to the database of the active context, else to the process's."""

    __slots__ = ("_process_obj",)

    def __setattr__(self, attr: str, value) -> None:
        object.__setattr__(self, "_process_obj" if attr == "obj" else attr, value)  # initialize() binds the process's

    @property
    def obj(self) -> peewee.Database | None:
        current = _context_database.get()
        return current if current is not None else self._process_obj


_context_database: ContextVar[peewee.Database | None] = ContextVar("context_database", default=None)
database = ContextDatabaseProxy()


def is_postgres() -> bool:
    """Whether the models' current database is PostgreSQL (else SQLite, the embedded default)."""
    return isinstance(database.obj, peewee.PostgresqlDatabase)


@contextlib.contextmanager
def using_database(db: peewee.Database) -> Iterator[peewee.Database]:
    """Inside, the models use `db` (this thread or task only); the previous binding is restored after."""
    token = _context_database.set(db)
    try:
        yield db
    finally:
        _context_database.reset(token)


class CheckedPostgresqlPool(PooledPostgresqlDatabase):
    """A pool whose checkout trusts the connection's local state instead of a `SELECT 1`.

    peewee's pool pings an idle connection on every checkout: one extra round trip per request
    (24% of the web workers' samples on the status route). A connection that died while idle
    (server restarted) now fails the one request that uses it, with the usual 503 of any
    database error; psycopg2 then marks it closed, it is discarded at check-in, and the error
    handler drops the pool's other idle connections (`discard_idle_connections`). A connection
    that is closed, or not idle (a failed or unknown transaction state), is never handed out.
    """

    def _is_closed(self, conn) -> bool:
        if conn.closed:
            return True
        if conn.get_transaction_status() == TRANSACTION_STATUS_IDLE:
            return False
        self._close_raw(conn)  # not reusable: close it rather than leave the socket to the GC
        return True


def redis_client_url(settings: Settings) -> str:
    """`settings.redis_url` with the TLS settings as query options for rediss:// URLs.

    Every client (the service's and rq-dashboard's, which opens its own from a URL) reads the
    same certificate policy this way; options already written in REDIS_URL win.
    """
    parts = urlsplit(settings.redis_url)
    if parts.scheme != "rediss":
        return settings.redis_url
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.setdefault("ssl_cert_reqs", settings.redis_ssl_cert_reqs)
    if settings.redis_ssl_ca_certs:
        query.setdefault("ssl_ca_certs", settings.redis_ssl_ca_certs)
    return urlunsplit(parts._replace(query=urlencode(query)))


def redis_connection(settings: Settings) -> Redis:
    """A Redis client for `settings.redis_url` (redis://, rediss://, with or without password)."""
    return Redis.from_url(
        redis_client_url(settings),
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=30,
        retry_on_timeout=True,
    )


def make_database(url: str, pooled: bool = False) -> peewee.Database:
    """A peewee database for a `sqlite:///path`, `postgres://` or `postgresql://` URL.

    `pooled` keeps PostgreSQL connections open between requests (the web process only: a
    pool would carry open connections across a worker's fork).
    """
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ":memory:"
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # WAL + busy timeout: web, worker and scheduler processes share the file.
        return peewee.SqliteDatabase(
            path,
            pragmas={"journal_mode": "wal", "busy_timeout": 10000, "foreign_keys": 1, "synchronous": "normal"},
            timeout=10,
        )
    if scheme in ("postgres", "postgresql"):
        params = parse_db_url(url)
        params.setdefault("connect_timeout", 5)
        name = params.pop("database")
        if pooled:
            return CheckedPostgresqlPool(name, max_connections=32, stale_timeout=300, timeout=10, **params)
        return peewee.PostgresqlDatabase(name, **params)
    raise ValueError(f"unsupported DATABASE_URL scheme {scheme!r} (use sqlite:///, postgres:// or postgresql://)")


def discard_idle_connections() -> None:
    """Close the pool's idle connections after a database error (a restarted server killed them
    all: each would fail its own request); the next checkout connects afresh. No-op unpooled."""
    pool = getattr(database, "obj", None)
    if isinstance(pool, PooledPostgresqlDatabase):
        pool.close_idle()


def bind_database(settings: Settings, pooled: bool = False) -> peewee.Database:
    """Bind the process's database to the configured one (no connection is opened)."""
    db = make_database(settings.database_url, pooled=pooled)
    bind_process_database(db)
    return db


def bind_process_database(db: peewee.Database) -> None:
    """Make `db` the database of code outside any app context; the previous one's connections are closed."""
    current = database._process_obj
    if current is not None and current is not db:
        if not current.is_closed():
            current.close()
        if isinstance(current, PooledPostgresqlDatabase):
            current.close_all()
    database.initialize(db)


def process_database() -> peewee.Database | None:
    """The database bound for this process (None: not bound yet), whatever context is active."""
    return database._process_obj


@contextlib.contextmanager
def db_session() -> Iterator[peewee.Database]:
    """Open a connection for a unit of work unless one is open already; close what it opened."""
    opened = database.is_closed()
    if opened:
        database.connect()
    try:
        yield database
    finally:
        if opened and not database.is_closed():
            database.close()
