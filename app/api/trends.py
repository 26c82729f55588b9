"""`GET /api/trends`: per job, runs, failures and p50/p95 durations per bucket over 24 h, 7 d or 30 d.

A thin adapter over `app.core.trends`; the dashboard's trends page draws the same figures.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.auth import require_read_token
from app.core import jobs, trends

bp = Blueprint("trends", __name__, url_prefix="/api/trends")


@bp.get("")
@require_read_token
def job_trends():
    window = trends.trend_window(request.args.get("window"))
    job = request.args.get("job")
    names = None if job is None else [jobs.job_name(job)]
    return jsonify(trends.job_trends(window, names))
