"""Use cases on the cron schedules: list them, pause or resume one, run one now.

Pause state is a Redis set (`app.scheduling.PAUSED_KEY`) that the scheduler reads at each
firing: a paused schedule's slots are claimed and skipped, its template keeps moving to the
next slot, and the pause survives scheduler restarts.

Schedules are configuration, so listing them does not need Redis: without it each schedule
still shows its cron, its next fire time computed from the cron, and its last run from the
database; what only Redis knows (paused, registered) is null with a `state_note` saying so.
"""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from app import runs
from app.config import Settings
from app.core.catalog import JOBS
from app.core.errors import RunActive, UnknownSchedule
from app.core.stats import schedule_json
from app.models import JobRun, iso, utcnow
from app.scheduling import PAUSED_KEY, next_fire_time, read_schedules

REDIS_UNKNOWN = "unknown (Redis unavailable)"

log = logging.getLogger(__name__)


def schedule_name(name: str) -> str:
    """The catalogue's schedule of that name, or `UnknownSchedule`."""
    if name not in JOBS:
        raise UnknownSchedule(name, list(JOBS))
    return name


def list_schedules(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    """The schedules as the scheduler holds them; from configuration and the database when Redis is down."""
    try:
        return [{**schedule_json(info), "state_note": None} for info in read_schedules(redis, settings)]
    except RedisError as exc:
        log.warning("schedules listed without Redis (%s)", type(exc).__name__)
        return configured_schedules(settings)


def configured_schedules(settings: Settings) -> list[dict[str, Any]]:
    """Each schedule from the catalogue and settings: cron, next fire time from the cron, last run from the database."""
    now = utcnow()
    out = []
    for name, spec in JOBS.items():
        cron = spec.cron(settings)
        last = (
            JobRun.select(JobRun.id, JobRun.enqueued_at, JobRun.status)
            .where((JobRun.job_name == name) & (JobRun.trigger == "scheduled"))
            .order_by(JobRun.enqueued_at.desc())
            .first()
        )
        out.append(
            {
                "name": name,
                "cron": cron,
                "timezone": "UTC",
                "queue": spec.queue,
                "task": spec.func,
                "registered": None,
                "paused": None,
                "next_run": iso(next_fire_time(cron, now)),
                "last_run": iso(last.enqueued_at) if last else None,
                "last_run_id": last.id if last else None,
                "last_status": last.status if last else None,
                "state_note": f"paused and registered: {REDIS_UNKNOWN}; next run computed from the cron",
            }
        )
    return out


def schedule_state(redis: Redis, settings: Settings, name: str) -> dict[str, Any]:
    name = schedule_name(name)
    return next(s for s in list_schedules(redis, settings) if s["name"] == name)


def set_paused(redis: Redis, name: str, paused: bool) -> bool:
    """Pause or resume a schedule; True when that changed its state (both are idempotent)."""
    name = schedule_name(name)
    changed = bool(redis.sadd(PAUSED_KEY, name) if paused else redis.srem(PAUSED_KEY, name))
    if changed:
        log.info("schedule %s %s", name, "paused" if paused else "resumed")
    return changed


def run_now(redis: Redis, settings: Settings, name: str) -> runs.EnqueueOutcome:
    """Run a schedule's job now as a manual trigger (paused or not); `RunActive` when one is active."""
    name = schedule_name(name)
    try:
        return runs.enqueue_run(name, redis=redis, settings=settings, trigger="manual")
    except runs.RunConflict as conflict:
        raise RunActive(conflict.job_name, conflict.active_id) from None
