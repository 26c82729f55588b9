"""Schedule routes: list the cron schedules, pause or resume one, run one now.

Pause state is a Redis set (`workers.schedules.PAUSED_KEY`) that the scheduler reads at each
firing: a paused schedule's slots are claimed and skipped (the scheduler logs it), its
template keeps moving to the next slot, and the pause survives scheduler restarts. The
functions below are shared with the dashboard's own action routes.
"""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, url_for
from redis import Redis

from app import runs
from app.auth import require_read_token, require_token
from app.config import Settings
from app.core.catalog import JOBS
from app.errors import Conflict, NotFound
from app.stats import schedule_json
from workers.schedules import PAUSED_KEY, read_schedules

log = logging.getLogger(__name__)

bp = Blueprint("schedules", __name__, url_prefix="/api/schedules")


def _redis() -> Redis:
    return current_app.extensions["redis"]


def _settings() -> Settings:
    return current_app.config["SETTINGS"]


def schedule_name(name: str) -> str:
    """The catalogue's schedule of that name, or a 404."""
    if name not in JOBS:
        raise NotFound(f"unknown schedule {name[:50]!r}; known: {', '.join(JOBS)}")
    return name


def schedule_state(redis: Redis, settings: Settings, name: str) -> dict:
    return next(schedule_json(i) for i in read_schedules(redis, settings) if i.name == name)


def set_paused(redis: Redis, name: str, paused: bool) -> bool:
    """Pause or resume a schedule; True when that changed its state (both are idempotent)."""
    changed = bool(redis.sadd(PAUSED_KEY, name) if paused else redis.srem(PAUSED_KEY, name))
    if changed:
        log.info("schedule %s %s", name, "paused" if paused else "resumed")
    return changed


def run_now(redis: Redis, settings: Settings, name: str) -> runs.EnqueueOutcome:
    """Run a schedule's job now as a manual trigger (paused or not); Conflict when one is active."""
    try:
        return runs.enqueue_run(name, redis=redis, settings=settings, trigger="manual")
    except runs.RunConflict as conflict:
        raise Conflict(str(conflict), active_job_id=conflict.active_id) from None


@bp.get("")
@require_read_token
def list_schedules():
    return jsonify(schedules=[schedule_json(info) for info in read_schedules(_redis(), _settings())])


def _set_paused_response(name: str, paused: bool):
    name = schedule_name(name)
    changed = set_paused(_redis(), name, paused)
    state = schedule_state(_redis(), _settings(), name)
    verb = "paused" if paused else "resumed"
    message = f"schedule {name} {verb}" if changed else f"schedule {name} was already {verb}"
    return jsonify(**state, changed=changed, message=message)


@bp.post("/<name>/pause")
@require_token
def pause(name: str):
    return _set_paused_response(name, True)


@bp.post("/<name>/resume")
@require_token
def resume(name: str):
    return _set_paused_response(name, False)


@bp.post("/<name>/run")
@require_token
def run(name: str):
    name = schedule_name(name)
    outcome = run_now(_redis(), _settings(), name)
    response = jsonify(job_id=outcome.run_id, job_name=name, status=outcome.status.value,
                       message=f"{name} run queued (manual trigger)")
    response.status_code = 202
    response.headers["Location"] = url_for("jobs.status", job_name=name, run_id=outcome.run_id)
    return response
