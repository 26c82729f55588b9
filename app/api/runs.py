"""`GET /api/runs`: runs of every job, filtered (job, status, trigger, time range, error text) and
keyset-paged, newest first. The filters are the dashboard run list's (`app.core.run_history`),
so a list an operator shares from the dashboard reads the same through the API.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app.auth import require_read_token
from app.core import run_history

bp = Blueprint("runs", __name__, url_prefix="/api/runs")


@bp.get("")
@require_read_token
def list_runs() -> Response:
    query = run_history.parse_query(request.args.items(multi=True))
    return jsonify(run_history.list_runs(query).as_json())
