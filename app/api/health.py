"""Liveness and readiness probes, and the health summary (what is wrong now, one line per problem)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from app.auth import require_read_token
from app.connections import database, db_session
from app.core import ops_events
from app.core.health import health_summary
from app.errors import BadRequest

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready when both Redis and the database answer; 503 names what is down."""
    checks = {}
    try:
        current_app.extensions["redis"].ping()
        checks["redis"] = "ok"
    except Exception as exc:  # any failure means not ready
        checks["redis"] = f"down: {type(exc).__name__}"
    try:
        database.execute_sql("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    response = jsonify(status="ready" if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    return response


@bp.get("/api/health/summary")
@require_read_token
def summary():
    """Always 200 (it reports outages instead of failing with them): `ok`, `checks` and `problems`."""
    return jsonify(health_summary(current_app.extensions["redis"], current_app.config["SETTINGS"]))


@bp.get("/api/health/events")
@require_read_token
def events():
    """The newest operational events (failed, stopped or abandoned runs, overdue slots, lost workers)
    with the state of their webhook deliveries; `kind` and `limit` (1-200, default 50)."""
    kind = request.args.get("kind") or None
    if kind is not None and kind not in {k.value for k in ops_events.EventKind}:
        raise BadRequest(f"kind must be one of: {', '.join(k.value for k in ops_events.EventKind)}")
    raw_limit = request.args.get("limit", "50")
    if not (raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) <= 3 and 1 <= int(raw_limit) <= 200):
        raise BadRequest("limit must be an integer from 1 to 200")
    with db_session():
        return jsonify(events=ops_events.list_events(int(raw_limit), kind))
