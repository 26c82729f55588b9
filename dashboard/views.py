"""The project's own dashboard: the page, its JSON data, run search, and its actions.

The page is a static skeleton plus one same-origin script (`static/dashboard.js`) that fills
it from `/dashboard/data.json` every few seconds. The script inserts data only as text nodes
(never as HTML), and the page has no inline script or style, so the CSP can forbid both.

Auth, same-origin checks on every POST, and the security headers come from
`dashboard.init_dashboard`, which guards every route under /dashboard; the actions here call
the service layer (`app.core`) like the API does and answer JSON like the API, the domain
errors mapped by this blueprint's own table (`DOMAIN_ERRORS`).
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, make_response, render_template, request, url_for
from redis import Redis

from app.config import Settings
from app.connections import db_session
from app.core import jobs, schedules
from app.core.errors import Conflict, InvalidInput, InvalidRunId, NotFound, ServiceError
from app.errors import error_response
from dashboard.data import page_data

log = logging.getLogger(__name__)

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

REFRESH_SECONDS = 5
STALE_SECONDS = 3 * REFRESH_SECONDS  # no successful refresh for this long: the page says its figures are stale

# The dashboard's one table: domain error -> (HTTP status, JSON error code, message or None for
# the error's own). The most specific class wins.
DOMAIN_ERRORS: dict[type[ServiceError], tuple[int, str, str | None]] = {
    InvalidRunId: (400, "bad_request", "invalid run id: 1-64 letters, digits, '_' or '-'"),
    InvalidInput: (400, "bad_request", None),
    NotFound: (404, "not_found", None),
    Conflict: (409, "conflict", None),
}


@bp.errorhandler(ServiceError)
def _domain_error(exc: ServiceError):
    status, code, message = next(DOMAIN_ERRORS[cls] for cls in type(exc).__mro__ if cls in DOMAIN_ERRORS)
    return error_response(status, code, message or exc.message, **exc.details)


def _redis() -> Redis:
    return current_app.extensions["redis"]


def _settings() -> Settings:
    return current_app.config["SETTINGS"]


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
def home():
    """The skeleton; the script reads its URLs from data attributes (no inline script needed)."""
    jobs_url = url_for(
        "rq_dashboard.jobs_overview",
        instance_number=0,
        queue_name="QUEUE",
        registry_name="REGISTRY",
        per_page=20,
        order="asc",
        page=1,
    )
    page = render_template(
        "dashboard/home.html",
        urls={
            "data": url_for("dashboard.data"),
            "search": url_for("dashboard.search_runs"),
            "schedules": url_for("dashboard.home") + "schedules/",
            "runs": url_for("dashboard.home") + "runs/",
            "alerts": url_for("dashboard.home") + "alerts",
            "rq": url_for("rq_dashboard.queues_overview"),
            "rq-workers": url_for("rq_dashboard.workers_overview", instance_number=0),
            "rq-jobs": jobs_url,
            "rq-job": url_for("rq_dashboard.job_view", instance_number=0, job_id="JOB_ID"),
        },
        refresh_seconds=REFRESH_SECONDS,
        stale_seconds=STALE_SECONDS,
    )
    return _no_store(make_response(page))


@bp.get("/data.json")
def data():
    return _no_store(jsonify(page_data(_redis(), _settings())))  # parts without Redis or the database


@bp.post("/schedules/<name>/pause")
def pause_schedule(name: str):
    return _set_paused(name, True)


@bp.post("/schedules/<name>/resume")
def resume_schedule(name: str):
    return _set_paused(name, False)


def _set_paused(name: str, paused: bool):
    name = schedules.schedule_name(name)
    changed = schedules.set_paused(_redis(), name, paused)
    with db_session():
        state = schedules.schedule_state(_redis(), _settings(), name)
    log.info("dashboard: schedule %s %s by %s", name, "paused" if paused else "resumed", request.authorization.username)
    verb = "paused" if paused else "resumed"
    return jsonify(
        **state,
        changed=changed,
        message=f"schedule {name} {verb}" if changed else f"schedule {name} was already {verb}",
    )


@bp.post("/schedules/<name>/run")
def run_schedule(name: str):
    name = schedules.schedule_name(name)
    outcome = schedules.run_now(_redis(), _settings(), name)
    log.info("dashboard: %s run %s queued by %s", name, outcome.run_id, request.authorization.username)
    response = jsonify(job_id=outcome.run_id, job_name=name, status=outcome.status.value, message=f"{name} run queued")
    response.status_code = 202
    return response


@bp.post("/runs/<run_id>/cancel")
def cancel_run(run_id: str):
    """Cancel a queued run or stop a running one (the run's job is looked up by its id)."""
    job_name, outcome = jobs.cancel_by_id(_redis(), run_id)
    log.info(
        "dashboard: %s run %s %s by %s",
        job_name,
        run_id,
        "stop requested" if outcome == jobs.CancelOutcome.STOPPING else "canceled",
        request.authorization.username,
    )
    if outcome == jobs.CancelOutcome.STOPPING:
        response = jsonify(job_id=run_id, status="stopping", message="stop requested; the worker records 'stopped'")
        response.status_code = 202
        return response
    return jsonify(job_id=run_id, status=outcome.value, message="run canceled")


@bp.post("/runs/<run_id>/retry")
def retry_run(run_id: str):
    """Retry an ended, unsuccessful run: a new run linked to it (the failed run keeps its record)."""
    user = request.authorization.username
    outcome = jobs.retry_by_id(_redis(), _settings(), run_id, actor=f"dashboard:{user}")
    log.info("dashboard: run %s retried as run %s by %s", run_id, outcome.run_id, user)
    response = jsonify(
        job_id=outcome.run_id,
        retry_of=outcome.retry_of,
        status=outcome.status.value if outcome.status else None,
        message=f"run {outcome.retry_of} retried as run {outcome.run_id}",
    )
    response.status_code = 202
    return response
