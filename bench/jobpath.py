"""The job path: trigger -> start latency, and short-job throughput against raw RQ and Celery.

Latency: sequential triggers through the API (plain accepts), each waited for, with the
worker idle (back on its blocking dequeue) before the next; figures from the run's own
`job_runs` row (started_at - enqueued_at: the row is stamped by the web process before the
job reaches Redis and by the work-horse when the run starts) and from RQ's job hash.

Throughput: N jobs drained by K worker processes. For RQ the workers start first and the N
jobs arrive in one transaction; Celery's tasks are published first and its worker started
after (its pool children start together). The rate is (N - 1) / (last end - first end) from
each job's own end time (RQ's `ended_at`, Celery's `date_done`), so process start-up and
enqueueing are not counted.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

from bench.stack import BIN, Bench, http, pct, wait_until

ENDED = {b"finished", b"failed", b"stopped", b"canceled"}
RAW_QUEUE = "bench-raw"


def sequential_triggers(
    bench: Bench, n: int, job: str = "forecast", pause: float = 0.1, budget: float = 600
) -> list[tuple[str, float]]:
    """Trigger `n` runs one after the other, each after the previous ended; (run id, HTTP seconds)."""
    redis = bench.redis_client()
    url = f"http://127.0.0.1:{bench.web_port}/api/jobs/{job}/trigger"
    out = []
    deadline = time.monotonic() + budget
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        status, body, seconds = http("POST", url, {})
        if status != 202:
            raise RuntimeError(f"trigger answered {status}: {body}")
        run_id = body["job_id"]
        wait_until(lambda: redis.hget(f"rq:job:{run_id}", "status") in ENDED, 60, 0.005, f"run {run_id}")
        out.append((run_id, seconds))
        time.sleep(pause)  # the worker is idle again: back on its blocking dequeue
    return out


def _ts(raw: bytes | None) -> float | None:
    if not raw:
        return None
    text = raw.decode()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text).timestamp()


def latency(bench: Bench, n: int, log=print) -> dict:
    runs = sequential_triggers(bench, n)
    ids = [run_id for run_id, _ in runs]
    conn = bench.pg()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, status, EXTRACT(EPOCH FROM started_at - enqueued_at) FROM job_runs WHERE id = ANY(%s)", (ids,)
        )
        rows = cur.fetchall()
    conn.close()
    redis = bench.redis_client()
    with redis.pipeline(transaction=False) as pipe:
        for run_id in ids:
            pipe.hmget(f"rq:job:{run_id}", "enqueued_at", "started_at", "ended_at")
        hashes = pipe.execute()
    row_ms = [float(lag) * 1000 for _, status, lag in rows if lag is not None]
    rq_ms = [(_ts(s) - _ts(e)) * 1000 for e, s, _ in hashes if e and s]
    http_ms = [seconds * 1000 for _, seconds in runs]
    statuses = {}
    for _, status, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    out = {
        "runs": len(runs),
        "statuses": statuses,
        "row_p50_ms": pct(row_ms, 50),
        "row_p99_ms": pct(row_ms, 99),
        "row_max_ms": max(row_ms, default=None),
        "rq_p50_ms": pct(rq_ms, 50),
        "rq_p99_ms": pct(rq_ms, 99),
        "http_p50_ms": pct(http_ms, 50),
        "http_p99_ms": pct(http_ms, 99),
    }
    log(
        f"  trigger->start over {len(runs)} runs: row p50 {out['row_p50_ms']:.1f} ms p99 {out['row_p99_ms']:.1f} ms;"
        f" RQ started_at p50 {out['rq_p50_ms']:.1f} p99 {out['rq_p99_ms']:.1f}; HTTP accept p50 "
        f"{out['http_p50_ms']:.1f} p99 {out['http_p99_ms']:.1f}"
    )
    return out


# -- throughput -------------------------------------------------------------------------------
VARIANTS = (
    ("project", 1),
    ("project", 2),
    ("rq-fork", 1),
    ("rq-fork", 2),
    ("rq-simple", 1),
    ("rq-simple", 2),
    ("celery", 1),
    ("celery", 2),
)
LABELS = {
    "project": "project worker (python -m workers), tracked jobs + history rows",
    "rq-fork": "raw RQ Worker (forking), no-op",
    "rq-simple": "raw RQ SimpleWorker, no-op",
    "celery": "Celery prefork, Redis broker+backend, no-op",
}


def _rate(end_times: list[float]) -> tuple[float, float]:
    end_times = sorted(end_times)
    span = end_times[-1] - end_times[0]
    return (len(end_times) - 1) / span if span > 0 else float("nan"), span


def _rq_variant(bench: Bench, kind: str, procs: int, n: int, timeout: float) -> dict:
    from rq import Queue, Retry, Worker

    redis = bench.redis_client()
    queue_name = "default" if kind == "project" else RAW_QUEUE
    queue = Queue(queue_name, connection=redis)
    started = []
    try:
        before = {w.name for w in Worker.all(connection=redis)}
        for _ in range(procs):
            if kind == "project":
                started.append(bench.start_worker())  # all four queues, as the Procfile runs it
            else:
                worker_class = "rq.worker.Worker" if kind == "rq-fork" else "rq.worker.SimpleWorker"
                started.append(
                    bench.start(
                        "rq-worker",
                        [
                            str(BIN / "rq"),
                            "worker",
                            "--url",
                            bench.redis_url,
                            "--worker-class",
                            worker_class,
                            RAW_QUEUE,
                        ],
                    )
                )
        wait_until(
            lambda: len([w for w in Worker.all(connection=redis) if w.name not in before]) >= procs,
            60,
            0.1,
            "workers to register",
        )
        time.sleep(1.0)  # every worker on its blocking dequeue
        ids = [f"bench-{kind}-{procs}-{i:06d}-{time.time_ns() % 10**9}" for i in range(n)]
        if kind == "project":
            _create_rows(bench, ids)
            settings = _settings(bench)
            data = [
                Queue.prepare_data(
                    "bench.bench_jobs.tracked_noop",
                    job_id=job_id,
                    retry=Retry(max=settings.job_max_retries, interval=settings.job_retry_delay),
                    timeout=settings.job_timeout,
                    result_ttl=settings.result_ttl,
                    failure_ttl=max(settings.result_ttl, 24 * 3600),
                    description="bench (manual)",
                    meta={"job_name": "bench", "trigger": "manual"},
                )
                for job_id in ids
            ]
        else:
            data = [Queue.prepare_data("bench.noop_job.noop", job_id=job_id) for job_id in ids]
        with redis.pipeline() as pipe:  # MULTI/EXEC: all N arrive at once
            for start in range(0, n, 1000):
                queue.enqueue_many(data[start : start + 1000], pipeline=pipe)
            pipe.execute()
        began = time.monotonic()
        wait_until(
            lambda: (
                queue.finished_job_registry.count + queue.failed_job_registry.count >= n
                or not all(p.alive() for p in started)
            ),
            timeout,
            0.2,
            f"{n} {kind} jobs",
        )
        wall = time.monotonic() - began
        with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(f"rq:job:{job_id}", "ended_at")
            ends = [_ts(v) for v in pipe.execute()]
        done = [e for e in ends if e is not None]
        failed = queue.failed_job_registry.count
        rate, span = _rate(done)
        out = {"jobs": n, "done": len(done), "failed": failed, "rate": rate, "span_s": span, "wall_s": wall}
        if kind == "project":
            conn = bench.pg()
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT status, count(*) FROM job_runs WHERE job_name = 'bench' AND id = ANY(%s) GROUP BY status",
                    (ids,),
                )
                out["rows"] = dict(cur.fetchall())
                cur.execute("DELETE FROM job_runs WHERE job_name = 'bench'")
            conn.close()
        return out
    finally:
        for proc in started:
            bench.stop(proc)
        _drop_queue(redis, queue)


def _settings(bench: Bench):
    from app.config import Settings

    return Settings(_env_file=None, redis_url=bench.redis_url, database_url=bench.database_url)


def _create_rows(bench: Bench, ids: list[str]) -> None:
    """The `job_runs` rows a trigger writes before enqueueing (status queued)."""
    from psycopg2.extras import execute_values

    conn = bench.pg()
    with conn.cursor() as cur:
        execute_values(
            cur,
            "INSERT INTO job_runs (id, job_name, queue, trigger, status, enqueued_at, attempts) VALUES %s",
            [(i, "bench", "default", "manual", "queued") for i in ids],
            template="(%s, %s, %s, %s, %s, now() at time zone 'utc', 0)",
            page_size=1000,
        )
    conn.close()


def _drop_queue(redis, queue) -> None:
    """Forget the variant's jobs so the next one starts from a clean Redis."""
    keys = [queue.key, queue.finished_job_registry.key, queue.failed_job_registry.key, queue.started_job_registry.key]
    cursor = 0
    for _ in range(10000):
        cursor, found = redis.scan(cursor, match="rq:job:bench-*", count=5000)
        if found:
            redis.unlink(*found)
        if cursor == 0:
            break
    for _ in range(10000):  # RQ 2 keeps per-job execution records and results
        cursor, found = redis.scan(cursor, match="rq:*:bench-*", count=5000)
        if found:
            redis.unlink(*found)
        if cursor == 0:
            break
    redis.unlink(*keys)


