"""Bulk data for the benchmark, loaded with PostgreSQL's COPY (psycopg2 `copy_expert`).

Rows are generated in time order, as a live service appends them, so the physical order of
the tables correlates with their time columns as it would in production. Secondary indexes
are dropped for the load and re-created from their own definitions afterwards (the schema
ends exactly as the migrations made it), then the table is vacuumed and analysed.
"""

from __future__ import annotations

import contextlib
import random
from datetime import datetime, timedelta

from app.models import utcnow

FMT = "%Y-%m-%d %H:%M:%S.%f"


class _LineStream:
    """A file-like object COPY reads from: lines produced lazily, in chunks."""

    def __init__(self, lines, chunk: int = 2000):
        self._lines = iter(lines)
        self._chunk = chunk

    def read(self, size: int = -1) -> str:
        out = []
        for line in self._lines:
            out.append(line)
            if len(out) >= self._chunk:
                break
        return "".join(out)

    readline = read


@contextlib.contextmanager
def secondary_indexes_dropped(conn, table: str):
    with conn.cursor() as cur:
        cur.execute(
            """SELECT i.indexname, i.indexdef FROM pg_indexes i
               WHERE i.tablename = %s AND i.schemaname = 'public'
                 AND i.indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)""",
            (table, table),
        )
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
    try:
        yield
    finally:
        with conn.cursor() as cur:
            for _, definition in indexes:
                cur.execute(definition)


def _copy(conn, table: str, columns: list[str], lines) -> None:
    cols = ", ".join(f'"{c}"' for c in columns)
    with conn.cursor() as cur:
        cur.copy_expert(f'COPY "{table}" ({cols}) FROM STDIN', _LineStream(lines), size=65536)


def vacuum_analyze(conn, table: str) -> None:
    old = conn.autocommit
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'VACUUM (ANALYZE) "{table}"')
    conn.autocommit = old


# -- job_runs -------------------------------------------------------------------------------
JOBS = (("forecast", "forecast", 80), ("daily-summary", "reports", 10), ("cleanup", "maintenance", 10))
STATUSES = (("finished", 90), ("failed", 4), ("stopped", 1), ("canceled", 2), ("skipped", 3))  # all terminal
RESULT = '{"alerts_generated": 2, "duration_seconds": 1.234, "status": "completed", "summary": {"high_severity": 1}}'


def _weighted(pairs):
    out = []
    for value, weight in pairs:
        out.extend([value] * weight)
    return out


def job_run_lines(n: int, days: float, rng: random.Random, ids_out: list | None = None, sample_every: int = 100):
    """`n` ended runs spread evenly over the last `days` days (oldest first)."""
    jobs = _weighted([((name, queue), w) for name, queue, w in JOBS])
    statuses = _weighted(STATUSES)
    now = utcnow()
    start = now - timedelta(days=days)
    step = timedelta(days=days) / max(n, 1)
    for i in range(n):
        run_id = "%032x" % rng.getrandbits(128)
        name, queue = jobs[rng.randrange(len(jobs))]
        if ids_out is not None and name == "forecast" and i % sample_every == 0:
            ids_out.append(run_id)
        status = statuses[rng.randrange(len(statuses))]
        trigger = "scheduled" if rng.random() < 0.7 else "manual"
        enqueued = start + step * i
        slot = enqueued.strftime(FMT) if trigger == "scheduled" else "\\N"
        if status == "skipped":
            started, ended, attempts, duration = "\\N", enqueued.strftime(FMT), 0, "\\N"
        else:
            s = enqueued + timedelta(milliseconds=rng.randint(5, 900))
            secs = rng.uniform(0.1, 60)
            started, ended, attempts = s.strftime(FMT), (s + timedelta(seconds=secs)).strftime(FMT), 1
            duration = "%.6f" % secs
        result = RESULT if status == "finished" else "\\N"
        error = "ValueError: bench failure" if status == "failed" else "\\N"
        yield (
            f"{run_id}\t{name}\t{queue}\t{trigger}\t{status}\t{slot}\t{enqueued.strftime(FMT)}\t"
            f"{started}\t{ended}\t{duration}\t{attempts}\t{result}\t{error}\n"
        )


