"""Listing pages kept per process and served again while the database has committed nothing since.

A history or alerts page costs a query of 50 rows, their conversion and 20 KB of JSON, about
2 ms of CPU; polling dashboards and scripts ask for the same first pages over and over. Such a
page is kept with the PostgreSQL snapshot (`pg_current_snapshot()`: the highest completed
transaction and those still running) read *before* the page's query. A later request reads
the snapshot again, one round trip, and gets the kept page only when the text is the same.

Why that is exact, whoever writes (the worker, the CLI, an operator's SQL, a restore): every
transaction that commits or aborts changes the snapshot, and a snapshot's text never comes
back (its horizon only grows; the running set below it only shrinks). Equal text therefore
means no commit since the page's snapshot was read, so the page, read after it, shows exactly
the current committed state. A page read while a commit landed carries the older snapshot and
is simply never served. Any commit anywhere in the cluster moves the snapshot, so a busy
database mostly misses; a miss costs one extra round trip.

SQLite has no such counter (`PRAGMA data_version` is per connection, and the web process opens
one per request), so there `snapshot()` is None and nothing is kept. What a page shows from
Redis (a run waiting for RQ's retry) is not in the snapshot: callers do not keep those pages.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from peewee import PostgresqlDatabase

from app.connections import database

# pg_current_snapshot() exists since PostgreSQL 13 (server_version_num 130000).
MIN_SERVER_VERSION = 130000
DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # per process; a 50-row page is about 20 KB
MAX_ENTRY_BYTES = 1024 * 1024  # a 500-row page of long messages is not worth the room


def snapshot() -> str | None:
    """The current database's committed-state snapshot as text, or None when it has none (SQLite)."""
    db = database.obj
    if not isinstance(db, PostgresqlDatabase):
        return None
    if db.is_closed():
        db.connect()
    if (db.server_version or 0) < MIN_SERVER_VERSION:
        return None
    row = database.execute_sql("SELECT pg_current_snapshot()::text").fetchone()
    return str(row[0]) if row else None


class PageCache:
    """Bodies by key, each with the snapshot it was read after; least recently used go first.

    One per app and process (gunicorn's threads share it); `max_bytes` bounds the bodies kept,
    so keys a client invents (every cursor is a key) cannot grow it.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, current: str) -> bytes | None:
        """The body kept for `key` if it was read after the snapshot `current`, else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != current:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: str, read_after: str, body: bytes) -> None:
        """Keep `body`, read after the snapshot `read_after`, for `key` (replacing what it had)."""
        if len(body) > min(MAX_ENTRY_BYTES, self.max_bytes):
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.size -= len(old[1])
            self._entries[key] = (read_after, body)
            self.size += len(body)
            while self.size > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.size -= len(evicted)

    def __len__(self) -> int:
        return len(self._entries)
