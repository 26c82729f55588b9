"""What the dashboard page shows, as one JSON document (`/dashboard/data.json`).

The page polls it every few seconds, so it must stay cheap with a long run history
(bench/dashboard_bench.py: 100,000 runs): counts and hour buckets are aggregated in SQL over
index ranges (job name + status + enqueue time) that also hold each run's stored duration;
p50/p95 come from PostgreSQL's percentile_cont, or on SQLite from one OFFSET lookup each along
a (job, status, duration) index (`app.core.stats.run_figures`); "recent" lists are per-job index
scans with a LIMIT. Redis figures are read without registry cleanup: a GET must not move
jobs between registries.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import peewee
from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job

from app.api.serializers import alert_json, iso, run_json
from app.config import Settings
from app.connections import db_session
from app.core import ops_events, schedules
from app.core.catalog import JOBS
from app.core.health import health_summary
from app.core.run_states import add_retry_states
from app.core.stats import LOST, STATUSES, hour_bucket_sql, queue_stats, run_figures, worker_state
from app.models import Alert, DailySummary, JobRun, utcnow
from app.runs import TERMINAL_VALUES
from app.worker_resources import worker_resources

log = logging.getLogger(__name__)

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
FAILURES = ("failed", "stopped")
ACTIVE = ("queued", "scheduled", "started")
CHART_HOURS = 24
RECENT_RUNS = 12
RECENT_ALERTS = 10
ACTIVE_RUNS_LIMIT = 50
SEVERITIES = ("high", "medium", "low")


def page_data(redis: Redis, settings: Settings) -> dict:
    """`dashboard_data` in a database session when the database answers, else without one."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(db_session())
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            log.warning("dashboard data without the database: %r", exc)
        return dashboard_data(redis, settings)


def dashboard_data(redis: Redis, settings: Settings) -> dict:
    """The page's data. Redis down: the database parts (runs, alerts, reports, schedules) are still
    given, the Redis parts are null and `unavailable` names Redis; the reverse for the database."""
    now = utcnow()
    health = health_summary(redis, settings, now)
    redis_up = health["checks"].get("redis") == "ok"
    database_up = health["checks"].get("database") == "ok"
    out: dict = {"generated_at": iso(now), "health": health, "unavailable": []}

    def part(key: str, needs_redis: bool, needs_database: bool, compute: Callable[[], Any]) -> None:
        out[key] = None
        if (needs_redis and not redis_up) or (needs_database and not database_up):
            return
        try:
            out[key] = compute()
        except (RedisError, peewee.OperationalError, peewee.InterfaceError) as exc:
            log.warning("dashboard part %s unavailable: %r", key, exc)

    part("jobs", False, True, lambda: job_summaries(now))
    part("runs_per_hour", False, True, lambda: runs_per_hour(now))
    part("queues", True, False, lambda: queue_stats(redis))
    part("workers", True, False, lambda: _workers(redis, settings, now, database_up))
    part("schedules", False, True, lambda: schedules.list_schedules(redis, settings))
    part("active_runs", False, True, lambda: _redis_marks(redis, redis_up, active_runs()))
    part("recent_runs", False, True, lambda: _redis_marks(redis, redis_up, recent_runs()))
    part("alerts", False, True, lambda: alert_summary(now))
    part("daily_report", False, True, latest_daily_report)
    part("last_outcomes", False, True, last_outcomes)
    part("skipped_slots", False, True, lambda: skipped_slots(now))
    part("forecast_accuracy", False, True, forecast_accuracy)
    if not redis_up:
        out["unavailable"].append("redis")
    if not database_up:
        out["unavailable"].append("database")
    return out


def _workers(redis: Redis, settings: Settings, now: datetime, database_up: bool) -> list[dict]:
    live = worker_rows(redis, settings)
    return live + lost_worker_rows(live, now) if database_up else live


def _redis_marks(redis: Redis, redis_up: bool, rows: list[dict]) -> list[dict]:
    """Run rows with their RQ job link and retry state; without Redis, each says what is unknown."""
    if not redis_up:
        for row in rows:
            row["rq_job"] = False
        return add_retry_states(redis, rows) if any(r["status"] == "scheduled" for r in rows) else rows
    return add_retry_states(redis, mark_rq_jobs(redis, rows))


def forecast_accuracy(runs: int = 60) -> list[dict]:
    """The last scored forecast runs, oldest first, for the accuracy chart (app/forecast/accuracy.py)."""
    from app.forecast import accuracy

    return list(reversed(accuracy.history(runs)))


def mark_rq_jobs(redis: Redis, rows: list[dict]) -> list[dict]:
    """Add `rq_job`: whether RQ still holds the run's job, so the page links rq-dashboard's job
    page only when there is one (skipped runs never had one; finished ones expire). One round trip."""
    ids = list(dict.fromkeys(row["job_id"] for row in rows))
    with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(Job.key_for(job_id))
        present = {job_id for job_id, found in zip(ids, pipe.execute()) if found}
    for row in rows:
        row["rq_job"] = row["job_id"] in present
    return rows


