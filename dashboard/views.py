"""The project's own dashboard page: queue counts and workers at a glance.

Server-rendered with Jinja autoescaping and no JavaScript, so job descriptions (which
carry user-supplied arguments) can never run as code. Auth, CSRF and security headers
come from `dashboard.init_dashboard`, which guards every route under /dashboard.
"""
from __future__ import annotations

import logging
from datetime import datetime

from flask import Blueprint, current_app, make_response, render_template, url_for
from redis import Redis
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from workers.catalog import QUEUES

log = logging.getLogger(__name__)

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates")


def queue_counts(name: str, redis: Redis) -> dict:
    """Counts read without registry cleanup: a GET must not move jobs between registries."""
    return {
        "name": name,
        "queued": Queue(name, connection=redis).count,
        "started": StartedJobRegistry(name, connection=redis).get_job_count(cleanup=False),
        "scheduled": ScheduledJobRegistry(name, connection=redis).get_job_count(cleanup=False),
        "failed": FailedJobRegistry(name, connection=redis).get_job_count(cleanup=False),
    }


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def worker_row(worker: Worker) -> dict:
    """One worker; its current job may have expired from Redis since the worker took it."""
    job_id = worker.get_current_job_id()
    description = None
    if job_id:
        try:
            description = worker.get_current_job().description
        except NoSuchJobError:
            description = "(job record expired)"
    return {
        "name": worker.name,
        "state": str(worker.get_state()),
        "queues": ", ".join(worker.queue_names()),
        "job_id": job_id,
        "job_description": description,
        "last_heartbeat": _iso(worker.last_heartbeat),
    }


@bp.get("/")
def home():
    redis = current_app.extensions["redis"]
    workers = sorted(Worker.all(connection=redis), key=lambda w: w.name)
    response = make_response(
        render_template(
            "dashboard/home.html",
            queues=[queue_counts(name, redis) for name in QUEUES],
            workers=[worker_row(w) for w in workers],
            rq_dashboard_url=url_for("rq_dashboard.queues_overview"),
        )
    )
    response.headers["Cache-Control"] = "no-store"
    return response
