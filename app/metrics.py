"""Prometheus metrics at `/metrics`.

Every figure is read from Redis and the database when Prometheus scrapes: the collector keeps
no in-process counters, so each gunicorn worker process answers the same for the same state,
and a restart loses nothing. Process-local collectors (prometheus-client's process/platform
ones) are left out for the same reason.

Run counts are gauges, not counters: they count rows of the run history, which the weekly
cleanup prunes (HISTORY_RETENTION_DAYS), so they may go down.

`/metrics` is a read route: open by default, and it needs `Authorization: Bearer $API_TOKEN`
when API_READ_AUTH=1 (Prometheus' `authorization` scrape setting sends it).

Workers publish their own CPU and memory on heartbeat (`app.worker_resources`, which the
worker process imports without Flask); this module only reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timezone

import peewee
import redis.exceptions
from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from redis import Redis
from rq import Worker

from app.auth import require_read_token
from app.config import Settings
from app.connections import db_session
from app.core.catalog import JOBS
from app.core.stats import queue_stats
from app.models import JobRun
from app.scheduling import read_schedules
from app.worker_resources import worker_resources

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)


# --- scrape side -------------------------------------------------------------------------------


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


class ServiceCollector(Collector):
    """Reads the shared state at each scrape; a source that is down reports `forecast_up 0`."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings

    def describe(self) -> list[Metric]:
        return []  # no collection at registration time

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("forecast_up", "1 when the source answered this scrape", labels=["source"])
        redis_ok = db_ok = True
        try:
            yield from self._redis_metrics()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("metrics: Redis unavailable (%s)", type(exc).__name__)
            redis_ok = False
        try:
            with db_session():
                yield from self._database_metrics()
                if redis_ok:
                    yield from self._schedule_metrics()
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            log.warning("metrics: database unavailable (%s)", type(exc).__name__)
            db_ok = False
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.warning("metrics: Redis unavailable (%s)", type(exc).__name__)
            redis_ok = False
        up.add_metric(["redis"], int(redis_ok))
        up.add_metric(["database"], int(db_ok))
        yield up

    def _redis_metrics(self) -> Iterator[Metric]:
        queues = GaugeMetricFamily(
            "forecast_queue_jobs",
            "Jobs per queue and registry (queued = waiting in the queue)",
            labels=["queue", "registry"],
        )
        for queue, registries in queue_stats(self.redis).items():
            for registry, count in registries.items():
                queues.add_metric([queue, registry], count)
        workers = Worker.all(connection=self.redis)
        states: dict[str, int] = {"busy": 0, "idle": 0}
        for worker in workers:
            state = str(worker.get_state())
            states[state] = states.get(state, 0) + 1
        by_state = GaugeMetricFamily("forecast_workers", "RQ workers by state", labels=["state"])
        for state, count in sorted(states.items()):
            by_state.add_metric([state], count)
        cpu = GaugeMetricFamily(
            "forecast_worker_cpu_percent",
            "CPU% of a worker and its work-horse, as it last published",
            labels=["worker"],
        )
        rss = GaugeMetricFamily(
            "forecast_worker_rss_bytes", "Resident memory of a worker and its work-horse", labels=["worker"]
        )
        heartbeat = GaugeMetricFamily(
            "forecast_worker_last_heartbeat_timestamp_seconds",
            "Unix time of the worker's last heartbeat",
            labels=["worker"],
        )
        resources = worker_resources(self.redis, [w.key for w in workers])
        for worker, figures in zip(workers, resources):
            if figures.get("cpu_percent") is not None:
                cpu.add_metric([worker.name], figures["cpu_percent"])
            if figures.get("rss_bytes") is not None:
                rss.add_metric([worker.name], figures["rss_bytes"])
            if worker.last_heartbeat is not None:
                heartbeat.add_metric([worker.name], _ts(worker.last_heartbeat))
        yield from (queues, by_state, cpu, rss, heartbeat)

    def _database_metrics(self) -> Iterator[Metric]:
        runs = GaugeMetricFamily(
            "forecast_job_runs",
            "Runs in the history by job and status (pruned after HISTORY_RETENTION_DAYS, so not a counter)",
            labels=["job", "status"],
        )
        rows = (
            JobRun.select(JobRun.job_name, JobRun.status, peewee.fn.COUNT(JobRun.id))
            .group_by(JobRun.job_name, JobRun.status)
            .tuples()
        )
        for job_name, status, count in rows:
            runs.add_metric([job_name, status], count)
        yield runs

        # The duration stored on the row when the run ended (JobRun.duration_s).
        seconds = JobRun.duration_s
        columns = [peewee.fn.SUM(peewee.Case(None, [(seconds <= bound, 1)], 0)) for bound in DURATION_BUCKETS]
        rows = (
            JobRun.select(JobRun.job_name, peewee.fn.COUNT(peewee.SQL("*")), peewee.fn.SUM(seconds), *columns)
            .where((JobRun.status == "finished") & seconds.is_null(False))
            .group_by(JobRun.job_name)
            .tuples()
        )
        histogram = HistogramMetricFamily(
            "forecast_job_run_duration_seconds",
            "Duration of finished runs in the history (start to end of the last attempt)",
            labels=["job"],
        )
        for job_name, count, total, *cumulative in rows:
            buckets = [(repr(float(b)), int(c or 0)) for b, c in zip(DURATION_BUCKETS, cumulative)]
            buckets.append(("+Inf", int(count)))
            histogram.add_metric([job_name], buckets, float(total or 0.0))
        yield histogram

        last_success = GaugeMetricFamily(
            "forecast_schedule_last_success_timestamp_seconds",
            "Unix time the job's last successful run ended (any trigger)",
            labels=["schedule"],
        )
        for job_name in JOBS:
            # Runs of one job do not overlap, so the newest finished run (an index range) ended last.
            last = (
                JobRun.select(JobRun.ended_at)
                .where((JobRun.job_name == job_name) & (JobRun.status == "finished"))
                .order_by(JobRun.enqueued_at.desc())
                .limit(1)
                .first()
            )
            if last is not None and last.ended_at is not None:
                last_success.add_metric([job_name], _ts(last.ended_at))
        yield last_success
        yield from _accuracy_metrics()

    def _schedule_metrics(self) -> Iterator[Metric]:
        paused = GaugeMetricFamily(
            "forecast_schedule_paused", "1 when the schedule is paused (its slots do not run)", labels=["schedule"]
        )
        next_run = GaugeMetricFamily(
            "forecast_schedule_next_run_timestamp_seconds", "Unix time of the schedule's next slot", labels=["schedule"]
        )
        for info in read_schedules(self.redis, self.settings):
            paused.add_metric([info.name], int(info.paused))
            if info.next_run is not None:
                next_run.add_metric([info.name], _ts(info.next_run))
        yield paused
        yield next_run


