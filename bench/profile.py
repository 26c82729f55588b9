"""Where the time goes: py-spy samples of the service's processes under a bench load.

    .venv/bin/python bench/profile.py api /api/alerts?severity=high     # gunicorn workers under wrk
    .venv/bin/python bench/profile.py api status '/api/alerts?severity=high&cursor={alerts_cursor}'  # several
    .venv/bin/python bench/profile.py worker --jobs 2000                 # a worker draining tracked jobs
    .venv/bin/python bench/profile.py api /api/jobs/stats --rows 1000000 --seconds 20
    .venv/bin/python bench/profile.py timeline --jobs 500             # per-job segments, no sampler
    .venv/bin/python bench/profile.py redis-ops --jobs 1000           # Redis commands per job, RQ vs Celery
    .venv/bin/python bench/profile.py cleanup --expired 3000000       # the cleanup's statements, timed apart
    .venv/bin/python bench/profile.py explain --rows 1000000          # EXPLAIN ANALYZE of the API's queries

Starts its own Redis and PostgreSQL and the Procfile's processes as bench/run.py does, loads
`--rows` history rows and alerts (api), then samples with `py-spy record --format raw`
(including subprocesses: gunicorn's workers, a worker's work-horses) and prints the
functions with the largest inclusive and self share of the samples. `--idle` also counts
samples where the process waits (socket reads, sleeps).
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import api, jobpath  # noqa: E402
from bench.stack import BIN, Bench, wait_until  # noqa: E402

_LINE = re.compile(r":\d+\)$")


def summarize(raw: Path, top: int = 25, focus: str | None = None) -> str:
    inclusive: collections.Counter = collections.Counter()
    self_: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        if focus and not any(focus in f for f in frames):
            continue
        total += n
        for frame in set(frames[1:]):  # the first frame is the process
            inclusive[frame] += n
        self_[frames[-1]] += n
    out = [f"{total} samples" + (f" with {focus!r} on the stack" if focus else "")]
    out.append("inclusive:")
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    out.append("self:")
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in self_.most_common(top)]
    return "\n".join(out)


def record(pid: int, seconds: float, out: Path, idle: bool, rate: int = 200) -> subprocess.Popen:
    argv = [
        str(BIN / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--subprocesses",
        "--nonblocking",
    ]
    if idle:
        argv.append("--idle")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def profile_api(bench: Bench, args) -> list[tuple[str, Path]]:
    loaded = api.load(bench, args.rows, print)
    cursors = loaded["cursors"]
    web = bench.start_web()
    bench.start_worker()
    out = []
    for n, path in enumerate(args.paths):
        path = path.replace("{history_cursor}", cursors["history"]).replace("{alerts_cursor}", cursors["alerts"])
        script = api.write_script(
            bench.workdir,
            f"profile{n}",
            "status" if path == "status" else "get",
            "/api/jobs/forecast/" if path == "status" else path,
            loaded["ids_file"],
        )
        api.run_wrk(f"http://127.0.0.1:{bench.web_port}", script, args.connections, 2)  # warm-up
        raw = bench.workdir / f"api{n}.raw"
        spy = record(web.pid, args.seconds, raw, args.idle)
        time.sleep(1)
        result = api.run_wrk(f"http://127.0.0.1:{bench.web_port}", script, args.connections, args.seconds - 2)
        spy.wait(args.seconds + 60)
        print(
            f"{path[:80]}: wrk {result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, p99 "
            f"{result['p99_ms']:.1f} ms, codes 200={result['s200']} other={result['sother']}"
        )
        out.append((path, raw))
    return out


def profile_worker(bench: Bench, args) -> Path:
    from rq import Queue, Worker

    redis = bench.redis_client()
    worker = bench.start_worker()
    ids = [f"bench-profile-{i:06d}" for i in range(args.jobs)]
    jobpath._create_rows(bench, ids)
    queue = Queue("default", connection=redis)
    raw = bench.workdir / "worker.raw"
    spy = record(worker.pid, args.seconds, raw, args.idle)
    time.sleep(1)
    with redis.pipeline() as pipe:
        queue.enqueue_many(
            [
                Queue.prepare_data(
                    "bench.bench_jobs.tracked_noop",
                    job_id=i,
                    result_ttl=3600,
                    meta={"job_name": "bench", "trigger": "manual"},
                )
                for i in ids
            ],
            pipeline=pipe,
        )
        pipe.execute()
    began = time.monotonic()
    wait_until(
        lambda: queue.finished_job_registry.count >= args.jobs or spy.poll() is not None,
        args.seconds + 120,
        0.2,
        "the jobs",
    )
    print(
        f"{queue.finished_job_registry.count} jobs in {time.monotonic() - began:.1f}s "
        f"({Worker.count(connection=redis)} worker)"
    )
    spy.wait(args.seconds + 60)
    return raw


def timeline(bench: Bench, args) -> None:
    """Per-job segments of a drained queue, from RQ's and the history rows' own timestamps."""
    from rq import Queue, Worker

    from bench.stack import median

    redis = bench.redis_client()
    for kind in args.kinds.split(","):
        queue = Queue("default" if kind == "project" else jobpath.RAW_QUEUE, connection=redis)
        if kind == "project":
            proc = bench.start_worker()
        else:
            cls = {"rq-fork": "rq.worker.Worker", "rq-simple": "rq.worker.SimpleWorker"}[kind]
            proc = bench.start(
                "rq-worker",
                [str(BIN / "rq"), "worker", "--url", bench.redis_url, "--worker-class", cls, jobpath.RAW_QUEUE],
            )
            wait_until(lambda: Worker.count(connection=redis) >= 1, 60, 0.1, "the worker")
            time.sleep(1)
        ids = [f"bench-tl-{kind}-{i:06d}" for i in range(args.jobs)]
        func = "bench.bench_jobs.tracked_noop" if kind == "project" else "bench.noop_job.noop"
        if kind == "project":
            jobpath._create_rows(bench, ids)
        with redis.pipeline() as pipe:
            queue.enqueue_many(
                [
                    Queue.prepare_data(func, job_id=i, result_ttl=3600, meta={"job_name": "bench", "trigger": "manual"})
                    for i in ids
                ],
                pipeline=pipe,
            )
            pipe.execute()
        wait_until(lambda: queue.finished_job_registry.count >= args.jobs, args.jobs / 2 + 60, 0.2, "the jobs")
        bench.stop(proc)
        with redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hmget(f"rq:job:{i}", "started_at", "ended_at")
            rq_times = [(jobpath._ts(a), jobpath._ts(b)) for a, b in pipe.execute()]
        rows = {}
        if kind == "project":
            conn = bench.pg()
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT id, EXTRACT(EPOCH FROM started_at AT TIME ZONE 'UTC'), "
                    "EXTRACT(EPOCH FROM ended_at AT TIME ZONE 'UTC') FROM job_runs WHERE id = ANY(%s)",
                    (ids,),
                )
                rows = {i: (float(a), float(b)) for i, a, b in cur.fetchall()}
                cur.execute("DELETE FROM job_runs WHERE job_name = 'bench'")
            conn.close()
        order = sorted(range(len(ids)), key=lambda k: rq_times[k][0])
        seg = collections.defaultdict(list)
        for pos, k in enumerate(order):
            start, end = rq_times[k]
            if pos + 1 < len(order):
                seg["after: RQ ended_at -> next job's RQ started_at (horse exit, wait, bookkeeping, dequeue)"].append(
                    rq_times[order[pos + 1]][0] - end
                )
            if kind == "project":
                r_start, r_end = rows[ids[k]]
                seg["a: RQ started_at (worker, before fork) -> row started_at (horse: fork, connect, UPDATE)"].append(
                    r_start - start
                )
                seg["b: row started_at -> row ended_at (body, mark_ended UPDATE)"].append(r_end - r_start)
                seg["c: row ended_at -> RQ ended_at (release_slot, RQ success bookkeeping)"].append(end - r_end)
            else:
                seg["RQ started_at -> ended_at (fork if any, perform, success bookkeeping)"].append(end - start)
        total = (rq_times[order[-1]][1] - rq_times[order[0]][0]) / len(ids)
        print(f"{kind}: {len(ids)} jobs, {1 / total:.0f} jobs/s, {total * 1000:.1f} ms per job; medians:")
        for name, values in seg.items():
            print(f"  {median(values) * 1000:7.2f} ms  {name}")
        jobpath._drop_queue(redis, queue)


def redis_ops(bench: Bench, args) -> None:
    """Redis commands per job (INFO commandstats over a drained batch) for each worker kind."""
    import os

    from rq import Queue, Worker

    redis = bench.redis_client()
    for kind in args.kinds.split(","):
        ids = [f"bench-ops-{kind}-{i:06d}" for i in range(args.jobs)]
        if kind == "celery":
            url = f"redis://127.0.0.1:{bench.redis.port}/1"
            os.environ["BENCH_CELERY_URL"] = url
            from bench.celery_app import noop

            redis.config_resetstat()
            task_ids = [noop.apply_async().id for _ in ids]
            proc = bench.start(
                "celery",
                [
                    str(BIN / "celery"),
                    "-A",
                    "bench.celery_app",
                    "worker",
                    "-c",
                    "1",
                    "-P",
                    "prefork",
                    "--loglevel",
                    "INFO",
                ],
                bench.env(BENCH_CELERY_URL=url),
            )
            r1 = bench.redis_client(db=1)
            keys = [f"celery-task-meta-{t}" for t in task_ids]
            wait_until(lambda: r1.exists(*keys) >= len(keys), args.jobs / 2 + 60, 0.2, "celery tasks")
            stats = redis.info("commandstats")
            bench.stop(proc)
            r1.flushdb()
            idle_s = 0
        else:
            queue = Queue("default" if kind == "project" else jobpath.RAW_QUEUE, connection=redis)
            if kind == "project":
                proc = bench.start_worker()
                jobpath._create_rows(bench, ids)
                func = "bench.bench_jobs.tracked_noop"
            else:
                cls = {"rq-fork": "rq.worker.Worker", "rq-simple": "rq.worker.SimpleWorker"}[kind]
                proc = bench.start(
                    "rq-worker",
                    [str(BIN / "rq"), "worker", "--url", bench.redis_url, "--worker-class", cls, jobpath.RAW_QUEUE],
                )
                wait_until(lambda: Worker.count(connection=redis) >= 1, 60, 0.1, "the worker")
                func = "bench.noop_job.noop"
            time.sleep(2)
            data = [Queue.prepare_data(func, job_id=i, meta={"job_name": "bench", "trigger": "manual"}) for i in ids]
            began = time.monotonic()
            redis.config_resetstat()
            with redis.pipeline() as pipe:
                queue.enqueue_many(data, pipeline=pipe)
                pipe.execute()
            wait_until(lambda: queue.finished_job_registry.count >= args.jobs, args.jobs / 2 + 60, 0.2, "the jobs")
            stats = redis.info("commandstats")
            idle_s = time.monotonic() - began
            bench.stop(proc)
            jobpath._drop_queue(redis, queue)
        calls = {name.replace("cmdstat_", ""): v["calls"] for name, v in stats.items()}
        calls.pop("info", None)
        calls.pop("config|resetstat", None)
        total = sum(calls.values())
        top = ", ".join(f"{k} {v / args.jobs:.1f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:12])
        print(f"{kind}: {total / args.jobs:.1f} Redis commands per job (incl. enqueue; {idle_s:.0f}s) - {top}")


def cleanup_sql(bench: Bench, args) -> None:
    """The cleanup job's batch statements timed apart, and alternatives on the same table.

    Loads --expired alerts past the retention (and --rows recent ones), then deletes
    --per-method rows with each method in turn, timing every statement (no writer).
    """
    from datetime import timedelta

    from app.models import utcnow
    from bench import data

    conn = bench.pg(autocommit=False)
    data.load_alerts(conn, args.rows, *data.recent_window())
    data.load_alerts(conn, args.expired, *data.expired_window(), seed=11)
    conn.autocommit = True
    cutoff = utcnow() - timedelta(days=90)
    cur = conn.cursor()
    batch = args.batch

    def job_batches(limit_rows):  # app.core.maintenance.delete_in_batches, statement for statement
        sel = dele = 0.0
        done = 0
        while done < limit_rows:
            conn.autocommit = False
            t = time.perf_counter()
            cur.execute("SELECT id FROM alerts WHERE created_at < %s LIMIT %s", (cutoff, batch))
            ids = [r[0] for r in cur.fetchall()]
            sel += time.perf_counter() - t
            if not ids:
                conn.commit()
                break
            t = time.perf_counter()
            cur.execute("DELETE FROM alerts WHERE id IN %s", (tuple(ids),))
            done += cur.rowcount
            conn.commit()
            dele += time.perf_counter() - t
        conn.autocommit = True
        return done, sel, dele

    def one_statement(limit_rows, size):  # the id list never leaves the server; oldest first
        done, took = 0, 0.0
        while done < limit_rows:
            t = time.perf_counter()
            cur.execute(
                "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE created_at < %s "
                "ORDER BY created_at LIMIT %s)",
                (cutoff, size),
            )
            took += time.perf_counter() - t
            if not cur.rowcount:
                break
            done += cur.rowcount
        return done, took

    if args.real:  # the job's own function, through peewee, each statement timed
        from app.config import Settings
        from app.connections import bind_database, database, db_session
        from app.core.maintenance import delete_in_batches as _delete_in_batches
        from app.models import Alert

        bind_database(Settings(_env_file=None, redis_url=bench.redis_url, database_url=bench.database_url))
        timings = []
        real_execute = database.obj.execute_sql

        def timed(sql, params=None, *a, **kw):
            t = time.perf_counter()
            try:
                return real_execute(sql, params, *a, **kw)
            finally:
                timings.append((sql.split()[0], time.perf_counter() - t))

        database.obj.execute_sql = timed
        began = time.perf_counter()
        with db_session():
            deleted = _delete_in_batches(Alert, Alert.created_at < cutoff, batch)
        took = time.perf_counter() - began
        sql_total = sum(t for _, t in timings)
        print(
            f"app.core.maintenance.delete_in_batches: {deleted:,} rows in {took:.1f}s = {deleted / took:,.0f} rows/s; "
            f"SQL {sql_total:.1f}s, Python (peewee, lists) {took - sql_total:.1f}s"
        )
        for verb in ("SELECT", "DELETE", "COMMIT", "BEGIN"):
            ts = [t for v, t in timings if v.upper() == verb]
            if ts:
                tenth = max(1, len(ts) // 10)
                print(
                    f"  {verb}: {len(ts)} statements, {sum(ts):.1f}s; mean first 10% {1000 * sum(ts[:tenth]) / tenth:.1f} ms"
                    f", last 10% {1000 * sum(ts[-tenth:]) / tenth:.1f} ms"
                )
        return
    if args.one_statement:  # the proposal alone, on the whole expired set
        done, took = one_statement(args.expired, batch)
        print(f"one statement, oldest first ({batch}/batch): {done:,} rows in {took:.1f}s = {done / took:,.0f} rows/s")
        return
    cur.execute("EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM alerts WHERE created_at < %s LIMIT %s", (cutoff, batch))
    print("first batch's SELECT:\n  " + "\n  ".join(r[0] for r in cur.fetchall()))
    done, sel, dele = job_batches(args.per_method)
    print(
        f"job's batches ({batch}/batch, ids to the client and back): {done:,} rows in {sel + dele:.1f}s = "
        f"{done / (sel + dele):,.0f} rows/s; SELECT {sel:.1f}s, DELETE {dele:.1f}s"
    )
    cur.execute("EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM alerts WHERE created_at < %s LIMIT %s", (cutoff, batch))
    print(f"SELECT after {done:,} deleted:\n  " + "\n  ".join(r[0] for r in cur.fetchall()))
    for size in (batch, batch * 10):
        done, took = one_statement(args.per_method, size)
        print(f"one statement, oldest first ({size}/batch): {done:,} rows in {took:.1f}s = {done / took:,.0f} rows/s")


def explain(bench: Bench, args) -> None:
    """EXPLAIN ANALYZE of the API's queries as peewee builds them (with 1M rows), and alternatives."""
    from app.config import Settings
    from app.connections import bind_database
    from app.core.pagination import decode_cursor
    from app.models import Alert, JobRun, utcnow

    loaded = api.load(bench, args.rows, print)
    bind_database(Settings(_env_file=None, redis_url=bench.redis_url, database_url=bench.database_url))
    conn = bench.pg()
    cur = conn.cursor()

    def show(title, query):
        sql, params = query.sql()
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plan = [r[0] for r in cur.fetchall()]
        print(f"-- {title}\n   {cur.mogrify(sql, params).decode()[:400]}")
        print("   " + "\n   ".join(plan))

    def pages(model, base, time_field, id_field, cursor, id_type):
        at, row_id = decode_cursor(cursor, id_type)
        order = (time_field.desc(), id_field.desc())
        show(f"{model.__name__}: first page", base.order_by(*order).limit(51))
        show(
            f"{model.__name__}: deep page as keyset_page builds it (OR)",
            base.where((time_field < at) | ((time_field == at) & (id_field < row_id))).order_by(*order).limit(51),
        )
        show(
            f"{model.__name__}: deep page with a redundant bound on the time column",
            base.where((time_field <= at) & ((time_field < at) | ((time_field == at) & (id_field < row_id))))
            .order_by(*order)
            .limit(51),
        )

    history = JobRun.select().where(
        (JobRun.job_name == "forecast") & (JobRun.status == "finished") & (JobRun.trigger == "scheduled")
    )
    pages(JobRun, history, JobRun.enqueued_at, JobRun.id, loaded["cursors"]["history"], str)
    alerts = Alert.select().where((Alert.severity == "high") & (Alert.source == "scheduled_job"))
    pages(Alert, alerts, Alert.created_at, Alert.id, loaded["cursors"]["alerts"], int)
    from datetime import timedelta

    since = utcnow() - timedelta(hours=24)
    show(
        "stats: run_stats(24) rows",
        JobRun.select(JobRun.job_name, JobRun.status, JobRun.started_at, JobRun.ended_at).where(
            JobRun.enqueued_at >= since
        ),
    )
    import peewee

    show(
        "stats: the same per job (job_name IN ...: the (job_name, enqueued_at, id) index), grouped in SQL",
        JobRun.select(JobRun.job_name, JobRun.status, peewee.fn.COUNT(JobRun.id))
        .where(JobRun.job_name.in_(["forecast", "daily-summary", "cleanup"]) & (JobRun.enqueued_at >= since))
        .group_by(JobRun.job_name, JobRun.status),
    )
    show(
        "stats: last scheduled run of a job (read_schedules)",
        JobRun.select()
        .where((JobRun.job_name == "forecast") & (JobRun.trigger == "scheduled"))
        .order_by(JobRun.enqueued_at.desc())
        .limit(1),
    )
    conn.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p_api = sub.add_parser("api")
    p_api.add_argument("paths", nargs="+", help="GET paths, or 'status' for random run ids")
    p_api.add_argument("--rows", type=int, default=200_000)
    p_api.add_argument("--connections", type=int, default=16)
    p_worker = sub.add_parser("worker")
    p_worker.add_argument("--jobs", type=int, default=1000)
    p_tl = sub.add_parser("timeline")
    p_tl.add_argument("--jobs", type=int, default=500)
    p_tl.add_argument("--kinds", default="project,rq-fork,rq-simple")
    p_ops = sub.add_parser("redis-ops")
    p_ops.add_argument("--jobs", type=int, default=1000)
    p_ops.add_argument("--kinds", default="project,rq-fork,rq-simple,celery")
    p_cl = sub.add_parser("cleanup")
    p_cl.add_argument("--expired", type=int, default=3_000_000)
    p_cl.add_argument("--rows", type=int, default=1_000_000)
    p_cl.add_argument("--per-method", type=int, default=1_000_000)
    p_cl.add_argument("--batch", type=int, default=5000)
    p_cl.add_argument("--one-statement", action="store_true", help="only the server-side DELETE ... IN (SELECT ...)")
    p_cl.add_argument("--real", action="store_true", help="run app.core.maintenance.delete_in_batches itself, timed")
    p_ex = sub.add_parser("explain")
    p_ex.add_argument("--rows", type=int, default=1_000_000)
    for p in (p_api, p_worker):
        p.add_argument("--seconds", type=float, default=15)
        p.add_argument("--idle", action="store_true")
        p.add_argument("--top", type=int, default=30)
        p.add_argument("--focus", default=None, help="only stacks through a frame containing this text")
    args = parser.parse_args(argv)
    bench = Bench()
    try:
        bench.start_servers()
        bench.migrate()
        if args.what == "explain":
            explain(bench, args)
            return 0
        if args.what == "cleanup":
            cleanup_sql(bench, args)
            return 0
        if args.what == "redis-ops":
            redis_ops(bench, args)
            return 0
        if args.what == "timeline":
            timeline(bench, args)
            return 0
        if args.what == "api":
            bench.start_scheduler()
            raws = profile_api(bench, args)
            for path, raw in raws:
                print(f"== {path}")
                print(summarize(raw, args.top, args.focus))
            return 0
        else:
            raw = profile_worker(bench, args)
    finally:
        bench.shutdown()
        if args.what not in ("api", "worker"):  # no samples to keep
            import shutil

            shutil.rmtree(bench.workdir, ignore_errors=True)
    print(summarize(raw, args.top, args.focus))
    print(f"raw samples: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
