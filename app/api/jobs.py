"""Job routes: trigger, status, history, cancel, retry and attempts for every catalogue job, and stats.

A thin adapter over the service layer (`app.core.jobs`): it parses the request, calls the use
case and shapes the JSON; refusals are domain errors that `app.errors` maps to HTTP answers.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, current_app, jsonify, request, url_for
from pydantic import Field, field_validator
from werkzeug.exceptions import MethodNotAllowed

from app.api.schemas import HistoryQuery, Strict, TriggerBody, as_naive_utc, parse_json_body, parse_query
from app.api.serializers import run_attempts_json
from app.auth import require_read_token, require_token
from app.core import jobs
from app.core.listings import history_page, run_status
from app.core.run_states import add_retry_states
from app.core.stats import service_stats

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")

# Path segments after a job name that are routes, not run ids (a GET there answers 405).
ACTION_SEGMENTS = {"trigger": "POST", "retry-failed": "POST"}


class RetryFailedQuery(Strict):
    since: datetime = Field(description="retry if a run failed at or after this time (ISO 8601)")

    @field_validator("since")
    @classmethod
    def _as_naive_utc(cls, value: datetime) -> datetime:
        return as_naive_utc(value) or value


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
    if run_id in ACTION_SEGMENTS:  # GET on the trigger route lands here: answer as for a wrong method
        raise MethodNotAllowed(valid_methods=[ACTION_SEGMENTS[run_id]])
    name, run_id = jobs.job_name(job_name), jobs.run_id(run_id)
    body = run_status(name, run_id)
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


@bp.get("/<job_name>/<run_id>/attempts")
@require_read_token
def attempts(job_name: str, run_id: str):
    history = jobs.run_history(job_name, run_id)
    return jsonify(run_attempts_json(history.run, history.attempts, history.retried_by))


def _retried(name: str, outcome: jobs.RetryOutcome):
    if outcome.run_id is None:
        return jsonify(job_id=None, job_name=name, retry_of=None, covers=[], created=False, message="no failed run")
    payload = {
        "job_id": outcome.run_id,
        "job_name": name,
        "retry_of": outcome.retry_of,
        "status": outcome.status.value if outcome.status else None,
        "covers": outcome.covers,
        "created": outcome.created,
        "retries": outcome.retries or ([outcome.run_id] if outcome.created else []),
        "message": (
            f"{len(outcome.retries)} failed runs retried, each as a new run; the last is run {outcome.run_id}"
            if len(outcome.retries) > 1
            else f"run {outcome.retry_of} retried as run {outcome.run_id}"
            + (f"; it starts when {outcome.waits_for} ends" if outcome.waits_for else "")
            if outcome.created
            else f"run {outcome.retry_of} was retried already: run {outcome.run_id}"
        ),
    }
    if outcome.waits_for:
        payload["waits_for"] = outcome.waits_for
    response = jsonify(payload)
    response.headers["Location"] = url_for("jobs.status", job_name=name, run_id=outcome.run_id)
    response.status_code = 202 if outcome.created else 200
    return response


@bp.post("/<job_name>/<run_id>/retry")
@require_token
def retry(job_name: str, run_id: str):
    name, run_id = jobs.job_name(job_name), jobs.run_id(run_id)
    body = parse_json_body(TriggerBody, request.get_data(cache=False))
    return _retried(name, jobs.retry(_redis(), _settings(), name, run_id, force=body.force, actor="api"))


@bp.post("/<job_name>/retry-failed")
@require_token
def retry_failed(job_name: str):
    name = jobs.job_name(job_name)
    query = parse_query(RetryFailedQuery, request.args)
    body = parse_json_body(TriggerBody, request.get_data(cache=False))
    outcome = jobs.retry_failed(_redis(), _settings(), name, query.since, force=body.force, actor="api")
    return _retried(name, outcome)


@bp.get("/stats")
@require_read_token
def stats():
    return jsonify(service_stats(_redis(), _settings()))
