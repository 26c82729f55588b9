"""Job routes: trigger, status, history and cancel for every catalogue job, and stats."""
from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request, url_for
from werkzeug.exceptions import MethodNotAllowed

from app import runs
from app.api.schemas import RUN_ID_PATTERN, HistoryQuery, TriggerBody, parse_json_body, parse_query
from app.auth import require_read_token, require_token
from app.core.catalog import JOBS, UnknownJob, get_job
from app.errors import BadRequest, Conflict, NotFound
from app.listings import history_page, run_status
from app.stats import service_stats

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")
_RUN_ID = re.compile(RUN_ID_PATTERN)


def _redis():
    return current_app.extensions["redis"]


def _settings():
    return current_app.config["SETTINGS"]


def _job_name(job_name: str) -> str:
    try:
        return get_job(job_name).name
    except UnknownJob:
        raise NotFound(f"unknown job {job_name[:50]!r}; known: {', '.join(JOBS)}") from None


def _run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise BadRequest("invalid job id: 1-64 letters, digits, '_' or '-'")
    return run_id


@bp.get("")
@require_read_token
def list_jobs():
    settings = _settings()
    return jsonify(jobs=[
        {"name": spec.name, "task": spec.func, "queue": spec.queue, "cron": spec.cron(settings)}
        for spec in JOBS.values()
    ])


@bp.post("/<job_name>/trigger")
@require_token
def trigger(job_name: str):
    name = _job_name(job_name)
    body = parse_json_body(TriggerBody, request.get_data(cache=False))
    try:
        outcome = runs.enqueue_run(name, redis=_redis(), settings=_settings(), trigger="manual", force=body.force)
    except runs.RunConflict as conflict:
        raise Conflict(str(conflict), active_job_id=conflict.active_id) from None
    payload = {
        "job_id": outcome.run_id,
        "job_name": name,
        "status": outcome.status.value,
        "message": f"{name} job triggered successfully"
        + (f"; it starts when {outcome.waits_for} ends" if outcome.waits_for else ""),
    }
    if outcome.waits_for:
        payload["waits_for"] = outcome.waits_for
    response = jsonify(payload)
    response.status_code = 202
    response.headers["Location"] = url_for("jobs.status", job_name=name, run_id=outcome.run_id)
    return response


@bp.get("/<job_name>/history")
@require_read_token
def history(job_name: str):
    name = _job_name(job_name)
    query = parse_query(HistoryQuery, request.args)
    return jsonify(history_page(name, query))


@bp.get("/<job_name>/<run_id>")
@require_read_token
def status(job_name: str, run_id: str):
    if run_id == "trigger":  # GET on the trigger route lands here: answer as for a wrong method
        raise MethodNotAllowed(valid_methods=["POST"])
    name, run_id = _job_name(job_name), _run_id(run_id)
    body = run_status(name, run_id)
    if body is None:
        raise NotFound(f"no {name} run with id {run_id}")
    return jsonify(body)


@bp.post("/<job_name>/<run_id>/cancel")
@require_token
def cancel(job_name: str, run_id: str):
    name, run_id = _job_name(job_name), _run_id(run_id)
    try:
        new_status = runs.cancel_run(name, run_id, redis=_redis())
    except runs.RunNotFound:
        raise NotFound(f"no {name} run with id {run_id}") from None
    except runs.RunAlreadyEnded as ended:
        raise Conflict(f"run {run_id} already ended", run_status=ended.run.status) from None
    if new_status == runs.RunStatus.STARTED:
        response = jsonify(job_id=run_id, status="stopping", message="stop requested; the worker records 'stopped'")
        response.status_code = 202
        return response
    return jsonify(job_id=run_id, status=new_status.value, message="run canceled")


@bp.get("/stats")
@require_read_token
def stats():
    return jsonify(service_stats(_redis(), _settings()))
