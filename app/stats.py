"""Operational figures shared by `/api/jobs/stats` and the dashboard."""
from __future__ import annotations

import statistics
from datetime import timedelta

from redis import Redis
from rq import Queue, Worker

from app.api.serializers import iso
from app.config import Settings
from app.models import JobRun, utcnow
from workers.catalog import JOBS, QUEUES
from workers.schedules import read_schedules


def worker_stats(redis: Redis) -> dict:
    workers = Worker.all(connection=redis)
    listed = []
    for worker in workers:
        listed.append({
            "name": worker.name,
            "state": worker.get_state(),
            "current_job": worker.get_current_job_id(),
            "queues": worker.queue_names(),
            "last_heartbeat": iso(worker.last_heartbeat),
            "hostname": worker.hostname,
            "pid": worker.pid,
        })
    busy = sum(1 for w in listed if w["state"] == "busy")
    return {"active": len(listed), "busy": busy, "idle": len(listed) - busy, "workers": listed,
            "active_tasks": {w["name"]: w["current_job"] for w in listed if w["current_job"]}}


def queue_stats(redis: Redis) -> dict:
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
        row = counts[index * width:(index + 1) * width]
        out[queue.name] = {"queued": row[0], **dict(zip(registries, row[1:]))}
    return out


def run_stats(hours: int = 24) -> dict:
    """Per job: runs by status and durations of finished runs over the last `hours`."""
    since = utcnow() - timedelta(hours=hours)
    rows = (
        JobRun.select(JobRun.job_name, JobRun.status, JobRun.started_at, JobRun.ended_at)
        .where(JobRun.job_name.in_(list(JOBS)) & (JobRun.enqueued_at >= since))  # uses (job_name, enqueued_at)
        .tuples()
    )
    per_job = {name: {"by_status": {}, "durations": []} for name in JOBS}
    for job_name, status, started, ended in rows:
        entry = per_job.setdefault(job_name, {"by_status": {}, "durations": []})
        entry["by_status"][status] = entry["by_status"].get(status, 0) + 1
        if status == "finished" and started and ended:
            entry["durations"].append((ended - started).total_seconds())
    out = {}
    for job_name, entry in per_job.items():
        durations = sorted(entry.pop("durations"))
        by_status = entry["by_status"]
        out[job_name] = {
            "success": by_status.get("finished", 0),
            "failure": by_status.get("failed", 0) + by_status.get("stopped", 0),
            "by_status": by_status,
            "duration_seconds": {
                "count": len(durations),
                "mean": round(statistics.fmean(durations), 3) if durations else None,
                "p50": round(statistics.median(durations), 3) if durations else None,
                "max": round(durations[-1], 3) if durations else None,
            },
        }
    return {"window_hours": hours, "jobs": out}


def schedule_json(info) -> dict:
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


def service_stats(redis: Redis, settings: Settings) -> dict:
    return {
        "workers": worker_stats(redis),
        "queues": queue_stats(redis),
        "registered_tasks": [spec.func for spec in JOBS.values()],
        "jobs": {name: {"task": spec.func, "queue": spec.queue} for name, spec in JOBS.items()},
        "schedules": [schedule_json(info) for info in read_schedules(redis, settings)],
        "last_24h": run_stats(24),
    }


# --- helpers for the dashboard's data endpoint and /metrics (aggregates computed in SQL) -------

# Fields a ServiceWorker adds to its RQ hash on heartbeat (app.metrics.publish_worker_resources).
CPU_FIELD = "svc_cpu_percent"
RSS_FIELD = "svc_rss_bytes"
SAMPLED_FIELD = "svc_resources_at"  # unix time of the sample


def is_postgres() -> bool:
    import peewee

    from app.connections import database

    return isinstance(database.obj, peewee.PostgresqlDatabase)


def duration_seconds_sql():
    """`ended_at - started_at` in seconds as an SQL expression (SQLite and PostgreSQL differ)."""
    from peewee import SQL

    if is_postgres():
        return SQL('EXTRACT(EPOCH FROM ("ended_at" - "started_at"))')
    return SQL('((julianday("ended_at") - julianday("started_at")) * 86400.0)')


def hour_bucket_sql(field):
    """`field` truncated to the hour as text `YYYY-MM-DDTHH`, in SQL."""
    from peewee import fn

    if is_postgres():
        return fn.to_char(field, 'YYYY-MM-DD"T"HH24').coerce(False)  # text, not parsed as the field's type
    return fn.strftime("%Y-%m-%dT%H", field).coerce(False)


def percentile(ordered: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..1) of an ascending list; None when empty."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def worker_resources(redis: Redis, worker_keys: list[str]) -> list[dict]:
    """CPU%, RSS and sample time each worker last published (None where it published none)."""
    with redis.pipeline(transaction=False) as pipe:
        for key in worker_keys:
            pipe.hmget(key, CPU_FIELD, RSS_FIELD, SAMPLED_FIELD)
        rows = pipe.execute()
    out = []
    for cpu, rss, sampled in rows:
        rss_value = _number(rss)
        out.append({"cpu_percent": _number(cpu), "rss_bytes": int(rss_value) if rss_value is not None else None,
                    "sampled_at": _number(sampled)})
    return out


def _number(raw: bytes | None) -> float | None:
    """A published figure, or None when absent or unreadable (a page must not fail on one)."""
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
