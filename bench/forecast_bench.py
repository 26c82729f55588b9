"""Forecast benchmark (`make bench-forecast`): database to stored alerts, quality, memory.

For each size N (series x 730 days of seeded demo data with labelled anomalies) it measures,
on its own Redis and PostgreSQL servers and with real worker processes (`python -m workers`):

- the wall time of a forecast run from enqueue to the finished history row, with 1 and with 2
  workers (fan-out as configured; the service's defaults unless --threshold/--chunk-size), and
  the run's own split: plan, load, fit, rules, store (fanned-out phases are summed over chunks);
- the peak memory: the largest work-horse (its own ru_maxrss) and the sampled sum over all
  worker processes;
- sMAPE on a 14-day holdout of every series, and of a sample next to statsmodels' Holt-Winters
  (additive trend and weekly season) fitted series by series on the same training data;
- the precision and recall of the stored alerts against the seeded anomalies.

`--m5` measures the M5 scale instead: 30,490 series (3,049 items x 10 stores, the Walmart M5
competition's shape) x 1,941 days generated inside PostgreSQL (the shared real-demand folder
holds only M5's last 28 days), with two worker processes, and prints each worker's peak RSS
(its process and work-horses). Its series are intermittent counts like M5's: item-store levels
spread over four orders of magnitude, many zero days, items introduced late, about 1% of days
without a row; each store's capacity is the 95th percentile of its daily load over the last 365
days (the issue's definition). It has no labelled anomalies, so no precision or recall.

Usage: python bench/forecast_bench.py [--quick] [--sizes 1000,10000] [--repeats 3] ...
       python bench/forecast_bench.py --m5 [--repeats 1]
(BENCH_QUICK=1 also selects the quick smoke run.)
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ENV_FILE", "/dev/null")  # the benchmark's settings only, not the developer's .env

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from app import runs  # noqa: E402
from app.config import Settings, configure  # noqa: E402
from app.connections import bind_database, database, db_session, redis_connection  # noqa: E402
from app.forecast import demo, pipeline, predict  # noqa: E402
from app.models import Alert, AlertOccurrence, JobRun  # noqa: E402
from tests.servers import PostgresServer, RedisServer, ServerUnavailable  # noqa: E402

log = logging.getLogger("bench")
HOLDOUT = 14
DAYS = 730


@dataclass
class RunFigures:
    wall: float
    timings: dict[str, float]
    horse_peak_mb: float
    total_peak_mb: float
    chunks: int
    precision: float
    recall: float
    alerts: int
    load_average: float  # the machine's 1-minute load average when the run started
    worker_peaks_mb: list[float] = field(default_factory=list)  # per worker process (+ its horses)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of the run's own processes, by phase


@dataclass
class Case:
    series: int
    workers: int
    label: str
    runs: list[RunFigures] = field(default_factory=list)


class MemorySampler(threading.Thread):
    """Samples the summed RSS of some processes and all their children (the work-horses)."""

    def __init__(self, pids: list[int], every: float = 0.05):
        super().__init__(daemon=True)
        self.pids, self.every, self.peak = pids, every, 0
        self.peaks = dict.fromkeys(pids, 0)  # per worker: its process plus its work-horses
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            total = 0
            for pid in self.pids:
                own = 0
                try:
                    proc = psutil.Process(pid)
                    for p in [proc, *proc.children(recursive=True)]:
                        own += p.memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[pid] = max(self.peaks[pid], own)
                total += own
            self.peak = max(self.peak, total)
            self._stop_event.wait(self.every)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak / 2**20


def smape(forecast: np.ndarray, actual: np.ndarray) -> float:
    """Symmetric MAPE in percent; a point where both are 0 counts as 0."""
    denominator = np.abs(forecast) + np.abs(actual)
    ratio = np.divide(2 * np.abs(forecast - actual), denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return float(100 * ratio.mean())


def quality(sample_size: int) -> dict[str, Any]:
    """sMAPE of the engine (`predict`) and of statsmodels on a 14-day holdout of the loaded history."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    history = pipeline.load_history()
    train, actual = history.values[:, :-HOLDOUT], history.values[:, -HOLDOUT:]
    began = time.perf_counter()
    ours = predict(train, HOLDOUT).mean
    ours_seconds = time.perf_counter() - began
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(train), min(sample_size, len(train)), replace=False))
    reference = np.zeros((len(sample), HOLDOUT))
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of individual fits
        for row, i in enumerate(sample):
            fit = ExponentialSmoothing(train[i], trend="add", seasonal="add", seasonal_periods=7).fit()
            reference[row] = fit.forecast(HOLDOUT)
    statsmodels_seconds = time.perf_counter() - began
    np.maximum(reference, 0, out=reference)  # demand is never negative; ours is clipped too
    # statsforecast AutoETS (season 7) series by series on part of the same sample: the issue's
    # per-series speed reference ("the engine alone at least 100x faster per series").
    from statsforecast.models import AutoETS

    ets_rows = sample[: max(1, len(sample) // 3)]
    AutoETS(season_length=7).forecast(y=np.nan_to_num(train[ets_rows[0]]).astype(np.float64), h=HOLDOUT)  # JIT
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in ets_rows:
            AutoETS(season_length=7).forecast(y=np.nan_to_num(train[i]).astype(np.float64), h=HOLDOUT)
    autoets_seconds = time.perf_counter() - began
    return {
        "train_days": train.shape[1],
        "ours_all": smape(ours, actual),
        "ours_sample": smape(ours[sample], actual[sample]),
        "statsmodels_sample": smape(reference, actual[sample]),
        "sample": len(sample),
        "ours_ms_per_series": 1000 * ours_seconds / len(train),
        "statsmodels_ms_per_series": 1000 * statsmodels_seconds / len(sample),
        "autoets_ms_per_series": 1000 * autoets_seconds / len(ets_rows),
        "autoets_sample": len(ets_rows),
    }


M5_ITEMS, M5_STORES, M5_DAYS = (
    3049,
    ("CA_1", "CA_2", "CA_3", "CA_4", "TX_1", "TX_2", "TX_3", "WI_1", "WI_2", "WI_3"),
    1941,
)
# Generated inside PostgreSQL: Python would spend minutes on 59 million rows. Per series: a
# log-normal level (median 0.8 a day, sigma 1.2: most series intermittent, a few in the
# hundreds), a weekly and a yearly swing, 30% of the items introduced at a random later day,
# counts as rounded exponential draws around the level (about half the days are 0), and 1% of
# days without a row (missing, not zero).
_M5_SQL = """
WITH series AS MATERIALIZED (
    SELECT 'ITEM_' || lpad(i::text, 4, '0') AS item, l.id AS line_id,
        exp(ln(0.8) + 1.2 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS level,
        CASE WHEN random() < 0.3 THEN floor(random() * (%(days)s - 60))::int ELSE 0 END AS first_col,
        random() * 7 AS phase
    FROM generate_series(1, %(items)s) i CROSS JOIN production_lines l
)
INSERT INTO demand_history (item, line_id, day, quantity)
SELECT s.item, s.line_id, %(first)s::date + d,
    round(s.level * (1 + 0.35 * sin(2 * pi() * (d + s.phase) / 7)) * (1 + 0.15 * sin(2 * pi() * d / 365.25))
          * -ln(1 - random()))
FROM series s CROSS JOIN LATERAL generate_series(s.first_col, %(days)s - 1) d
WHERE random() >= 0.01
"""


def seed_m5(days: int = M5_DAYS, end: date | None = None) -> int:
    """30,490 M5-shaped series x `days` days in PostgreSQL; each store's capacity the P95 of its
    daily load over the last 365 days. Returns the number of rows."""
    end = end or (date.today() - timedelta(days=1))
    first = end - timedelta(days=days - 1)
    with db_session():
        database.execute_sql("TRUNCATE demand_history, production_lines RESTART IDENTITY CASCADE")
        for code in M5_STORES:
            database.execute_sql(
                "INSERT INTO production_lines (code, name, daily_capacity) VALUES (%s, %s, 1)",
                (code, f"Store {code}"),
            )
        indexes = database.execute_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'demand_history' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE contype = 'p')"
        ).fetchall()
        for name, _ in indexes:  # built once after the rows instead of updated row by row
            database.execute_sql(f'DROP INDEX "{name}"')
        database.execute_sql("SET synchronous_commit = off")
        database.execute_sql("SET maintenance_work_mem = '512MB'")
        with database.atomic():
            # No per-row foreign-key trigger (59 million queued checks of 10 known store ids): the
            # benchmark's own server runs as its superuser.
            database.execute_sql("SET LOCAL session_replication_role = replica")
            database.execute_sql(_M5_SQL, {"days": days, "items": M5_ITEMS, "first": first})
        for _, definition in indexes:
            database.execute_sql(definition)
        database.execute_sql(
            "UPDATE production_lines p SET daily_capacity = GREATEST(1, (SELECT percentile_cont(0.95) "
            "WITHIN GROUP (ORDER BY t.total) FROM (SELECT SUM(quantity) AS total FROM demand_history d "
            "WHERE d.line_id = p.id AND d.day > %s GROUP BY d.day) t))",
            (end - timedelta(days=365),),
        )
        return int(database.execute_sql("SELECT COUNT(*) FROM demand_history").fetchone()[0])


