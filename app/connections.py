"""The one place that creates Redis and database connections.

Everything else receives them explicitly (RQ requires `connection=`), and models use the
`database` proxy bound here. Database connections are opened per unit of work (request,
job, scheduler tick) with `db_session()` and never carried across a fork.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import peewee
from playhouse.db_url import parse as parse_db_url
from redis import Redis

from app.config import Settings

database = peewee.DatabaseProxy()


def redis_connection(settings: Settings) -> Redis:
    """A Redis client for `settings.redis_url` (redis://, rediss://, with or without password)."""
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=30,
        retry_on_timeout=True,
    )


def make_database(url: str) -> peewee.Database:
    """A peewee database for a `sqlite:///path`, `postgres://` or `postgresql://` URL."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ":memory:"
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
        return peewee.PostgresqlDatabase(name, **params)
    raise ValueError(f"unsupported DATABASE_URL scheme {scheme!r} (use sqlite:///, postgres:// or postgresql://)")


def bind_database(settings: Settings) -> peewee.Database:
    """Bind the models' proxy to the configured database (no connection is opened)."""
    current = getattr(database, "obj", None)
    if current is not None and not current.is_closed():
        current.close()
    db = make_database(settings.database_url)
    database.initialize(db)
    return db


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
