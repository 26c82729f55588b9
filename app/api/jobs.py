"""Job routes: trigger, status, history and cancel for every catalogue job, and stats.

A thin adapter over the service layer (`app.core.jobs`): it parses the request, calls the use
case and shapes the JSON; refusals are domain errors that `app.errors` maps to HTTP answers.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, url_for
from werkzeug.exceptions import MethodNotAllowed

from app.api.schemas import HistoryQuery, TriggerBody, parse_json_body, parse_query
from app.auth import require_read_token, require_token
from app.core import jobs
from app.core.errors import RunMissing
from app.core.run_states import add_retry_states
from app.core.stats import service_stats
from app.listings import history_page, run_status

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")


def _redis():
    return current_app.extensions["redis"]


def _settings():
    return current_app.config["SETTINGS"]


@bp.get("")
@require_read_token
def list_jobs():
    return jsonify(jobs=jobs.list_jobs(_settings()))


@bp.post("/<job_name>/trigger")
@require_token
def trigger(job_name: str):
    name = jobs.job_name(job_name)
    body = parse_json_body(TriggerBody, request.get_data(cache=False))
    outcome = jobs.trigger(_redis(), _settings(), name, force=body.force)
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
    name = jobs.job_name(job_name)
    query = parse_query(HistoryQuery, request.args)
    page = history_page(name, query)
    add_retry_states(_redis(), page["runs"])
    return jsonify(page)


@bp.get("/<job_name>/<run_id>")
@require_read_token
def status(job_name: str, run_id: str):
    if run_id == "trigger":  # GET on the trigger route lands here: answer as for a wrong method
        raise MethodNotAllowed(valid_methods=["POST"])
    name, run_id = jobs.job_name(job_name), jobs.run_id(run_id)
    body = run_status(name, run_id)
    if body is None:
        raise RunMissing(run_id, name)
    add_retry_states(_redis(), [body])  # additive: state_detail, and next_retry_at while waiting for a retry
    return jsonify(body)


@bp.post("/<job_name>/<run_id>/cancel")
@require_token
def cancel(job_name: str, run_id: str):
    outcome = jobs.cancel(_redis(), job_name, run_id)
    if outcome == jobs.CancelOutcome.STOPPING:
        response = jsonify(job_id=run_id, status="stopping", message="stop requested; the worker records 'stopped'")
        response.status_code = 202
        return response
    return jsonify(job_id=run_id, status=outcome.value, message="run canceled")


@bp.get("/stats")
@require_read_token
def stats():
    return jsonify(service_stats(_redis(), _settings()))
