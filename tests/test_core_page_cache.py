"""The page cache's own rules (app/core/page_cache.py): a page is served only for the snapshot it
was read after, the bodies kept stay within the byte budget, least recently used go first, and
SQLite (no snapshot) keeps nothing. Its use by the read routes is in tests/test_fast_reads.py."""

from __future__ import annotations

import peewee

from app.connections import using_database
from app.core.page_cache import MAX_ENTRY_BYTES, PageCache, snapshot


def test_a_page_is_served_only_for_the_snapshot_it_was_read_after():
    pages = PageCache()
    pages.put("/api/alerts?", "10:12:10", b"page")
    assert pages.get("/api/alerts?", "10:12:10") == b"page"
    assert pages.get("/api/alerts?", "12:12:") is None  # something committed since
    assert pages.get("/api/alerts?limit=2", "10:12:10") is None
    assert (pages.hits, pages.misses) == (1, 2)
    pages.put("/api/alerts?", "12:12:", b"newer")
    assert pages.get("/api/alerts?", "12:12:") == b"newer"
    assert len(pages) == 1 and pages.size == len(b"newer")


def test_keys_a_client_invents_cannot_grow_it_beyond_its_budget():
    pages = PageCache(max_bytes=1000)
    for i in range(100):
        pages.put(f"/api/alerts?cursor={i}", "1:1:", b"x" * 300)
        assert pages.size <= 1000
    assert len(pages) == 3
    assert [pages.get(f"/api/alerts?cursor={i}", "1:1:") is not None for i in (96, 97, 98, 99)] == [
        False,
        True,
        True,
        True,
    ]
    pages.put("/huge", "1:1:", b"x" * 1001)  # larger than the whole budget: not kept, nothing evicted
    assert pages.get("/huge", "1:1:") is None and len(pages) == 3


def test_the_least_recently_served_page_goes_first():
    pages = PageCache(max_bytes=600)
    pages.put("a", "1:1:", b"x" * 200)
    pages.put("b", "1:1:", b"x" * 200)
    pages.put("c", "1:1:", b"x" * 200)
    assert pages.get("a", "1:1:") is not None  # a is now the most recently used
    pages.put("d", "1:1:", b"x" * 200)
    assert pages.get("b", "1:1:") is None
    assert all(pages.get(key, "1:1:") is not None for key in ("a", "c", "d"))


def test_a_page_over_the_entry_limit_is_not_kept():
    pages = PageCache(max_bytes=4 * MAX_ENTRY_BYTES)
    pages.put("big", "1:1:", b"x" * (MAX_ENTRY_BYTES + 1))
    assert len(pages) == 0 and pages.size == 0


def test_sqlite_has_no_snapshot_so_nothing_is_kept(tmp_path):
    db = peewee.SqliteDatabase(str(tmp_path / "x.db"))
    with using_database(db):
        assert snapshot() is None
