"""The run pages: one page per run (`/dashboard/runs/<id>`, a URL an operator can share) and the
run list with filters and keyset paging (`/dashboard/runs?job=…&status=…`, URL-driven).

Both are rendered on the server from the service layer's read use case
(`app.core.run_history`); Jinja escapes every value (job errors and tracebacks are data, not
markup), and `static/runs.js` only adds the actions, their feedback next to the control, and
the live refresh of an active run (it re-reads this same page). The views sit on the
dashboard's blueprint, so its Basic auth, same-origin check, CSP and no-store rules apply.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Response, current_app, jsonify, make_response, render_template, request, url_for
from markupsafe import Markup
from redis import Redis

from app.connections import db_session
from app.core import jobs, run_history
from app.core.catalog import JOBS
from app.errors import BadRequest
from dashboard.data import find_runs
from dashboard.views import _no_store, bp

STATUSES = ["queued", "scheduled", "started", "finished", "failed", "canceled", "stopped", "skipped"]
TRIGGERS = ["scheduled", "manual", "retry"]
LIST_LIMIT = 50


def _redis() -> Redis:
    connection: Redis = current_app.extensions["redis"]
    return connection


def _page(html: str) -> Response:
    response = make_response(html)
    response.headers["Cache-Control"] = "no-store"
    return response


def run_url(run_id: str) -> str:
    return url_for("dashboard.run_page", run_id=run_id)


def list_url(params: dict[str, str]) -> str:
    base = url_for("dashboard.search_runs")
    return f"{base}?{urlencode(params)}" if params else base


def fmt_time(value: str | None) -> str:
    """An ISO 8601 UTC time as the pages show it: `2026-11-30 01:02:03 UTC`."""
    if not value:
        return "–"
    return value[:19].replace("T", " ") + " UTC"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {round(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {round((seconds % 3600) / 60)} m"


def _input_time(value: datetime | None) -> str:
    """A filter time as a datetime-local input shows it (UTC, to the minute or second)."""
    if value is None:
        return ""
    return value.isoformat(timespec="seconds" if value.second else "minutes")


@bp.app_template_filter("run_time")
def _run_time(value: str | None) -> Markup:
    """A time as the page first shows it (UTC); clock.js rewrites it in the reader's zone."""
    if not value:
        return Markup("–")
    return Markup('<time datetime="{}" data-clock="seconds">{}</time>').format(value, fmt_time(value))


@bp.app_template_filter("run_duration")
def _run_duration(value: float | None) -> str:
    return fmt_duration(value)


@bp.get("/runs/<run_id>")
def run_page(run_id: str) -> Response:
    """One run: status, trigger, times, attempts with tracebacks, result, alerts, chunks, actions."""
    detail = run_history.run_detail(run_id, _redis())
    run = detail["run"]
    page = render_template(
        "dashboard/run.html",
        detail=detail,
        run=run,
        result_text=json.dumps(run["result"], indent=2, ensure_ascii=False, sort_keys=True),
        urls={
            "self": run_url(run["job_id"]),
            "cancel": url_for("dashboard.cancel_run", run_id=run["job_id"]),
            "retry": url_for("dashboard.retry_run", run_id=run["job_id"]),
            "home": url_for("dashboard.home"),
            "list": list_url({"job": run["job_name"]}),
        },
        run_url=run_url,
    )
    return _page(page)


@bp.get("/runs")
def search_runs() -> Response:
    """`?q=`: find runs by id or prefix (JSON, the home page's search); without `q`: the run list page."""
    if "q" not in request.args:
        return run_list()
    query = request.args.get("q", "").strip()
    if not query:
        raise BadRequest("give a run id (or its first characters) as ?q=")
    jobs.run_id(query)
    with db_session():
        return _no_store(jsonify(runs=find_runs(_redis(), query)))


def run_list() -> Response:
    """The run list (`/dashboard/runs` without `?q=`): filters and page from the query string."""
    query = run_history.parse_query(request.args.items(multi=True))
    if "limit" not in request.args:
        query = query.model_copy(update={"limit": LIST_LIMIT})
    page = run_history.list_runs(query, error_preview=run_history.ERROR_PREVIEW)
    filters = query.filters()
    keep: dict[str, Any] = dict(filters)
    if "limit" in request.args:
        keep["limit"] = str(query.limit)
    html = render_template(
        "dashboard/runs.html",
        page=page,
        query=query,
        filters=filters,
        form={
            "job": query.job or "",
            "status": query.status or "",
            "trigger": query.trigger or "",
            "since": _input_time(query.since),
            "until": _input_time(query.until),
            "error": query.error or "",
        },
        jobs=list(JOBS),
        statuses=STATUSES,
        triggers=TRIGGERS,
        first_url=list_url(keep) if query.cursor else None,
        next_url=list_url({**keep, "cursor": page.next_cursor}) if page.next_cursor else None,
        clear_url=list_url({}),
        home_url=url_for("dashboard.home"),
        run_url=run_url,
    )
    return _page(html)
