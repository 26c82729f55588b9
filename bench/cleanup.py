"""Cleanup: the real `cleanup` run (API trigger -> worker -> cleanup_old_alerts) deleting
expired alerts on PostgreSQL, each with `sightings` sightings deleted with it (a stored alert
has at least the one that raised it), while a writer inserts fresh alerts, one per transaction.

rows/s = deleted alerts and sightings / (run ended_at - started_at); alerts/s the alerts alone
(`--sightings 0` loads none: the work of the cleanup before sightings existed). The writer's waits are the durations
of its INSERT + COMMIT round trips during the run (it pauses 10 ms between them).
"""

from __future__ import annotations

import threading
import time
from datetime import timezone

from bench import data
from bench.stack import Bench, http, pct, wait_until

INSERT = (
    "INSERT INTO alerts (type, severity, title, message, source, subject, figures, fingerprint, occurrences, "
    "resolved, created_at, last_seen_at, state) VALUES ('demand_spike', 'low', 'Writer alert', "
    "'inserted during cleanup', 'scheduled_job', 'ITEM@LINE', '{}', %s, 1, false, now() at time zone 'utc', "
    "now() at time zone 'utc', 'open')"
)


class Writer(threading.Thread):
    def __init__(self, bench: Bench, max_seconds: float, pause: float = 0.01, max_inserts: int = 200_000):
        super().__init__(daemon=True)
        self.conn = bench.pg()
        self.stop_event = threading.Event()
        self.max_seconds, self.pause, self.max_inserts = max_seconds, pause, max_inserts
        self.samples: list[tuple[float, float]] = []  # (wall time at start, seconds)
        self.error: BaseException | None = None  # a writer that failed measured nothing: the section fails

    def run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        try:
            with self.conn.cursor() as cur:
                for i in range(self.max_inserts):
                    if self.stop_event.is_set() or time.monotonic() > deadline:
                        break
                    at = time.time()
                    began = time.perf_counter()
                    cur.execute(INSERT, (f"writer:{i}:{at}",))
                    self.samples.append((at, time.perf_counter() - began))
                    time.sleep(self.pause)
        except BaseException as exc:
            self.error = exc
        finally:
            self.conn.close()


def run(bench: Bench, expired: int, log=print, budget: float = 1200, sightings: int = 1) -> dict:
    conn = bench.pg(autocommit=False)
    began = time.monotonic()
    data.load_alerts(conn, expired, *data.expired_window(), seed=11, sightings=sightings)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM alerts")
        total = cur.fetchone()[0]
    conn.close()
    log(f"  loaded {expired:,} expired alerts in {time.monotonic() - began:.0f}s ({total:,} alerts in all)")
    writer = Writer(bench, budget)
    writer.start()
    time.sleep(2)  # a baseline of undisturbed inserts
    status, body, _ = http("POST", f"http://127.0.0.1:{bench.web_port}/api/jobs/cleanup/trigger", {})
    if status != 202:
        writer.stop_event.set()
        raise RuntimeError(f"cleanup trigger answered {status}: {body}")
    run_id = body["job_id"]
    pg = bench.pg()

    def ended():
        with pg.cursor() as cur:
            cur.execute("SELECT status, started_at, ended_at, result FROM job_runs WHERE id = %s", (run_id,))
            row = cur.fetchone()
        return row if row and row[0] in ("finished", "failed", "stopped", "canceled") else None

    try:
        status, started_at, ended_at, result = wait_until(ended, budget, 0.5, "the cleanup run")
    finally:
        writer.stop_event.set()
        writer.join(30)
    pg.close()
    if writer.error is not None:
        raise RuntimeError(f"the writer beside the cleanup failed: {writer.error!r}") from writer.error
    import json

    result = json.loads(result) if isinstance(result, str) else (result or {})
    start_ts = started_at.replace(tzinfo=timezone.utc).timestamp()
    end_ts = ended_at.replace(tzinfo=timezone.utc).timestamp()
    during = [s * 1000 for at, s in writer.samples if start_ts <= at <= end_ts]
    before = [s * 1000 for at, s in writer.samples if at < start_ts]
    seconds = end_ts - start_ts
    deleted = result.get("deleted_alerts", 0)
    deleted_sightings = result.get("deleted_sightings", 0)
    out = {
        "status": status,
        "deleted": deleted,
        "deleted_sightings": deleted_sightings,
        "seconds": seconds,
        "rows_per_s": (deleted + deleted_sightings) / seconds if seconds else None,
        "alerts_per_s": deleted / seconds if seconds else None,
        "writer_inserts": len(during),
        "writer_max_ms": max(during, default=None),
        "writer_p99_ms": pct(during, 99),
        "writer_p50_ms": pct(during, 50),
        "writer_before_p50_ms": pct(before, 50),
        "result": result,
    }
    log(
        f"  cleanup: {deleted:,} alerts and {deleted_sightings:,} sightings deleted in {seconds:.1f}s = "
        f"{out['rows_per_s'] or 0:,.0f} rows/s ({out['alerts_per_s'] or 0:,.0f} alerts/s); writer "
        f"{len(during)} inserts, p50 {out['writer_p50_ms'] or 0:.1f} ms, p99 {out['writer_p99_ms'] or 0:.1f} ms, "
        f"max {out['writer_max_ms'] or 0:.1f} ms"
    )
    return out