def latest_daily_report() -> dict | None:
    """The newest stored daily summary (what the `daily-summary` job posts to the webhook)."""
    row = DailySummary.select().order_by(DailySummary.day.desc()).first()
    if row is None:
        return None
    return {
        "date": row.day.isoformat(),
        "job_id": row.job_id,
        "created_at": iso(row.created_at),
        "delivery": row.delivery,
        **row.report,
    }


def _summary(counts: dict[str, int], p50: float | None, p95: float | None, n: int) -> dict:
    success = counts.get("finished", 0)
    failure = sum(counts.get(s, 0) for s in FAILURES)
    return {
        "runs": sum(counts.values()),
        "success": success,
        "failure": failure,
        "by_status": counts,
        "success_rate": round(success / (success + failure), 4) if success + failure else None,
        "duration_p50": _round(p50),
        "duration_p95": _round(p95),
        "duration_count": n,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def last_outcomes() -> dict:
    """Per job, its newest finished run and its newest failed or stopped one (id and end time):
    "when did it last work, when did it last break" at a glance. Two index lookups a job."""
    out = {}
    for name in JOBS:
        out[name] = {}
        for key, statuses in (("last_success", ("finished",)), ("last_failure", FAILURES)):
            row = (
                JobRun.select(JobRun.id, JobRun.ended_at, JobRun.status, JobRun.error)
                .where((JobRun.job_name == name) & JobRun.status.in_(statuses))
                .order_by(JobRun.enqueued_at.desc(), JobRun.id.desc())
                .first()
            )
            out[name][key] = (
                None
                if row is None
                else {"job_id": row.id, "ended_at": iso(row.ended_at), "status": row.status, "error": row.error}
            )
    return out


def skipped_slots(now: datetime, days: int = 7) -> dict:
    """Per job, the scheduled slots of the last `days` days recorded as skipped (paused, overlapping
    or missed in an outage; by slot time, as a catch-up records old slots late): how many, and the
    newest with its reason."""
    since = now - timedelta(days=days)
    out = {}
    for name in JOBS:
        skipped = JobRun.select().where(
            (JobRun.job_name == name) & (JobRun.status == "skipped") & (JobRun.slot >= since)
        )
        newest = skipped.order_by(JobRun.slot.desc(), JobRun.id.desc()).first()
        out[name] = {
            "days": days,
            "count": skipped.count(),
            "last": None if newest is None else {"job_id": newest.id, "slot": iso(newest.slot), "reason": newest.error},
        }
    return out


def job_summaries(now: datetime) -> dict:
    """Per job and window: runs by status, success rate (finished / finished+failed+stopped), p50/p95.

    Windows are by enqueue time; durations are those of finished runs (start to end of the
    last attempt), aggregated in SQL by `app.core.stats.run_figures` (shared with /api/jobs/stats).
    """
    names = list(JOBS)
    figures = {w: run_figures(names, now - delta) for w, delta in WINDOWS.items()}
    out = {}
    for name in names:
        out[name] = {"queue": JOBS[name].queue}
        for w in WINDOWS:
            durations = figures[w][name]["durations"]
            out[name][w] = _summary(
                figures[w][name]["by_status"], durations["p50"], durations["p95"], durations["count"]
            )
    return out


def runs_per_hour(now: datetime, hours: int = CHART_HOURS) -> dict:
    """Runs enqueued in each of the last `hours` hours (the current one included), by outcome."""
    current = now.replace(minute=0, second=0, microsecond=0)
    starts = [current - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    index = {f"{s:%Y-%m-%dT%H}": i for i, s in enumerate(starts)}
    series = {"finished": [0] * hours, "failed": [0] * hours, "other": [0] * hours}
    bucket = hour_bucket_sql(JobRun.enqueued_at)
    rows = (
        JobRun.select(bucket, JobRun.status, peewee.fn.COUNT(JobRun.id))
        .where(JobRun.job_name.in_(list(JOBS)) & JobRun.status.in_(STATUSES) & (JobRun.enqueued_at >= starts[0]))
        .group_by(bucket, JobRun.status)
        .tuples()
    )
    for hour, status, count in rows:
        position = index.get(hour)
        if position is None:  # enqueued "in the future" (clock skew): not charted
            continue
        kind = "finished" if status == "finished" else "failed" if status in FAILURES else "other"
        series[kind][position] += int(count)
    return {"hours": [iso(s) for s in starts], "series": series}


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def lost_worker_rows(live: list[dict], now: datetime) -> list[dict]:
    """Workers reported lost in the last hour that RQ no longer lists (it forgets a dead worker in minutes)."""
    listed = {row["name"] for row in live}
    rows = []
    for event in ops_events.recent_lost_workers(now):
        if event.subject in listed:
            continue
        listed.add(event.subject)
        details = event.details or {}
        beat = details.get("last_heartbeat")
        age = (now - datetime.fromisoformat(beat.rstrip("Z"))).total_seconds() if beat else None
        rows.append(
            {
                "name": event.subject,
                "state": LOST,
                "queues": details.get("queues") or [],
                "current_job": details.get("current_job"),
                "current_job_name": None,
                "current_job_description": "(its run is found abandoned, then retried or failed)"
                if details.get("current_job")
                else None,
                "current_job_exists": False,
                "last_heartbeat": beat,
                "heartbeat_age_seconds": round(age, 1) if age is not None else None,
                "cpu_percent": None,
                "rss_bytes": None,
                "resources_age_seconds": None,
                "successful_jobs": None,
                "failed_jobs": None,
                "pid": details.get("pid"),
                "hostname": details.get("hostname"),
                "gone": True,
            }
        )
    return rows


def worker_rows(redis: Redis, settings: Settings | None = None) -> list[dict]:
    """Workers with state, current job, heartbeat age and the CPU/RSS they published.

    With `settings`, a worker whose heartbeat is past its deadline is `lost`, not busy
    (`app.core.stats.worker_state`)."""
    workers = sorted(Worker.all(connection=redis), key=lambda w: w.name)
    now = datetime.now(timezone.utc)
    rows = []
    for worker, resources in zip(workers, worker_resources(redis, [w.key for w in workers])):
        job_id = worker.get_current_job_id()
        job_name = description = None
        job_exists = False
        if job_id:
            try:
                job = Job.fetch(job_id, connection=redis)
                job_name, description = (job.meta or {}).get("job_name"), job.description
                job_exists = True
            except NoSuchJobError:
                description = "(job record expired)"
        heartbeat = _aware(worker.last_heartbeat)
        sampled = resources["sampled_at"]
        rows.append(
            {
                "name": worker.name,
                "state": worker_state(worker, settings) if settings is not None else str(worker.get_state()),
                "queues": worker.queue_names(),
                "current_job": job_id,
                "current_job_name": job_name,
                "current_job_description": description,
                "current_job_exists": job_exists,
                "last_heartbeat": iso(heartbeat),
                "heartbeat_age_seconds": round((now - heartbeat).total_seconds(), 1) if heartbeat else None,
                "cpu_percent": resources["cpu_percent"],
                "rss_bytes": resources["rss_bytes"],
                "resources_age_seconds": round(now.timestamp() - sampled, 1) if sampled else None,
                "successful_jobs": worker.successful_job_count,
                "failed_jobs": worker.failed_job_count,
                "pid": worker.pid,
                "hostname": worker.hostname,
            }
        )
    return rows


def _run_row(run: JobRun) -> dict:
    row = run_json(run)
    row.pop("result", None)  # the list needs no results; the run's own view shows them
    if row["error"] and len(row["error"]) > 300:
        row["error"] = row["error"][:300] + "…"
    row["active"] = run.status not in TERMINAL_VALUES
    return row


def active_runs() -> list[dict]:
    rows = (
        JobRun.select()
        .where(JobRun.status.in_(ACTIVE))
        .order_by(JobRun.enqueued_at.desc(), JobRun.id.desc())
        .limit(ACTIVE_RUNS_LIMIT)
    )
    return [_run_row(r) for r in rows]


def recent_runs(limit: int = RECENT_RUNS) -> list[dict]:
    """The newest runs of all jobs: one indexed LIMIT query per job, merged."""
    found: list[JobRun] = []
    for name in JOBS:
        found += list(
            JobRun.select()
            .where(JobRun.job_name == name)
            .order_by(JobRun.enqueued_at.desc(), JobRun.id.desc())
            .limit(limit)
        )
    found.sort(key=lambda r: (r.enqueued_at, r.id), reverse=True)
    return [_run_row(r) for r in found[:limit]]


def alert_summary(now: datetime) -> dict:
    """Alerts created in the last 24 h and 7 d by severity, and the newest ones."""
    week = now - WINDOWS["7d"]
    day_case = peewee.Case(None, [(Alert.created_at >= now - WINDOWS["24h"], 1)], 0)
    counts = {w: dict.fromkeys(SEVERITIES, 0) for w in WINDOWS}
    rows = (
        Alert.select(Alert.severity, peewee.fn.COUNT(Alert.id), peewee.fn.SUM(day_case))
        .where(Alert.created_at >= week)
        .group_by(Alert.severity)
        .tuples()
    )
    for severity, in_week, in_day in rows:
        counts["7d"][severity] = int(in_week)
        counts["24h"][severity] = int(in_day or 0)
    newest = Alert.select().order_by(Alert.created_at.desc(), Alert.id.desc()).limit(RECENT_ALERTS)
    return {"by_severity": counts, "recent": [alert_json(a) for a in newest]}


def find_runs(redis: Redis, query: str, limit: int = 10) -> list[dict]:
    """The run with this id, else runs whose id starts with it (3+ characters, any case), newest first."""
    run = JobRun.get_or_none(JobRun.id == query)
    if run is not None:
        return add_retry_states(
            redis, mark_rq_jobs(redis, [{**run_json(run), "active": run.status not in TERMINAL_VALUES}])
        )
    if len(query) < 3:
        return []
    rows = JobRun.select().where(JobRun.id.startswith(query)).order_by(JobRun.enqueued_at.desc()).limit(limit)
    found = [{**run_json(r), "active": r.status not in TERMINAL_VALUES} for r in rows]
    return add_retry_states(redis, mark_rq_jobs(redis, found))
