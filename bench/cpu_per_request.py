"""CPU time per request of each process (web, bare route, PostgreSQL, Redis) under wrk, 16 clients.

    ROWS=100000 SECS=3 ROUNDS=2 .venv/bin/python bench/cpu_per_request.py     # ONLY=status,history_first

On a shared machine req/s swing with other people's load; the CPU each process spends per
request swings much less, so it shows where a read route stands against the bare route.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ENV_FILE", "/dev/null")

import psutil  # noqa: E402

from bench import api  # noqa: E402
from bench.stack import Bench  # noqa: E402

ROUTES = ("status", "history_first", "history_deep", "alerts_first", "alerts_deep")


def tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def main() -> None:
    rows = int(os.environ.get("ROWS", 100000))
    seconds = float(os.environ.get("SECS", 3))
    rounds = int(os.environ.get("ROUNDS", 2))
    only = set(os.environ.get("ONLY", ",".join(ROUTES)).split(","))
    bench = Bench()
    try:
        bench.start_servers()
        bench.migrate()
        web = bench.start_web()
        base = f"http://127.0.0.1:{bench.web_port}"
        loaded = api.load(bench, rows, print)
        bare_proc, bare_base = api.start_bare(bench)
        groups = {
            "web": lambda: tree(web.pid),
            "bare": lambda: tree(bare_proc.pid),
            "pg": lambda: tree(bench.postgres.proc.pid),
            "redis": lambda: tree(bench.redis.proc.pid),
        }
        plan = [("bare", api.write_script(bench.workdir, "bare", "get", "/"))]
        plan += [(key, script) for key, _, script in api.targets(bench, loaded) if key in only]
        for key, script in plan:  # warm-up
            api.run_wrk(bare_base if key == "bare" else base, script, 16, 1)
        for _ in range(rounds):
            bare_rps = 0.0
            for key, script in plan:
                target = bare_base if key == "bare" else base
                procs = {name: find() for name, find in groups.items()}
                before = {name: cpu_seconds(p) for name, p in procs.items()}
                out = api.run_wrk(target, script, 16, seconds)
                spent = {name: (cpu_seconds(p) - before[name]) / out["requests"] * 1e6 for name, p in procs.items()}
                bare_rps = out["rps"] if key == "bare" else bare_rps
                print(
                    f"{key:14s} {out['rps']:7.0f} req/s ({out['rps'] / bare_rps:.2f}x) p50 {out['p50_ms']:5.1f} "
                    f"p99 {out['p99_ms']:6.1f} ms; CPU us/request: "
                    + " ".join(f"{name}={us:.0f}" for name, us in spent.items() if us > 1)
                    + f"; other statuses {out['sother']}, socket errors {out['errors']}",
                    flush=True,
                )
                api.settle(target)
    finally:
        bench.shutdown()


if __name__ == "__main__":
    main()