def _celery_variant(bench: Bench, procs: int, n: int, timeout: float) -> dict:
    import os

    celery_redis = bench.redis_client(db=1)
    celery_redis.flushdb()
    os.environ["BENCH_CELERY_URL"] = f"redis://127.0.0.1:{bench.redis.port}/1"
    from bench.celery_app import noop

    ids = [noop.apply_async().id for _ in range(n)]  # published before the worker starts
    keys = [f"celery-task-meta-{i}" for i in ids]
    proc = bench.start(
        "celery",
        [
            str(BIN / "celery"),
            "-A",
            "bench.celery_app",
            "worker",
            "-c",
            str(procs),
            "-P",
            "prefork",
            "--loglevel",
            "INFO",
            "-n",
            f"bench{procs}@%h",
        ],
        bench.env(BENCH_CELERY_URL=os.environ["BENCH_CELERY_URL"]),
    )
    try:
        began = time.monotonic()

        def drained():
            if not proc.alive():
                raise RuntimeError(f"celery worker exited:\n{proc.tail()}")
            return celery_redis.exists(*keys) >= n

        wait_until(drained, timeout, 0.2, f"{n} celery tasks")
        wall = time.monotonic() - began
        metas = celery_redis.mget(keys)
        done, failed = [], 0
        for raw in metas:
            meta = json.loads(raw)
            if meta.get("status") != "SUCCESS":
                failed += 1
            done.append(datetime.fromisoformat(meta["date_done"]).timestamp())
        rate, span = _rate(done)
        return {"jobs": n, "done": len(done), "failed": failed, "rate": rate, "span_s": span, "wall_s": wall}
    finally:
        bench.stop(proc)
        celery_redis.flushdb()


def throughput(bench: Bench, n: int, rounds: int, log=print, variants=VARIANTS) -> dict:
    results = {f"{kind}:{procs}": [] for kind, procs in variants}
    timeout = max(120.0, n / 5)
    for round_no in range(rounds):
        for kind, procs in variants:
            if kind == "celery":
                out = _celery_variant(bench, procs, n, timeout)
            else:
                out = _rq_variant(bench, kind, procs, n, timeout)
            results[f"{kind}:{procs}"].append(out)
            log(
                f"  jobs round {round_no + 1} {kind} x{procs}: {out['rate']:.0f} jobs/s "
                f"({out['done']}/{n} done, {out['failed']} failed{', rows ' + str(out['rows']) if 'rows' in out else ''})"
            )
            sys.stdout.flush()
    return results
