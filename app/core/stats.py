"""Operational figures (the stats use case): shared by `/api/jobs/stats`, `/metrics` and the dashboard."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from peewee import SQL, fn
from redis import Redis
from rq import Queue, Worker
from rq.worker import BaseWorker

from app.config import Settings
from app.connections import database, is_postgres
from app.core.catalog import JOBS, QUEUES
from app.models import JobRun, iso, utcnow
from app.runs import RunStatus
from app.scheduling import read_schedules

LOST = "lost"  # a worker state of ours: its heartbeat is older than it can be while the worker lives


def heartbeat_deadline(settings: Settings, busy: bool) -> float:
    """Seconds a live worker's heartbeat can age: its beat interval plus WORKER_ABANDONED_AFTER.

    A busy worker beats every WORKER_HEARTBEAT_INTERVAL (workers/worker.py keeps the run's
    heartbeat); an idle one each time its blocking dequeue wakes, at most every
    WORKER_MAINTENANCE_INTERVAL. RQ keeps a dead worker's key for minutes after its last beat
    (worker TTL + 60 s), still "busy": past this deadline it is shown and reported as lost.
    """
    interval = settings.worker_heartbeat_interval
    if not busy:
        interval = max(interval, settings.worker_maintenance_interval)
    return float(interval + settings.worker_abandoned_after)


def worker_state(worker: BaseWorker, settings: Settings, now: datetime | None = None) -> str:
    """RQ's state of the worker, or `lost` when its heartbeat is past `heartbeat_deadline`."""
    state = str(worker.get_state())
    beat = worker.last_heartbeat
    if beat is None:
        return state
    if beat.tzinfo is not None:
        beat = beat.astimezone(timezone.utc).replace(tzinfo=None)
    age = ((now or utcnow()) - beat).total_seconds()
    return LOST if age > heartbeat_deadline(settings, state == "busy") else state


def worker_stats(redis: Redis, settings: Settings | None = None) -> dict[str, Any]:
    """Workers RQ lists; with `settings`, a worker past its heartbeat deadline is `lost`, not busy."""
    workers = Worker.all(connection=redis)
    now = utcnow()
    listed = []
    for worker in workers:
        listed.append(
            {
                "name": worker.name,
                "state": worker_state(worker, settings, now) if settings is not None else worker.get_state(),
                "current_job": worker.get_current_job_id(),
                "queues": worker.queue_names(),
                "last_heartbeat": iso(worker.last_heartbeat),
                "hostname": worker.hostname,
                "pid": worker.pid,
            }
        )
    busy = sum(1 for w in listed if w["state"] == "busy")
    lost = sum(1 for w in listed if w["state"] == LOST)
    return {
        "active": len(listed) - lost,
        "busy": busy,
        "idle": len(listed) - busy - lost,
        "lost": lost,
        "workers": listed,
        "active_tasks": {w["name"]: w["current_job"] for w in listed if w["current_job"]},
    }


def queue_stats(redis: Redis) -> dict[str, Any]:
    """Length of each queue and of each of its registries (one round trip)."""
    registries = ("started", "scheduled", "deferred", "failed", "finished", "canceled")
    queues = [Queue(name, connection=redis) for name in QUEUES]
    with redis.pipeline() as pipe:
        for queue in queues:
            pipe.llen(queue.key)
            for registry in registries:
                pipe.zcard(getattr(queue, f"{registry}_job_registry").key)
        counts = pipe.execute()
    width = 1 + len(registries)
    out = {}
    for index, queue in enumerate(queues):
        row = counts[index * width : (index + 1) * width]
        out[queue.name] = {"queued": row[0], **dict(zip(registries, row[1:]))}
    return out


def run_stats(hours: int = 24) -> dict[str, Any]:
    """Per job: runs by status and durations of finished runs over the last `hours` (aggregated in SQL)."""
    figures = run_figures(list(JOBS), utcnow() - timedelta(hours=hours))
    out = {}
    for job_name, entry in figures.items():
        by_status, durations = entry["by_status"], entry["durations"]
        out[job_name] = {
            "success": by_status.get("finished", 0),
            "failure": by_status.get("failed", 0) + by_status.get("stopped", 0),
            "by_status": by_status,
            "duration_seconds": {
                "count": durations["count"],
                "mean": _round(durations["mean"]),
                "p50": _round(durations["p50"]),
                "max": _round(durations["max"]),
            },
        }
    return {"window_hours": hours, "jobs": out}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def schedule_json(info: Any) -> dict[str, Any]:
    last = info.last_run
    return {
        "name": info.name,
        "cron": info.cron,
        "timezone": "UTC",
        "queue": info.queue,
        "task": info.func,
        "registered": info.registered,
        "paused": info.paused,
        "next_run": iso(info.next_run),
        "last_run": iso(last.enqueued_at) if last else None,
        "last_run_id": last.id if last else None,
        "last_status": last.status if last else None,
    }


def service_stats(redis: Redis, settings: Settings) -> dict[str, Any]:
    return {
        "workers": worker_stats(redis, settings),
        "queues": queue_stats(redis),
        "registered_tasks": [spec.func for spec in JOBS.values()],
        "jobs": {name: {"task": spec.func, "queue": spec.queue} for name, spec in JOBS.items()},
        "schedules": [schedule_json(info) for info in read_schedules(redis, settings)],
        "last_24h": run_stats(24),
    }