JOB_RUN_COLUMNS = [
    "id",
    "job_name",
    "queue",
    "trigger",
    "status",
    "slot",
    "enqueued_at",
    "started_at",
    "ended_at",
    "duration_s",
    "attempts",
    "result",
    "error",
]


def load_job_runs(conn, n: int, days: float = 89, seed: int = 6) -> list[str]:
    """Load `n` history rows; returns a sample of their ids (for the status route)."""
    ids: list[str] = []
    with secondary_indexes_dropped(conn, "job_runs"):
        _copy(conn, "job_runs", JOB_RUN_COLUMNS, job_run_lines(n, days, random.Random(seed), ids, max(1, n // 20000)))
    conn.commit()
    vacuum_analyze(conn, "job_runs")
    return ids


# -- alerts ---------------------------------------------------------------------------------
ALERT_COLUMNS = [
    "type",
    "severity",
    "title",
    "message",
    "source",
    "job_id",
    "subject",
    "figures",
    "fingerprint",
    "occurrences",
    "resolved",
    "created_at",
    "last_seen_at",
    "state",  # NOT NULL since migration 0009, with no server default
]
SEVERITIES = _weighted((("high", 2), ("medium", 4), ("low", 4)))
SOURCES = _weighted((("scheduled_job", 8), ("manual", 2)))


def alert_lines(n: int, start: datetime, end: datetime, rng: random.Random, batch: int = 0):
    """Alert rows for COPY; `batch` keeps fingerprints unique across loads (open alerts have a
    unique index on their fingerprint: the API's recent alerts and the cleanup's expired ones)."""
    step = (end - start) / max(n, 1)
    for i in range(n):
        at = (start + step * i).strftime(FMT)
        kind = "capacity_warning" if i % 2 else "demand_spike"
        severity = SEVERITIES[rng.randrange(len(SEVERITIES))]
        source = SOURCES[rng.randrange(len(SOURCES))]
        item = f"ITEM-{rng.randrange(100000):05d}"
        line = f"LINE-{rng.randrange(200):03d}"
        if kind == "capacity_warning":
            title = f"Capacity warning on {line}"
            message = f"Forecast load {rng.randrange(900, 1300)} exceeds {line} capacity 1000 on day 3"
            subject = line
        else:
            title = f"Demand spike for {item}"
            message = f"Forecast demand for {item} on {line} is {rng.uniform(4, 12):.1f} MADs above its median"
            subject = f"{item}@{line}"
        figures = '{"capacity": 1000, "load": 1104.2, "score": 6.3}'
        yield (
            f"{kind}\t{severity}\t{title}\t{message}\t{source}\t\\N\t{subject}\t{figures}\t"
            f"{kind}:{subject}:{batch}-{i}\t1\tf\t{at}\t{at}\topen\n"
        )


def load_alerts(conn, n: int, start: datetime, end: datetime, seed: int = 7, sightings: int = 1) -> None:
    """n alerts, each with `sightings` sightings (a stored alert has at least the one that raised it)."""
    with conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM alerts")
        before = cur.fetchone()[0]
    with secondary_indexes_dropped(conn, "alerts"):
        _copy(conn, "alerts", ALERT_COLUMNS, alert_lines(n, start, end, random.Random(seed), batch=seed))
    with secondary_indexes_dropped(conn, "alert_occurrences"), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO alert_occurrences (alert_id, job_id, seen_at, severity)"
            " SELECT a.id, NULL, a.last_seen_at - make_interval(hours => 2 * k), a.severity"
            " FROM alerts a, generate_series(0, %s - 1) k WHERE a.id > %s",
            (sightings, before),
        )
    conn.commit()
    vacuum_analyze(conn, "alerts")
    vacuum_analyze(conn, "alert_occurrences")


def recent_window(days: float = 89) -> tuple[datetime, datetime]:
    now = utcnow()
    return now - timedelta(days=days), now - timedelta(minutes=1)


def expired_window(days: float = 300, retention_days: int = 90) -> tuple[datetime, datetime]:
    end = utcnow() - timedelta(days=retention_days + 1)
    return end - timedelta(days=days), end
