"""`make bench`: the service's real processes on Redis and PostgreSQL, measured; one table.

    .venv/bin/python bench/run.py            # full: 1M rows, 5,000 jobs, 60+ slots, 5M expired alerts
    .venv/bin/python bench/run.py --quick    # smoke run, a few minutes
    .venv/bin/python bench/run.py --only api,jobs --api-rounds 5

Starts its own Redis and PostgreSQL (tests/servers.py) on free loopback ports, runs the
release migrations, then the Procfile's processes with settings from the environment:
gunicorn (gunicorn.conf.py, bound to 127.0.0.1), `python -m workers`, `python scheduler.py`.
Sections, in order: memory (idle), latency (trigger -> start), jobs (throughput against raw RQ
and Celery), scheduler (firing lag), api (wrk, 1M rows, against a bare Flask route), cleanup
(5M expired alerts while a writer inserts). Results are also written as JSON and text to
var/bench/. Figures on a shared machine are noisy: compare the ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ENV_FILE", "/dev/null")  # the benchmark's settings only, never a developer's .env

from bench import api, cleanup, jobpath, memory, sched  # noqa: E402
from bench.stack import Bench, http, median  # noqa: E402

SECTIONS = ("memory", "latency", "jobs", "scheduler", "api", "cleanup")
FULL = dict(
    rows=1_000_000,
    api_seconds=10,
    api_rounds=3,
    latency_runs=500,
    accept_runs=200,
    jobs=5000,
    job_rounds=2,
    slots=60,
    expired=5_000_000,
    sightings=1,
)
QUICK = dict(
    rows=50_000,
    api_seconds=2,
    api_rounds=1,
    latency_runs=50,
    accept_runs=20,
    jobs=300,
    job_rounds=1,
    slots=5,
    expired=200_000,
    sightings=1,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK") == "1",
        help="smaller sizes: a smoke run of a few minutes",
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {','.join(SECTIONS)}")
    for key, value in FULL.items():
        parser.add_argument(
            f"--{key.replace('_', '-')}",
            type=type(value),
            default=None,
            help=f"default {value:,} (quick: {QUICK[key]:,})",
        )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a service setting for every process (e.g. --env CLEANUP_BATCH_SIZE=20000)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (deleted after a clean run)")
    parser.add_argument("--out", default=str(ROOT / "var" / "bench"), help="folder for the JSON and text results")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    return args


# -- the table ---------------------------------------------------------------------------------
def _ok(flag):
    return "-" if flag is None else ("yes" if flag else "NO")


def _ms(value):
    return "-" if value is None else (f"{value:,.0f}" if value >= 100 else f"{value:.1f}")


def build_rows(results: dict, args) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    mem = results.get("memory")
    if mem:
        stack, cel = mem["stack"], mem.get("celery")
        ratio = stack["rss_mib"] / cel["rss_mib"] if cel else None
        rows.append(
            (
                "memory",
                f"idle stack: web (gunicorn, 2 workers) + worker + scheduler, {stack['processes']} procs",
                f"RSS {stack['rss_mib']:.0f} MiB (PSS {stack['pss_mib']:.0f})",
                f"{ratio:.2f}x Celery" if ratio else "-",
                "<= 0.5x Celery",
                _ok(ratio <= 0.5 if ratio else None),
            )
        )
        if cel:
            rows.append(
                (
                    "memory",
                    f"idle Celery worker -c 2 + beat + Flower, {cel['processes']} procs",
                    f"RSS {cel['rss_mib']:.0f} MiB (PSS {cel['pss_mib']:.0f})",
                    "reference",
                    "",
                    "",
                )
            )
    lat = results.get("latency")
    if lat:
        rows.append(
            (
                "job path",
                f"trigger -> start, {lat['runs']} runs, idle worker (job_runs rows)",
                f"p50 {_ms(lat['row_p50_ms'])} / p99 {_ms(lat['row_p99_ms'])} ms",
                f"RQ started_at: p50 {_ms(lat['rq_p50_ms'])} / p99 {_ms(lat['rq_p99_ms'])} ms",
                "p99 <= 25 ms",
                _ok(lat["row_p99_ms"] <= 25),
            )
        )
    jobs = results.get("jobs")
    if jobs:
        med = {key: median([r["rate"] for r in runs]) for key, runs in jobs.items()}
        celery2 = jobs.get("celery:2")
        for key, runs in jobs.items():
            kind, procs = key.split(":")
            ratios = [r["rate"] / c["rate"] for r, c in zip(runs, celery2)] if celery2 else []
            ratio = median(ratios)
            is_target = key == "project:2"
            rows_info = ""
            if kind == "project":
                finished = sum(r.get("rows", {}).get("finished", 0) for r in runs)
                rows_info = f", history rows finished: {finished:,}/{sum(r['jobs'] for r in runs):,} (all rounds)"
            failed = sum(r["failed"] for r in runs)
            rows.append(
                (
                    "job path",
                    f"{args.jobs:,} short jobs: {jobpath.LABELS[kind]}, {procs} proc"
                    + ("s" if procs != "1" else "")
                    + rows_info
                    + (f", {failed} FAILED" if failed else ""),
                    f"{med[key]:,.0f} jobs/s",
                    f"{ratio:.2f}x Celery -c 2" if ratio else "-",
                    ">= 1.0x Celery -c 2" if is_target else "",
                    _ok(ratio >= 1.0) if is_target and ratio else "",
                )
            )
    for out in results.get("scheduler", []):
        rows.append(
            (
                "scheduler",
                f"firing lag, */2 s cron, SCHEDULER_INTERVAL={out['interval']:g}: "
                f"{out['fired']} slots fired, {out['missed']} missed",
                f"p50 {_ms(out['p50_ms'])} / p99 {_ms(out['p99_ms'])} ms",
                f"max {_ms(out['max_ms'])} ms",
                "p99 <= 2 s",
                _ok(out["p99_ms"] is not None and out["p99_ms"] <= 2000 and not out["missed"]),
            )
        )
    apis = results.get("api")
    if apis:
        labels = apis["labels"]
        for conns in (16, 64):
            bare = apis["bare"][conns]
            rows.append(
                (
                    f"API c={conns}",
                    "bare Flask + gunicorn (same worker model), one Redis GET",
                    f"{bare['rps']:,.0f} req/s, p50 {_ms(bare['p50_ms'])} / p99 {_ms(bare['p99_ms'])} ms",
                    "reference",
                    "",
                    "",
                )
            )
            for key, label in labels.items():
                got = apis[key][conns]
                targeted = conns == 16 and key.split("_")[0] in ("status", "history", "alerts")
                # Issue 13's target, in the same run as the bare route: >= 0.5x its req/s, p99 <= 1.5x its p99.
                holds = got["ratio_to_bare"] >= 0.5 and got["p99_ratio_to_bare"] <= 1.5 if targeted else None
                extra = ""
                if key == "trigger":
                    extra = f" [{got['s202']:,} x 202, {got['s409']:,} x 409]"
                if "commits_per_s" in got:
                    extra = f" [{got['commits_per_s']:,.0f} commits/s]"
                if got["non_2xx_409"] or got["socket_errors"]:
                    extra += f" [{got['non_2xx_409']} other status, {got['socket_errors']} socket errors]"
                rows.append(
                    (
                        f"API c={conns}",
                        label + extra,
                        f"{got['rps']:,.0f} req/s, p50 {_ms(got['p50_ms'])} / p99 {_ms(got['p99_ms'])} ms",
                        f"{got['ratio_to_bare']:.2f}x bare req/s, p99 {got['p99_ratio_to_bare']:.2f}x bare p99",
                        ">= 0.5x bare req/s, p99 <= 1.5x bare p99" if targeted else "",
                        _ok(holds) if targeted else "",
                    )
                )
        acc = results.get("accept")
        if acc:
            rows.append(
                (
                    "API",
                    f"trigger, plain accept 202, sequential (1 client), {acc['runs']} runs",
                    f"p50 {_ms(acc['http_p50_ms'])} / p99 {_ms(acc['http_p99_ms'])} ms",
                    f"then trigger -> start p99 {_ms(acc['row_p99_ms'])} ms",
                    "",
                    "",
                )
            )
    cl = results.get("cleanup")
    if cl:
        rows.append(
            (
                "cleanup",
                f"delete {cl['deleted']:,} expired alerts and their {cl['deleted_sightings']:,} sightings "
                "(cleanup run) while a writer inserts",
                f"{cl['rows_per_s']:,.0f} rows/s ({cl['seconds']:.1f} s)",
                f"{cl['alerts_per_s']:,.0f} alerts/s",
                ">= 200,000 rows/s",
                _ok(cl["rows_per_s"] >= 200_000),
            )
        )
        rows.append(
            (
                "cleanup",
                f"writer: {cl['writer_inserts']:,} single-row inserts during the run",
                f"longest wait {_ms(cl['writer_max_ms'])} ms (p99 {_ms(cl['writer_p99_ms'])})",
                f"p50 {_ms(cl['writer_p50_ms'])} ms (before: {_ms(cl['writer_before_p50_ms'])})",
                "<= 200 ms",
                _ok(cl["writer_max_ms"] is not None and cl["writer_max_ms"] <= 200),
            )
        )
    return rows


def render(rows) -> str:
    header = ("area", "measurement", "result", "beside (same run)", "target", "holds")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(6)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


# -- the run -----------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    if "api" in args.sections and shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk (make bench installs it)", file=sys.stderr)
        return 2
    started = time.time()
    bench = Bench(extra_env=dict(item.split("=", 1) for item in args.env))
    results: dict = {
        "config": {k: getattr(args, k) for k in FULL}
        | {"quick": args.quick, "sections": args.sections, "env": bench.extra_env}
    }
    log(f"bench {'quick' if args.quick else 'full'} run: {', '.join(args.sections)}; logs in {bench.workdir}")
    failed = False
    try:
        bench.start_servers()
        bench.migrate()
        web = bench.start_web()
        worker = bench.start_worker()
        scheduler = bench.start_scheduler()
        base = f"http://127.0.0.1:{bench.web_port}"
        log(f"stack up: redis :{bench.redis.port}, postgres :{bench.postgres.port}, web {base}")

        if "memory" in args.sections:
            for path in ("/healthz", "/api/jobs/stats", "/api/alerts", "/api/jobs/forecast/history") * 4:
                http("GET", base + path, token=None)
            time.sleep(3)
            results["memory"] = {"stack": memory.sample([web.pid, worker.pid, scheduler.pid])}
            log(f"idle stack RSS {results['memory']['stack']['rss_mib']:.0f} MiB")
            results["memory"]["celery"] = memory.celery_idle(bench)
            log(f"idle Celery worker -c 2 + beat + Flower RSS {results['memory']['celery']['rss_mib']:.0f} MiB")

        if "latency" in args.sections:
            log(f"latency: {args.latency_runs} sequential triggers")
            jobpath.sequential_triggers(bench, 5)  # warm-up
            results["latency"] = jobpath.latency(bench, args.latency_runs, log)

        if "jobs" in args.sections:
            log(f"jobs: {args.jobs:,} jobs per variant, {args.job_rounds} round(s)")
            bench.stop(worker)
            try:
                results["jobs"] = jobpath.throughput(bench, args.jobs, args.job_rounds, log)
            finally:
                worker = bench.start_worker()

        if "scheduler" in args.sections:
            log(f"scheduler: {args.slots}+ slots per interval")
            bench.stop(scheduler)
            try:
                results["scheduler"] = [sched.lag(bench, interval, args.slots, log) for interval in (5, 1)]
            finally:
                scheduler = bench.start_scheduler()

        if "api" in args.sections or "cleanup" in args.sections:
            log(f"loading {args.rows:,} job_runs rows and {args.rows:,} alerts (COPY)")
            loaded = api.load(bench, args.rows, log)
            results["loaded_rows"] = args.rows

        if "api" in args.sections:
            log(f"api: {args.api_rounds} round(s) of {args.api_seconds}s wrk runs at 16 and 64 connections")
            results["api"] = api.run(bench, loaded, rounds=args.api_rounds, seconds=args.api_seconds, log=log)
            log(f"api: {args.accept_runs} sequential plain accepts")
            api.settle(base)  # gunicorn has answered the requests wrk left in its backlog
            results["accept"] = jobpath.latency(bench, args.accept_runs, log)

        if "cleanup" in args.sections:
            log(f"cleanup: {args.expired:,} expired alerts, {args.sightings} sighting(s) each")
            results["cleanup"] = cleanup.run(bench, args.expired, log, sightings=args.sightings)
    except Exception:
        failed = True
        traceback.print_exc()
        for proc in bench.procs:
            if not proc.alive():
                print(f"--- {proc.name} exited {proc.popen.returncode}:\n{proc.tail()}", file=sys.stderr)
    finally:
        bench.shutdown()
        if failed or args.keep_logs:
            log(f"process logs kept in {bench.workdir}")
        else:
            shutil.rmtree(bench.workdir, ignore_errors=True)

    rows = build_rows(results, args)
    table = render(rows) if rows else "(no results)"
    machine = (
        f"{platform.node()}: {os.cpu_count()} cores, {_mem_gib():.0f} GiB, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    print()
    print(
        f"forecast service benchmark ({'quick' if args.quick else 'full'}"
        f"{''.join(f'; {k}={v}' for k, v in bench.extra_env.items())}; medians of {args.api_rounds} API "
        f"round(s) and {args.job_rounds} job round(s); {time.time() - started:.0f}s) - {machine}"
    )
    print(table)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results["machine"] = machine
    (out_dir / f"bench-{stamp}.json").write_text(json.dumps(results, indent=1, default=str))
    (out_dir / f"bench-{stamp}.txt").write_text(table + "\n")
    print(f"\nresults: {out_dir / f'bench-{stamp}.json'}")
    return 1 if failed else 0


def _mem_gib() -> float:
    try:
        import psutil

        return psutil.virtual_memory().total / 2**30
    except Exception:
        return 0.0


if __name__ == "__main__":
    sys.exit(main())