# --- run counts and durations of a time window, for /api/jobs/stats and the dashboard ----------

STATUSES = tuple(s.value for s in RunStatus)  # all named: the index ranges cover the time window
QUANTILES = {"p50": 0.50, "p95": 0.95}
BY_TIME_INDEX = "job_runs_job_name_status_enqueued_at_duration_s"  # JobRun's indexes (app/models.py)
BY_DURATION_INDEX = "job_runs_job_name_status_duration_s_enqueued_at"
# SQLite: reading a window's durations by time and sorting them costs about this many steps along
# the by-duration index per row (measured on 54,000 runs: 0.1 us a step, 0.2-0.6 us a sorted row).
SORT_COST = 4.0


def run_figures(names: list[str], since: datetime) -> dict[str, dict[str, Any]]:
    """Per job, runs enqueued since `since`: counts by status, and count/mean/max/p50/p95 of finished durations.

    One grouped query over the (job, status, enqueued_at, duration_s) index, no row objects.
    Percentiles interpolate linearly (PostgreSQL's percentile_cont): computed in that query on
    PostgreSQL; on SQLite the k-th duration is an OFFSET, along the by-duration index when the
    window holds much of the job's history, else over the window's rows sorted (`_sqlite_quantiles`).
    """
    postgres = is_postgres()
    columns = [
        JobRun.job_name,
        JobRun.status,
        fn.COUNT(SQL("*")),
        fn.COUNT(JobRun.duration_s),
        fn.AVG(JobRun.duration_s),
        fn.MAX(JobRun.duration_s),
    ]
    if postgres:
        array = ", ".join(str(q) for q in QUANTILES.values())
        columns.append(
            SQL(
                f'percentile_cont(ARRAY[{array}]) WITHIN GROUP (ORDER BY "duration_s") '
                "FILTER (WHERE \"status\" = 'finished')"
            )
        )
    query = (
        JobRun.select(*columns)
        .where(JobRun.job_name.in_(names) & JobRun.status.in_(STATUSES) & (JobRun.enqueued_at >= since))
        .group_by(JobRun.job_name, JobRun.status)
    )
    out = {name: {"by_status": {}, "durations": _durations(0, None, None, {})} for name in names}
    with database.atomic():  # SQLite: the OFFSET lookups see the rows that were counted
        for job_name, status, runs, count, mean, longest, *levels in database.execute(query).fetchall():
            out[job_name]["by_status"][status] = int(runs)
            if status != "finished" or not count:
                continue
            values = dict(zip(QUANTILES, levels[0])) if postgres else _sqlite_quantiles(job_name, since, int(count))
            out[job_name]["durations"] = _durations(int(count), mean, longest, values)
    return out


def _durations(count: int, mean: float | None, longest: float | None, values: dict[str, Any]) -> dict[str, Any]:
    floats = {key: None if values.get(key) is None else float(values[key]) for key in QUANTILES}
    return {
        "count": count,
        "mean": None if mean is None else float(mean),
        "max": None if longest is None else float(longest),
        **floats,
    }


def _sqlite_quantiles(job_name: str, since: datetime, count: int) -> dict[str, Any]:
    """The QUANTILES of the job's `count` finished durations since `since`: each from one OFFSET lookup.

    Along the by-duration index, OFFSET k steps over about k / (the window's share of the job's
    history) entries; that share is estimated from the job's oldest finished run (runs spread
    evenly in time). Otherwise the window's durations are read by time and sorted (SORT_COST).
    """
    now = utcnow()
    oldest = (
        JobRun.select(fn.MIN(JobRun.enqueued_at))
        .where((JobRun.job_name == job_name) & (JobRun.status == "finished"))
        .scalar()
    )
    spread = max(1.0, (now - oldest).total_seconds() / max((now - since).total_seconds(), 1.0)) if oldest else 1.0
    sql = (
        'SELECT "duration_s" FROM "{table}" INDEXED BY "{index}" WHERE "job_name" = ? AND "status" = \'finished\' '
        'AND "enqueued_at" >= ? AND "duration_s" IS NOT NULL ORDER BY "duration_s" LIMIT 2 OFFSET ?'
    )
    out = {}
    for key, q in QUANTILES.items():
        position = (count - 1) * q
        low = int(position)
        index = BY_DURATION_INDEX if (low + 2) * spread <= SORT_COST * count else BY_TIME_INDEX
        since_value = JobRun.enqueued_at.db_value(since)  # type: ignore[no-untyped-call]
        rows = database.execute_sql(
            sql.format(table=JobRun._meta.table_name, index=index), (job_name, since_value, low)
        ).fetchall()
        # No rows: deleted since they were counted (cleanup on another connection).
        out[key] = rows[0][0] + (rows[-1][0] - rows[0][0]) * (position - low) if rows else None
    return out


# --- helpers for the dashboard's data endpoint and /metrics (aggregates computed in SQL) -------


def hour_bucket_sql(field: Any) -> Any:
    """`field` truncated to the hour as text `YYYY-MM-DDTHH`, in SQL."""
    if is_postgres():
        return fn.to_char(field, 'YYYY-MM-DD"T"HH24').coerce(False)  # text, not parsed as the field's type
    return fn.strftime("%Y-%m-%dT%H", field).coerce(False)