def precision_recall(expected: set[str]) -> tuple[float, float, int]:
    with db_session():
        alerted = {a.subject for a in Alert.select(Alert.subject).where(Alert.resolved == False)}  # noqa: E712
    hits = len(alerted & expected)
    return (hits / len(alerted) if alerted else 1.0), (hits / len(expected) if expected else 1.0), len(alerted)


class Workers:
    """`python -m workers forecast` processes with the benchmark's settings."""

    started = 0

    def __init__(self, count: int, env: dict[str, str], logdir: Path):
        self.procs, self.names = [], []
        for _ in range(count):
            Workers.started += 1  # a fresh name: RQ refuses one whose previous owner is still registered
            name = f"bench-{os.getpid()}-{Workers.started}"
            out = open(logdir / f"{name}.log", "ab")
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "workers", "forecast", "--name", name],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
            self.names.append(name)
            out.close()
        self.logdir = logdir

    def check(self) -> None:
        dead = [name for name, p in zip(self.names, self.procs) if p.poll() is not None]
        if dead:
            raise RuntimeError(f"worker(s) {', '.join(dead)} exited; see {self.logdir}")

    def wait_ready(self, redis, timeout: float = 30) -> None:
        from rq import Worker

        deadline = time.monotonic() + timeout
        while not set(self.names) <= {w.name for w in Worker.all(connection=redis)}:
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not register within {timeout}s; see {self.logdir}")
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def timed_run(settings: Settings, redis, workers: Workers, expected: set[str]) -> RunFigures:
    with db_session():
        AlertOccurrence.delete().execute()
        Alert.delete().execute()  # every run stores its alerts afresh
    sampler = MemorySampler([p.pid for p in workers.procs])
    sampler.start()
    load_average = os.getloadavg()[0]
    began = time.perf_counter()
    try:
        outcome = runs.enqueue_run("forecast", redis=redis, settings=settings, trigger="manual")
        while True:
            with db_session():
                row = JobRun.get_by_id(outcome.run_id)
            if row.status in runs.TERMINAL_VALUES:
                break
            if time.perf_counter() - began > settings.job_timeout:
                raise RuntimeError(f"run {row.id} still {row.status} after {settings.job_timeout}s")
            workers.check()
            time.sleep(0.01)
        wall = time.perf_counter() - began
    finally:
        total_peak = sampler.stop()
    if row.status != "finished":
        raise RuntimeError(f"run {row.id} {row.status}: {row.error}")
    result = row.result
    precision, recall, alerts = precision_recall(expected)
    return RunFigures(
        wall,
        result["timings"],
        result.get("peak_rss_mb") or 0.0,
        total_peak,
        result.get("fanout", {}).get("chunks", 0),
        precision,
        recall,
        alerts,
        load_average,
        [round(sampler.peaks[p.pid] / 2**20, 1) for p in workers.procs],
        result.get("cpu_seconds", {}),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK") == "1",
        help="a fast smoke run: 300 and 3,000 series x 400 days, one repeat, chunks of 1,000",
    )
    parser.add_argument("--sizes", default=None, help="comma-separated series counts (default 1000,10000)")
    parser.add_argument("--days", type=int, default=None, help=f"days of history (default {DAYS})")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 3; median shown)")
    parser.add_argument("--workers", default="1,2", help="worker process counts (default 1,2)")
    parser.add_argument("--sample", type=int, default=None, help="series fitted by statsmodels (default 100)")
    parser.add_argument(
        "--threshold", type=int, default=None, help="FORECAST_FANOUT_THRESHOLD (default: the service's)"
    )
    parser.add_argument(
        "--chunk-size",
        default=None,
        help="FORECAST_CHUNK_SIZE, or a comma-separated list to compare (default: the service's)",
    )
    parser.add_argument("--in-line", action="store_true", help="also time one worker with fan-out off")
    parser.add_argument(
        "--m5", action="store_true", help="M5 scale: 30,490 series x 1,941 days, 2 workers, per-worker peak RSS"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("300,3000" if args.quick else "1000,10000")).split(",")]
    days = args.days or (400 if args.quick else DAYS)
    repeats = args.repeats or (1 if args.quick or args.m5 else 3)
    sample = args.sample or (20 if args.quick else 100)
    if args.m5:
        sizes, days = [M5_ITEMS * len(M5_STORES)], args.days or M5_DAYS
        args.workers = "2" if args.workers == "1,2" else args.workers
    worker_counts = [int(w) for w in args.workers.split(",")]
    if args.quick:  # small enough to be quick, large enough to fan out
        args.threshold = 1000 if args.threshold is None else args.threshold
        args.chunk_size = args.chunk_size or "1000"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("app").setLevel(logging.WARNING)

    redis_server = RedisServer()
    try:
        redis_server.start()
        pg_server = PostgresServer().start()
    except ServerUnavailable as exc:
        redis_server.cleanup()
        raise SystemExit(f"forecast benchmark: {exc}") from None
    logdir = Path(pg_server.dir)
    try:
        overrides: dict[str, Any] = {
            "redis_url": redis_server.url,
            "database_url": pg_server.url,
            "log_level": "WARNING",
            "job_max_retries": 0,
            "job_timeout": 600,
        }
        if args.threshold is not None:
            overrides["forecast_fanout_threshold"] = args.threshold
        chunk_sizes = [int(c) for c in args.chunk_size.split(",")] if args.chunk_size else [None]
        if chunk_sizes[0] is not None:
            overrides["forecast_chunk_size"] = chunk_sizes[0]
        settings = configure(Settings(_env_file=None, **overrides))
        bind_database(settings)
        redis = redis_connection(settings)
        from app.migrations import migrate

        with db_session():
            migrate(database)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}
        env.update({k.upper(): str(v) for k, v in overrides.items()}, ENV_FILE="/dev/null", PYTHONPATH=str(ROOT))

        cases: list[Case] = []
        qualities: dict[int, dict[str, Any]] = {}
        seeds: dict[int, float] = {}
        for n in sizes:
            log.info("seeding %d series x %d days", n, days)
            began = time.perf_counter()
            if args.m5:
                log.info("M5 scale: %d rows", seed_m5(days))
                expected: set[str] = set()
            else:
                summary = demo.seed_demo(items=n, days=days, seed=7)
                expected = set(summary["anomalies"]["expected_alerts"])
            with db_session():  # a table at rest: no autovacuum of the fresh rows during the timed runs
                database.execute_sql("VACUUM ANALYZE demand_history")
            seeds[n] = time.perf_counter() - began
            if not args.m5:
                log.info("quality on a %d-day holdout", HOLDOUT)
                qualities[n] = quality(sample)
            configs = [
                (
                    w,
                    f"{w} worker{'s' if w > 1 else ''}" + (f", chunks of {c}" if len(chunk_sizes) > 1 else ""),
                    {"FORECAST_CHUNK_SIZE": str(c)} if c else {},
                )
                for c in chunk_sizes
                for w in worker_counts
            ]
            if args.in_line:
                configs.insert(0, (1, "1 worker, no fan-out", {"FORECAST_FANOUT_THRESHOLD": str(10**9)}))
            # Rounds: each round starts every configuration's workers afresh and times one run, so
            # a drift in the machine's load (a shared machine) spreads over all configurations.
            round_cases = [Case(n, count, label) for count, label, _ in configs]
            for _ in range(repeats):
                for case, (count, label, extra) in zip(round_cases, configs):
                    workers = Workers(count, {**env, **extra}, logdir)
                    try:
                        workers.wait_ready(redis)
                        timed_run(settings, redis, workers, expected)  # warm-up: imports, connections
                        case.runs.append(timed_run(settings, redis, workers, expected))
                        log.info(
                            "%d series, %s: %.2fs (load average %.1f)",
                            n,
                            label,
                            case.runs[-1].wall,
                            case.runs[-1].load_average,
                        )
                    finally:
                        workers.stop()
            cases.extend(round_cases)
        report(cases, qualities, seeds, settings, days, repeats)
    finally:
        pg_server.cleanup()
        redis_server.cleanup()


