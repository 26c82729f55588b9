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

import logging
from datetime import datetime, timedelta, timezone

import peewee
from redis import Redis
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job

from app.api.serializers import alert_json, iso, run_json
from app.config import Settings
from app.core.catalog import JOBS
from app.core.stats import STATUSES, hour_bucket_sql, queue_stats, run_figures, schedule_json
from app.models import Alert, DailySummary, JobRun, utcnow
from app.runs import TERMINAL_VALUES
from app.scheduling import read_schedules
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


def dashboard_data(redis: Redis, settings: Settings) -> dict:
    now = utcnow()
    return {
        "generated_at": iso(now),
        "jobs": job_summaries(now),
        "runs_per_hour": runs_per_hour(now),
        "queues": queue_stats(redis),
        "workers": worker_rows(redis),
        "schedules": [schedule_json(info) for info in read_schedules(redis, settings)],
        "active_runs": mark_rq_jobs(redis, active_runs()),
        "recent_runs": mark_rq_jobs(redis, recent_runs()),
        "alerts": alert_summary(now),
        "daily_report": latest_daily_report(),
        "last_outcomes": last_outcomes(),
        "skipped_slots": skipped_slots(now),
        "forecast_accuracy": forecast_accuracy(),
    }


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


def worker_rows(redis: Redis) -> list[dict]:
    """Workers with state, current job, heartbeat age and the CPU/RSS they published."""
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
                "state": str(worker.get_state()),
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
        return mark_rq_jobs(redis, [{**run_json(run), "active": run.status not in TERMINAL_VALUES}])
    if len(query) < 3:
        return []
    rows = JobRun.select().where(JobRun.id.startswith(query)).order_by(JobRun.enqueued_at.desc()).limit(limit)
    return mark_rq_jobs(redis, [{**run_json(r), "active": r.status not in TERMINAL_VALUES} for r in rows])