def _accuracy_metrics() -> Iterator[Metric]:
    """The forecast's own accuracy: the latest run scored against the actuals that arrived since
    (app/forecast/accuracy.py), for the run (`scope="run"`) and for each of its lines."""
    from app.forecast import accuracy

    mase = GaugeMetricFamily(
        "forecast_mase",
        "MASE of the latest scored forecast run's P50 against the "
        "actuals (1 = as good as the weekly seasonal naive forecast in sample)",
        labels=["scope", "line"],
    )
    coverage = GaugeMetricFamily(
        "forecast_interval_coverage",
        "Share of the latest scored forecast run's actuals inside its P10..P90 band (target 0.8)",
        labels=["scope", "line"],
    )
    horizon = GaugeMetricFamily(
        "forecast_accuracy_horizon_start_timestamp_seconds",
        "Unix time of the first forecast day of the latest scored forecast run",
    )
    snapshot, lines = accuracy.latest()
    if snapshot is not None:
        if snapshot.mase is not None:
            mase.add_metric(["run", ""], snapshot.mase)
        if snapshot.coverage is not None:
            coverage.add_metric(["run", ""], snapshot.coverage)
        start = snapshot.horizon_start
        horizon.add_metric(
            [],
            _ts(datetime(start.year, start.month, start.day))
            if hasattr(start, "year")
            else _ts(datetime.fromisoformat(str(start)[:10])),
        )
        for line in lines:
            if line.mase is not None:
                mase.add_metric(["line", line.line], line.mase)
            if line.coverage is not None:
                coverage.add_metric(["line", line.line], line.coverage)
    yield from (mase, coverage, horizon)


def init_metrics(app: Flask) -> None:
    """One registry per app, holding only the shared-state collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(app.extensions["redis"], app.config["SETTINGS"]))
    app.extensions["metrics_registry"] = registry
    app.register_blueprint(bp)


@bp.get("/metrics")
@require_read_token
def metrics() -> Response:
    """Text format 0.0.4, or OpenMetrics when the scraper's Accept header asks for it."""
    registry = current_app.extensions["metrics_registry"]
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = Response(encoder(registry), content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response
