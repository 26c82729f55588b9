"""Time the dashboard's data endpoint (and /metrics) with a large run history.

    .venv/bin/python bench/dashboard_bench.py                      # 100,000 runs over 90 days, SQLite
    .venv/bin/python bench/dashboard_bench.py --database postgres  # a private PostgreSQL server
    .venv/bin/python bench/dashboard_bench.py --days 7             # worst case: all runs in the 7-day window

Starts its own Redis (and PostgreSQL) on free loopback ports unless --redis-url / a database URL
is given, fills the history with `--runs` rows spread over `--days` days (the default matches
HISTORY_RETENTION_DAYS=90), then times GET /dashboard/data.json through the Flask test client
(server-side time: routing, SQL, Redis, JSON), `--repeat` times after a warm-up. Target: median
<= 200 ms with 100,000 runs. Not a test: figures depend on the machine and its load.

Rows carry `duration_s` as `app.runs.lifecycle.mark_ended` writes it (percentiles read that column and
its indexes, `app.core.stats.run_figures`). PostgreSQL gets ANALYZE only, not VACUUM: without a
visibility map it reads the table, not index-only, which is the slower case.
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

JOBS = (
    ("forecast", "forecast", 40.0, 0.6),
    ("daily-summary", "reports", 6.0, 0.25),
    ("cleanup", "maintenance", 2.0, 0.15),
)
STATUSES = (("finished", 90), ("failed", 4), ("stopped", 1), ("canceled", 2), ("skipped", 3))


def fill_history(runs: int, days: float, alerts: int, seed: int = 1) -> None:
    from app.connections import database
    from app.models import Alert, JobRun, run_duration, utcnow

    rng = random.Random(seed)
    now = utcnow()
    names, weights = [j[0] for j in JOBS], [j[3] for j in JOBS]
    statuses, status_weights = zip(*STATUSES)
    spec = {j[0]: j for j in JOBS}
    batch = []
    for i in range(runs):
        job = rng.choices(names, weights)[0]
        status = rng.choices(statuses, status_weights)[0]
        enqueued = now - timedelta(seconds=rng.uniform(0, days * 86400))
        ran = status in ("finished", "failed", "stopped")
        started = enqueued + timedelta(seconds=rng.uniform(0.05, 2)) if ran else None
        ended = started + timedelta(seconds=rng.lognormvariate(0, 0.5) * spec[job][2]) if ran else enqueued
        batch.append(
            {
                "id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "job_name": job,
                "queue": spec[job][1],
                "trigger": rng.choice(("scheduled", "manual")),
                "status": status,
                "enqueued_at": enqueued,
                "started_at": started,
                "ended_at": ended,
                "duration_s": run_duration(started, ended),
                "attempts": 1 if ran else 0,
                "error": "RuntimeError: planned failure" if status == "failed" else None,
            }
        )
        if len(batch) == 1000 or i == runs - 1:
            with database.atomic():
                JobRun.insert_many(batch).execute()
            batch = []
    rows = []
    for i in range(alerts):
        created = now - timedelta(seconds=rng.uniform(0, days * 86400))
        rows.append(
            {
                "type": "demand_spike",
                "severity": rng.choice(("high", "medium", "low")),
                "title": f"alert {i}",
                "message": "bench",
                "source": "scheduled_job",
                "subject": f"item:{i}",
                "figures": "{}",
                "fingerprint": f"bench|{i}",
                "created_at": created,
                "last_seen_at": created,
            }
        )
        if len(rows) == 1000 or i == alerts - 1:
            with database.atomic():
                Alert.insert_many(rows).execute()
            rows = []


def timed(call, repeat: int) -> list[float]:
    for _ in range(3):  # warm-up: connections, caches, template compilation
        call()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def describe(name: str, ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"{name:<28} median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms   (n={len(ms)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=90.0, help="spread the runs over this many days (default 90)")
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database", default="sqlite", help="sqlite, postgres, or a DATABASE_URL")
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args(argv)

    from tests.servers import PostgresServer, RedisServer

    servers = []
    workdir = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    try:
        redis_url = args.redis_url
        if redis_url is None:
            servers.append(RedisServer().start())
            redis_url = servers[-1].url
        if args.database == "sqlite":
            database_url = f"sqlite:///{workdir / 'bench.db'}"
        elif args.database == "postgres":
            servers.append(PostgresServer().start())
            database_url = servers[-1].url
        else:
            database_url = args.database

        from app import create_app
        from app.connections import database, db_session
        from app.models import JobRun, create_tables, utcnow
        from dashboard import data as dashboard_data

        app = create_app(
            {
                "redis_url": redis_url,
                "database_url": database_url,
                "api_token": "bench-token",
                "dashboard_username": "bench",
                "dashboard_password": "bench-pass",
                "log_level": "WARNING",
            }
        )
        with db_session():
            create_tables()
            existing = JobRun.select().count()
            if existing < args.runs:
                started = time.perf_counter()
                fill_history(args.runs - existing, args.days, args.alerts)
                print(
                    f"inserted {args.runs - existing} runs and {args.alerts} alerts in {time.perf_counter() - started:.1f} s"
                )
            if database_url.startswith("postgres"):
                database.execute_sql("ANALYZE")  # what autovacuum does in production after a bulk insert
            total = JobRun.select().count()
            in_week = JobRun.select().where(JobRun.enqueued_at >= utcnow() - timedelta(days=7)).count()
        kind = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
        print(f"{kind}: {total} runs in history, {in_week} in the last 7 days; {args.repeat} timed requests each")

        client = app.test_client()
        creds = {"Authorization": "Basic " + base64.b64encode(b"bench:bench-pass").decode()}

        def data_json():
            response = client.get("/dashboard/data.json", headers=creds)
            assert response.status_code == 200, response.get_data(as_text=True)[:300]

        def metrics():
            assert client.get("/metrics").status_code == 200

        results = {
            "GET /dashboard/data.json": timed(data_json, args.repeat),
            "GET /metrics": timed(metrics, max(5, args.repeat // 3)),
        }
        print()
        for name, ms in results.items():
            print(describe(name, ms))

        print("\ndata.json by section (server-side, no HTTP):")
        now = utcnow()
        redis = app.extensions["redis"]
        with app.app_context(), db_session():
            sections = {
                "jobs (24 h / 7 d figures)": lambda: dashboard_data.job_summaries(now),
                "runs per hour": lambda: dashboard_data.runs_per_hour(now),
                "recent runs": dashboard_data.recent_runs,
                "active runs": dashboard_data.active_runs,
                "alerts": lambda: dashboard_data.alert_summary(now),
                "queues + workers (Redis)": lambda: (
                    dashboard_data.queue_stats(redis),
                    dashboard_data.worker_rows(redis),
                ),
                "schedules": lambda: dashboard_data.read_schedules(redis, app.config["SETTINGS"]),
            }
            for name, call in sections.items():
                print("  " + describe(name, timed(call, max(5, args.repeat // 3))))
        median = statistics.median(results["GET /dashboard/data.json"])
        print(f"\ndata.json median {median:.1f} ms: {'within' if median <= 200 else 'OVER'} the 200 ms target")
        return 0
    finally:
        for server in servers:
            server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