def report(
    cases: list[Case],
    qualities: dict[int, dict[str, Any]],
    seeds: dict[int, float],
    settings: Settings,
    days: int,
    repeats: int,
) -> None:
    med = statistics.median
    print()
    print(
        f"Forecast benchmark: {days} days of history per series, PostgreSQL, "
        f"fan-out above {settings.forecast_fanout_threshold} series in chunks of {settings.forecast_chunk_size}; "
        f"median of {repeats} round(s), each configuration's workers started afresh and warmed up by one run; "
        f"{os.cpu_count()} CPU(s)"
    )
    print()
    head = (
        "series",
        "workers",
        "wall s",
        "(min-max)",
        "plan",
        "load",
        "fit",
        "rules",
        "store",
        "other",
        "c.plan",
        "c.load",
        "c.fit",
        "c.rules",
        "c.store",
        "chunks",
        "horse MB",
        "worker MB",
        "total MB",
        "precision",
        "recall",
        "load avg",
    )
    rows = []
    for c in cases:
        walls = [r.wall for r in c.runs]
        phases = ("plan", "load", "fit", "rules", "store")
        t = {k: med([r.timings.get(k, 0.0) for r in c.runs]) for k in phases}
        cpu = {k: med([r.cpu.get(k, 0.0) for r in c.runs]) for k in phases}
        other = med([r.wall - sum(r.timings.get(k, 0.0) for k in phases) for r in c.runs])
        rows.append(
            (
                f"{c.series:,}",
                c.label,
                f"{med(walls):.2f}",
                f"{min(walls):.2f}-{max(walls):.2f}",
                *(f"{t[k]:.2f}" for k in phases),
                f"{other:.2f}",
                *(f"{cpu[k]:.2f}" for k in phases),
                str(c.runs[0].chunks),
                f"{max(r.horse_peak_mb for r in c.runs):.0f}",
                f"{max(max(r.worker_peaks_mb, default=0.0) for r in c.runs):.0f}",
                f"{max(r.total_peak_mb for r in c.runs):.0f}",
                f"{min(r.precision for r in c.runs):.3f}",
                f"{min(r.recall for r in c.runs):.3f}",
                f"{med([r.load_average for r in c.runs]):.1f}",
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    print()
    print(
        "phases: seconds inside the run (load/fit/rules summed over chunks when fanned out); "
        "other: wall minus the phases (queueing, work-horse hand-over, chunk and gather jobs, bookkeeping; "
        "below zero when chunks ran in parallel); c.*: the same phases' CPU seconds in the work-horses "
        "(time.process_time, summed over chunks; the database server's own CPU is not in it); "
        "horse MB: largest work-horse peak RSS; worker MB: largest sampled peak of one worker process "
        "with its work-horses; total MB: sampled peak of all worker processes; "
        "load avg: the machine's 1-minute load average at the runs' start (median)"
    )
    print()
    if not qualities:
        return
    head = (
        "series",
        "train days",
        "sMAPE ours (all)",
        "sample",
        "sMAPE ours",
        "sMAPE statsmodels",
        "ours ms/series",
        "statsmodels ms/series",
        "AutoETS ms/series",
        "AutoETS/ours",
        "seed s",
    )
    rows = [
        (
            f"{n:,}",
            str(q["train_days"]),
            f"{q['ours_all']:.4f}",
            str(q["sample"]),
            f"{q['ours_sample']:.4f}",
            f"{q['statsmodels_sample']:.4f}",
            f"{q['ours_ms_per_series']:.3f}",
            f"{q['statsmodels_ms_per_series']:.1f}",
            f"{q['autoets_ms_per_series']:.1f} ({q['autoets_sample']})",
            f"{q['autoets_ms_per_series'] / q['ours_ms_per_series']:.0f}x",
            f"{seeds[n]:.0f}",
        )
        for n, q in qualities.items()
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.rjust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    print()
    print(
        f"sMAPE on the last {HOLDOUT} days of each series, both models fitted on the days before; "
        "statsmodels: ExponentialSmoothing(trend='add', seasonal='add', seasonal_periods=7).fit(); "
        "AutoETS: statsforecast AutoETS(season_length=7) on a third of the sample (missing days as 0, "
        "it takes no NaN), series by series after one warm-up fit; AutoETS/ours: its time per series "
        "over the engine's (`predict` on all series at once)"
    )


if __name__ == "__main__":
    main()
