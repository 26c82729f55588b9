"""The project's own dashboard: the page, its JSON data, run search, and its actions.

The page is a static skeleton plus one same-origin script (`static/dashboard.js`) that fills
it from `/dashboard/data.json` every few seconds. The script inserts data only as text nodes
(never as HTML), and the page has no inline script or style, so the CSP can forbid both.

Auth, same-origin checks on every POST, and the security headers come from
`dashboard.init_dashboard`, which guards every route under /dashboard; the actions here reuse
the API's own logic (`app.runs`, `app.api.schedules`) and answer JSON like the API.
"""
from __future__ import annotations

import logging
import re

from flask import Blueprint, Response, current_app, jsonify, make_response, render_template, request, url_for
from redis import Redis

from app import runs
from app.api.schedules import run_now, schedule_name, schedule_state, set_paused
from app.api.schemas import RUN_ID_PATTERN
from app.config import Settings
from app.connections import db_session
from app.errors import BadRequest, Conflict, NotFound
from app.models import JobRun
from dashboard.data import dashboard_data, find_runs

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates",
               static_folder="static", static_url_path="/static")

_RUN_ID = re.compile(RUN_ID_PATTERN)
REFRESH_SECONDS = 5


def _redis() -> Redis:
    return current_app.extensions["redis"]


def _settings() -> Settings:
    return current_app.config["SETTINGS"]


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _run_id(value: str) -> str:
    if not _RUN_ID.match(value):
        raise BadRequest("invalid run id: 1-64 letters, digits, '_' or '-'")
    return value


@bp.get("/")
def home():
    """The skeleton; the script reads its URLs from data attributes (no inline script needed)."""
    jobs_url = url_for("rq_dashboard.jobs_overview", instance_number=0, queue_name="QUEUE", registry_name="REGISTRY",
                       per_page=20, order="asc", page=1)
    page = render_template(
        "dashboard/home.html",
        urls={
            "data": url_for("dashboard.data"),
            "search": url_for("dashboard.search_runs"),
            "schedules": url_for("dashboard.home") + "schedules/",
            "runs": url_for("dashboard.home") + "runs/",
            "rq": url_for("rq_dashboard.queues_overview"),
            "rq-workers": url_for("rq_dashboard.workers_overview", instance_number=0),
            "rq-jobs": jobs_url,
            "rq-job": url_for("rq_dashboard.job_view", instance_number=0, job_id="JOB_ID"),
        },
        refresh_seconds=REFRESH_SECONDS,
    )
    return _no_store(make_response(page))


@bp.get("/data.json")
def data():
    with db_session():
        return _no_store(jsonify(dashboard_data(_redis(), _settings())))


@bp.get("/runs")
def search_runs():
    query = request.args.get("q", "").strip()
    if not query:
        raise BadRequest("give a run id (or its first characters) as ?q=")
    _run_id(query)
    with db_session():
        return _no_store(jsonify(runs=find_runs(_redis(), query)))


@bp.post("/schedules/<name>/pause")
def pause_schedule(name: str):
    return _set_paused(name, True)


@bp.post("/schedules/<name>/resume")
def resume_schedule(name: str):
    return _set_paused(name, False)


def _set_paused(name: str, paused: bool):
    name = schedule_name(name)
    changed = set_paused(_redis(), name, paused)
    with db_session():
        state = schedule_state(_redis(), _settings(), name)
    log.info("dashboard: schedule %s %s by %s", name, "paused" if paused else "resumed", request.authorization.username)
    verb = "paused" if paused else "resumed"
    return jsonify(**state, changed=changed,
                   message=f"schedule {name} {verb}" if changed else f"schedule {name} was already {verb}")


@bp.post("/schedules/<name>/run")
def run_schedule(name: str):
    name = schedule_name(name)
    outcome = run_now(_redis(), _settings(), name)
    log.info("dashboard: %s run %s queued by %s", name, outcome.run_id, request.authorization.username)
    response = jsonify(job_id=outcome.run_id, job_name=name, status=outcome.status.value,
                       message=f"{name} run queued")
    response.status_code = 202
    return response


@bp.post("/runs/<run_id>/cancel")
def cancel_run(run_id: str):
    """Cancel a queued run or stop a running one (the run's job is looked up by its id)."""
    run_id = _run_id(run_id)
    with db_session():
        run = JobRun.get_or_none(JobRun.id == run_id)
    if run is None:
        raise NotFound(f"no run with id {run_id}")
    try:
        status = runs.cancel_run(run.job_name, run_id, redis=_redis())
    except runs.RunNotFound:
        raise NotFound(f"no run with id {run_id}") from None
    except runs.RunAlreadyEnded as ended:
        raise Conflict(f"run {run_id} already ended", run_status=ended.run.status) from None
    log.info("dashboard: %s run %s %s by %s", run.job_name, run_id,
             "stop requested" if status == runs.RunStatus.STARTED else "canceled", request.authorization.username)
    if status == runs.RunStatus.STARTED:
        response = jsonify(job_id=run_id, status="stopping", message="stop requested; the worker records 'stopped'")
        response.status_code = 202
        return response
    return jsonify(job_id=run_id, status=status.value, message="run canceled")
