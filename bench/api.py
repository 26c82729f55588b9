"""API under load: wrk against the service's gunicorn and a bare Flask + gunicorn route.

Each wrk run uses a Lua script that counts status codes per thread and prints one JSON line
with the request count, duration and latency percentiles (wrk's own histogram). Targets are
measured interleaved within a round (bare route first), so the ratio to the bare route is
taken from runs a few seconds apart, and the rounds' medians are reported.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from bench import data
from bench.stack import BIN, TOKEN, Bench, free_port, http, median, wait_http

ACTIVE_KEY = "forecast-service:active:forecast"
HOLDER_ID = "bench-api-holder"

LUA = r"""
local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end

n200, n202, n409, nother = 0, 0, 0, 0
function response(status, headers, body)
  if status == 200 then n200 = n200 + 1
  elseif status == 202 then n202 = n202 + 1
  elseif status == 409 then n409 = n409 + 1
  else nother = nother + 1 end
end

local ids = {}
local count = 0
local static_req = nil
function init(args)
  math.randomseed(1000 + tid * 7919)
  if KIND == "status" then
    for line in io.lines(IDS_FILE) do table.insert(ids, line) end
  elseif KIND == "get" then
    static_req = wrk.format("GET", PATH)
  end
end

local hdrs = {["Authorization"] = "Bearer " .. TOKEN, ["Content-Type"] = "application/json"}
function request()
  count = count + 1
  if KIND == "status" then
    return wrk.format("GET", PATH .. ids[math.random(#ids)])
  elseif KIND == "trigger" then
    local body = (count % 2 == 0) and '{"force": true}' or '{}'
    return wrk.format("POST", PATH, hdrs, body)
  end
  return static_req
end

function done(summary, latency, requests)
  local c200, c202, c409, cother = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    c200 = c200 + t:get("n200"); c202 = c202 + t:get("n202")
    c409 = c409 + t:get("n409"); cother = cother + t:get("nother")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"s200": %d, "s202": %d, "s409": %d, "sother": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, c200, c202, c409, cother, e.connect, e.read, e.write, e.timeout))
end
"""


def write_script(workdir: Path, name: str, kind: str, path: str, ids_file: Path | None = None) -> Path:
    head = (
        f"KIND = {json.dumps(kind)}\nPATH = {json.dumps(path)}\nTOKEN = {json.dumps(TOKEN)}\n"
        f"IDS_FILE = {json.dumps(str(ids_file) if ids_file else '')}\n"
    )
    script = workdir / f"wrk-{name}.lua"
    script.write_text(head + LUA)
    return script


def run_wrk(base: str, script: Path, connections: int, seconds: float) -> dict:
    threads = min(2, connections)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            out = json.loads(line[len("BENCH_JSON ") :])
            out["rps"] = out["requests"] / (out["duration_us"] / 1e6)
            out["p50_ms"], out["p99_ms"] = out["p50_us"] / 1000, out["p99_us"] / 1000
            out["errors"] = out["connect"] + out["read"] + out["write"] + out["timeout"]
            return out
    raise RuntimeError(f"wrk printed no result: {done.stdout}\n{done.stderr}")


def _deep_cursors(conn, fraction: float = 0.9) -> dict:
    from app.core.pagination import encode_cursor

    out = {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM job_runs WHERE job_name = 'forecast' AND status = 'finished' "
            "AND trigger = 'scheduled'"
        )
        total = cur.fetchone()[0]
        cur.execute(
            "SELECT enqueued_at, id FROM job_runs WHERE job_name = 'forecast' AND status = 'finished' "
            "AND trigger = 'scheduled' ORDER BY enqueued_at DESC, id DESC OFFSET %s LIMIT 1",
            (int(total * fraction),),
        )
        at, run_id = cur.fetchone()
        out["history"] = encode_cursor(at, run_id)
        cur.execute("SELECT count(*) FROM alerts WHERE severity = 'high' AND source = 'scheduled_job'")
        total = cur.fetchone()[0]
        cur.execute(
            "SELECT created_at, id FROM alerts WHERE severity = 'high' AND source = 'scheduled_job' "
            "ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
            (int(total * fraction),),
        )
        at, alert_id = cur.fetchone()
        out["alerts"] = encode_cursor(at, alert_id)
    return out


def _hold_forecast(redis) -> None:
    """A pre-set active forecast run that never ends: `{}` triggers get 409, forced ones queue behind."""
    from rq.job import Job, JobStatus

    job = Job.create("bench.noop_job.noop", id=HOLDER_ID, connection=redis, status=JobStatus.DEFERRED)
    job.save()
    redis.set(ACTIVE_KEY, HOLDER_ID)


def _release_forecast(bench: Bench, redis) -> int:
    """Drop the holder and the forced runs queued behind it (their rows: canceled)."""
    from rq import Queue

    redis.delete(ACTIVE_KEY)
    queue = Queue("forecast", connection=redis)
    ids = queue.deferred_job_registry.get_job_ids()
    with redis.pipeline(transaction=False) as pipe:
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            pipe.unlink(*[f"rq:job:{i}" for i in chunk], *[f"rq:job:{i}:dependents" for i in chunk])
        pipe.unlink(queue.deferred_job_registry.key, f"rq:job:{HOLDER_ID}", f"rq:job:{HOLDER_ID}:dependents")
        pipe.execute()
    conn = bench.pg()
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE job_runs SET status = 'canceled', ended_at = now() at time zone 'utc' "
            "WHERE job_name = 'forecast' AND status = 'queued'"
        )
        changed = cur.rowcount
    conn.close()
    return changed


def load(bench: Bench, rows: int, log) -> dict:
    conn = bench.pg(autocommit=False)
    began = time.monotonic()
    ids = data.load_job_runs(conn, rows)
    log(f"loaded {rows:,} job_runs rows in {time.monotonic() - began:.0f}s")
    began = time.monotonic()
    data.load_alerts(conn, rows, *data.recent_window())
    log(f"loaded {rows:,} alerts in {time.monotonic() - began:.0f}s")
    cursors = _deep_cursors(conn)
    conn.close()
    ids_file = bench.workdir / "run-ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    return {"ids_file": ids_file, "cursors": cursors, "rows": rows}


def targets(bench: Bench, loaded: dict) -> list[tuple[str, str, Path]]:
    """(key, label, wrk script) in measuring order."""
    wd = bench.workdir
    hist = "/api/jobs/forecast/history?status=finished&trigger=scheduled&limit=50"
    alerts = "/api/alerts?severity=high&source=scheduled_job&limit=50"
    return [
        (
            "trigger",
            "trigger forecast (alternating 202 force / 409)",
            write_script(wd, "trigger", "trigger", "/api/jobs/forecast/trigger"),
        ),
        (
            "status",
            f"status of a random run ({loaded['rows']:,} rows)",
            write_script(wd, "status", "status", "/api/jobs/forecast/", loaded["ids_file"]),
        ),
        (
            "history_first",
            f"history, first page (status+trigger filter, {loaded['rows']:,} rows)",
            write_script(wd, "hist1", "get", hist),
        ),
        (
            "history_deep",
            "history, deep cursor page (90% down)",
            write_script(wd, "hist2", "get", f"{hist}&cursor={loaded['cursors']['history']}"),
        ),
        (
            "alerts_first",
            f"alerts, first page (severity+source filter, {loaded['rows']:,} rows)",
            write_script(wd, "alerts1", "get", alerts),
        ),
        (
            "alerts_deep",
            "alerts, deep cursor page (90% down)",
            write_script(wd, "alerts2", "get", f"{alerts}&cursor={loaded['cursors']['alerts']}"),
        ),
        (
            "busy_history",
            "history, first page, while another connection commits every ~1 ms (kept pages never match)",
            write_script(wd, "hist3", "get", hist),
        ),
        ("stats", "stats (/api/jobs/stats)", write_script(wd, "stats", "get", "/api/jobs/stats")),
    ]


class Committer:
    """Another connection committing a one-row update every `pause` seconds: each commit moves the
    database's snapshot, so the web's kept pages (app/core/page_cache.py) never match and every
    page is read afresh; what a page costs on a busy database."""

    def __init__(self, bench: Bench, pause: float = 0.001) -> None:
        import threading

        self.conn = bench.pg()
        with self.conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS bench_commits (id int PRIMARY KEY, n bigint NOT NULL)")
            cur.execute("INSERT INTO bench_commits VALUES (1, 0) ON CONFLICT DO NOTHING")
        self.pause = pause
        self.commits = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with self.conn.cursor() as cur:
            while not self.stopping.is_set():
                cur.execute("UPDATE bench_commits SET n = n + 1 WHERE id = 1")
                self.commits += 1
                time.sleep(self.pause)

    def __enter__(self) -> Committer:
        self.began = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
        self.rate = self.commits / (time.monotonic() - self.began)
        self.conn.close()


def check_routes(bench: Bench, loaded: dict) -> None:
    """Each GET target answers 200 with data before it is loaded with wrk."""
    base = f"http://127.0.0.1:{bench.web_port}"
    ids = loaded["ids_file"].read_text().split()
    checks = {
        "status": f"/api/jobs/forecast/{ids[0]}",
        "history": "/api/jobs/forecast/history?status=finished&trigger=scheduled&limit=50"
        f"&cursor={loaded['cursors']['history']}",
        "alerts": f"/api/alerts?severity=high&source=scheduled_job&limit=50&cursor={loaded['cursors']['alerts']}",
    }
    for name, path in checks.items():
        status, body, _ = http("GET", base + path, token=None)
        if status != 200 or not body:
            raise RuntimeError(f"{name} route answered {status}: {body}")
        if name in ("history", "alerts") and not body.get("runs" if name == "history" else "alerts"):
            raise RuntimeError(f"{name} deep page is empty: {body}")


def bare_server_args(bench: Bench) -> list[str]:
    """The web process's worker model (workers, class, threads, keep-alive as gunicorn.conf.py sets
    them from the same settings), so the ratio compares the apps, not two server set-ups."""
    from app.config import Settings

    env = bench.env()
    names = ("web_concurrency", "web_worker_class", "web_threads")
    settings = Settings(_env_file=None, **{n: env.get(n.upper(), Settings.model_fields[n].default) for n in names})
    return [
        "--workers",
        str(settings.web_concurrency),
        "--worker-class",
        settings.web_worker_class,
        "--threads",
        str(settings.web_threads),
        "--keep-alive",
        "5",
    ]


def start_bare(bench: Bench):
    port = free_port()
    proc = bench.start(
        "bare",
        [str(BIN / "gunicorn"), *bare_server_args(bench), "--bind", f"127.0.0.1:{port}", "bench.bare_app:app"],
        bench.env(BENCH_REDIS_URL=bench.redis_url),
    )
    bench.redis_client().set("bench:bare", "x" * 32)
    wait_http(f"http://127.0.0.1:{port}/", proc)
    return proc, f"http://127.0.0.1:{port}"


def settle(base: str, budget: float = 60.0) -> float:
    """Wait until gunicorn has answered what wrk left in its backlog: /healthz answers fast twice.

    wrk stops sending at the end of its run, but requests already queued at the sync workers
    are still served; the next measurement must not start behind them. Returns seconds waited.
    """
    began = time.monotonic()
    fast = 0
    while time.monotonic() - began < budget and fast < 2:
        try:
            _, _, seconds = http("GET", base + "/healthz", token=None, timeout=budget)
        except OSError:
            seconds = budget
        fast = fast + 1 if seconds < 0.05 else 0
        time.sleep(0.05)
    return time.monotonic() - began


def run(bench: Bench, loaded: dict, *, rounds: int, seconds: float, concurrencies=(16, 64), log=print) -> dict:
    redis = bench.redis_client()
    base = f"http://127.0.0.1:{bench.web_port}"
    check_routes(bench, loaded)
    bare_proc, bare_base = start_bare(bench)
    bare_script = write_script(bench.workdir, "bare", "get", "/")
    plan = targets(bench, loaded)
    results: dict = {key: {c: [] for c in concurrencies} for key, _, _ in [("bare", "", None), *plan]}
    try:
        for key, _, script in [("bare", "", bare_script), *plan]:  # warm-up: every route, every worker
            if key == "trigger":
                _hold_forecast(redis)
            run_wrk(bare_base if key == "bare" else base, script, 16, 1)
            settle(bare_base if key == "bare" else base)
            if key == "trigger":
                _release_forecast(bench, redis)
        for round_no in range(rounds):
            for conns in concurrencies:
                for key, _, script in [("bare", "", bare_script), *plan]:
                    if key == "trigger":
                        _hold_forecast(redis)
                    target_base = bare_base if key == "bare" else base
                    if key == "busy_history":
                        with Committer(bench) as committer:
                            out = run_wrk(target_base, script, conns, seconds)
                        out["commits_per_s"] = committer.rate
                    else:
                        out = run_wrk(target_base, script, conns, seconds)
                    out["settle_s"] = settle(target_base)
                    if key == "trigger":
                        out["canceled_rows"] = _release_forecast(bench, redis)
                    results[key][conns].append(out)
                    log(
                        f"  api round {round_no + 1} c={conns} {key}: {out['rps']:.0f} req/s, "
                        f"p50 {out['p50_ms']:.1f} ms, p99 {out['p99_ms']:.1f} ms (settled {out['settle_s']:.1f}s)"
                        + (f", {out['commits_per_s']:.0f} commits/s beside it" if "commits_per_s" in out else "")
                        + (
                            f", codes 200={out['s200']} 202={out['s202']} 409={out['s409']} other={out['sother']}"
                            f" errors={out['errors']}"
                            if out["sother"] or out["errors"] or key == "trigger"
                            else ""
                        )
                    )
    finally:
        bench.stop(bare_proc)
    summary = {}
    for key, per_conn in results.items():
        summary[key] = {}
        for conns, runs in per_conn.items():
            bare_runs = results["bare"][conns]
            ratios = [r["rps"] / b["rps"] for r, b in zip(runs, bare_runs) if b["rps"]]
            p99_ratios = [r["p99_ms"] / b["p99_ms"] for r, b in zip(runs, bare_runs) if b["p99_ms"]]
            summary[key][conns] = {
                "rps": median([r["rps"] for r in runs]),
                "p50_ms": median([r["p50_ms"] for r in runs]),
                "p99_ms": median([r["p99_ms"] for r in runs]),
                "ratio_to_bare": median(ratios),
                "p99_ratio_to_bare": median(p99_ratios),
                "non_2xx_409": sum(r["sother"] for r in runs),
                "socket_errors": sum(r["errors"] for r in runs),
                "s202": sum(r["s202"] for r in runs),
                "s409": sum(r["s409"] for r in runs),
                "runs": runs,
            }
            if any("commits_per_s" in r for r in runs):
                summary[key][conns]["commits_per_s"] = median([r["commits_per_s"] for r in runs])
    summary["labels"] = {key: label for key, label, _ in plan}
    return summary
