"""Resident memory of the idle stack beside an idle Celery worker (-c 2) + beat + Flower.

RSS is summed over every process and its children (psutil), as a process manager would see
it; PSS (shared pages split between the processes sharing them) is given beside it, since
forked children (gunicorn workers, pool children) share much of their parent's memory.
"""

from __future__ import annotations

import os
import time

from bench.stack import BIN, Bench, free_port, median, tree_memory, wait_http

MIB = 1024 * 1024


def sample(pids: list[int], samples: int = 3, every: float = 2.0) -> dict:
    got = []
    for i in range(samples):
        if i:
            time.sleep(every)
        got.append(tree_memory(pids))
    return {
        "rss_mib": median([g["rss"] for g in got]) / MIB,
        "pss_mib": median([g["pss"] for g in got]) / MIB,
        "processes": got[-1]["processes"],
    }


def celery_idle(bench: Bench, settle: float = 8.0, log=print) -> dict:
    url = f"redis://127.0.0.1:{bench.redis.port}/1"
    os.environ["BENCH_CELERY_URL"] = url
    env = bench.env(BENCH_CELERY_URL=url)
    celery = str(BIN / "celery")
    flower_port = free_port()
    procs = [
        bench.start(
            "celery-worker",
            [
                celery,
                "-A",
                "bench.celery_app",
                "worker",
                "-c",
                "2",
                "-P",
                "prefork",
                "--loglevel",
                "INFO",
                "-n",
                "idle@%h",
            ],
            env,
        ),
        bench.start(
            "celery-beat",
            [
                celery,
                "-A",
                "bench.celery_app",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(bench.workdir / "celerybeat-schedule"),
                "--pidfile",
                str(bench.workdir / "celerybeat.pid"),
            ],
            env,
        ),
        bench.start(
            "flower",
            [
                celery,
                "-A",
                "bench.celery_app",
                "flower",
                "--address=127.0.0.1",
                f"--port={flower_port}",
                "--db=" + str(bench.workdir / "flower.db"),
            ],
            env,
        ),
    ]
    try:
        wait_http(f"http://127.0.0.1:{flower_port}/healthcheck", procs[2])
        time.sleep(settle)
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        out = sample([p.pid for p in procs])
        out["parts"] = {p.name: tree_memory([p.pid])["rss"] / MIB for p in procs}
        return out
    finally:
        for proc in procs:
            bench.stop(proc)
        bench.redis_client(db=1).flushdb()
