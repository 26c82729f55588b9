"""Scheduler firing lag: a seconds-resolution cron on DAILY_SUMMARY_CRON, the real scheduler.

Lag of a slot = its `job_runs` row's enqueued_at (stamped just before the run goes to Redis)
minus its `slot` (the cron fire time). A slot that the scheduler only caught up on after a
later one ("missed: ...") never enqueued a run: those are counted apart, not as lags.
"""

from __future__ import annotations

import time

from app.models import utcnow
from bench.stack import Bench, pct

CRON = "*/2 * * * * * *"  # every 2 seconds (7 fields, seconds first)
TEMPLATE = "schedule-daily-summary"


def lag(bench: Bench, interval: float, slots: int, log=print) -> dict:
    redis = bench.redis_client()
    redis.zrem("rq:scheduler:scheduled_jobs", TEMPLATE)  # registered afresh: no stale due time
    began = utcnow()
    proc = bench.start_scheduler(DAILY_SUMMARY_CRON=CRON, SCHEDULER_INTERVAL=interval)
    conn = bench.pg()
    query = (
        "SELECT slot, EXTRACT(EPOCH FROM enqueued_at - slot), status, coalesce(error, '') FROM job_runs "
        "WHERE job_name = 'daily-summary' AND trigger = 'scheduled' AND slot > %s ORDER BY slot"
    )
    budget = slots * max(interval, 2.0) * 1.5 + 30
    deadline = time.monotonic() + budget
    rows = []
    try:
        while time.monotonic() < deadline:
            time.sleep(2)
            with conn.cursor() as cur:
                cur.execute(query, (began,))
                rows = cur.fetchall()
            if sum(1 for r in rows if not r[3].startswith("missed")) >= slots:
                break
    finally:
        bench.stop(proc)
        conn.close()
    fired = [float(r[1]) * 1000 for r in rows if not r[3].startswith("missed")]
    missed = [r for r in rows if r[3].startswith("missed")]
    statuses = {}
    for r in rows:
        if not r[3].startswith("missed"):
            statuses[r[2]] = statuses.get(r[2], 0) + 1
    out = {
        "interval": interval,
        "fired": len(fired),
        "missed": len(missed),
        "statuses": statuses,
        "p50_ms": pct(fired, 50),
        "p99_ms": pct(fired, 99),
        "max_ms": max(fired, default=None),
    }
    log(
        f"  scheduler interval {interval:g}s: {len(fired)} slots fired, {len(missed)} missed; lag p50 "
        f"{out['p50_ms'] or 0:.0f} ms p99 {out['p99_ms'] or 0:.0f} ms"
    )
    return out
