"""Use cases on the cron schedules: list them, pause or resume one, run one now.

Pause state is a Redis set (`app.scheduling.PAUSED_KEY`) that the scheduler reads at each
firing: a paused schedule's slots are claimed and skipped, its template keeps moving to the
next slot, and the pause survives scheduler restarts.
"""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis

from app import runs
from app.config import Settings
from app.core.catalog import JOBS
from app.core.errors import RunActive, UnknownSchedule
from app.core.stats import schedule_json
from app.scheduling import PAUSED_KEY, read_schedules

log = logging.getLogger(__name__)


def schedule_name(name: str) -> str:
    """The catalogue's schedule of that name, or `UnknownSchedule`."""
    if name not in JOBS:
        raise UnknownSchedule(name, list(JOBS))
    return name


def list_schedules(redis: Redis, settings: Settings) -> list[dict[str, Any]]:
    return [schedule_json(info) for info in read_schedules(redis, settings)]


def schedule_state(redis: Redis, settings: Settings, name: str) -> dict[str, Any]:
    name = schedule_name(name)
    return next(schedule_json(i) for i in read_schedules(redis, settings) if i.name == name)


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
