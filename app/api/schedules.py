"""Schedule routes: list the cron schedules, pause or resume one, run one now.

A thin adapter over the service layer (`app.core.schedules`, which also explains the pause
state); refusals are domain errors that `app.errors` maps to HTTP answers.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, url_for
from redis import Redis

from app.auth import require_read_token, require_token
from app.config import Settings
from app.core import schedules

bp = Blueprint("schedules", __name__, url_prefix="/api/schedules")


def _redis() -> Redis:
    return current_app.extensions["redis"]


def _settings() -> Settings:
    return current_app.config["SETTINGS"]


@bp.get("")
@require_read_token
def list_schedules():
    return jsonify(schedules=schedules.list_schedules(_redis(), _settings()))


def _set_paused_response(name: str, paused: bool):
    name = schedules.schedule_name(name)
    changed = schedules.set_paused(_redis(), name, paused)
    state = schedules.schedule_state(_redis(), _settings(), name)
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
    name = schedules.schedule_name(name)
    outcome = schedules.run_now(_redis(), _settings(), name)
    response = jsonify(
        job_id=outcome.run_id, job_name=name, status=outcome.status.value, message=f"{name} run queued (manual trigger)"
    )
    response.status_code = 202
    response.headers["Location"] = url_for("jobs.status", job_name=name, run_id=outcome.run_id)
    return response
