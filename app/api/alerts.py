"""Alerts raised by the forecast pipeline, newest first, filtered and keyset-paginated."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.api.schemas import AlertQuery, parse_query
from app.auth import require_read_token
from app.core.listings import alerts_page

bp = Blueprint("alerts", __name__, url_prefix="/api/alerts")


@bp.get("")
@require_read_token
def list_alerts():
    query = parse_query(AlertQuery, request.args)
    return jsonify(alerts_page(query))
