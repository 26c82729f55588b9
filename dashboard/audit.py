"""The audit page, `/dashboard/audit`: who did what, when, from where, with filters and paging.

A static skeleton plus one same-origin script (`static/audit.js`) that reads
`/dashboard/audit/data.json` (the same filters and keyset cursor as `GET /api/audit`, parsed by
the API's own query model) and inserts every value as text, never as HTML. Any dashboard user
may read it (viewers too); auth, headers and the strict CSP come from `dashboard.init_dashboard`.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, make_response, render_template, request, url_for

from app.api.audit import AuditQuery
from app.api.schemas import parse_query
from app.core import audit
from dashboard.views import _no_store

bp = Blueprint("dashboard_audit", __name__, url_prefix="/dashboard/audit", template_folder="templates")


@bp.get("")
def page():
    html = render_template(
        "dashboard/audit.html",
        urls={"data": url_for("dashboard_audit.data"), "home": url_for("dashboard.home")},
        sources=[s.value for s in audit.Source],
    )
    return _no_store(make_response(html))


@bp.get("/data.json")
def data():
    query = parse_query(AuditQuery, request.args)
    return _no_store(jsonify(audit.list_entries(query.filters(), query.cursor, query.limit)))
