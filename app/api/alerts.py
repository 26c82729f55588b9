"""Alerts raised by the forecast pipeline, newest first, filtered and keyset-paginated."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.api.schemas import AlertQuery, parse_query
from app.api.serializers import alert_json
from app.auth import require_read_token
from app.models import Alert
from app.pagination import keyset_page

bp = Blueprint("alerts", __name__, url_prefix="/api/alerts")


@bp.get("")
@require_read_token
def list_alerts():
    query = parse_query(AlertQuery, request.args)
    select = Alert.select()
    for column in ("source", "severity", "type"):
        value = getattr(query, column)
        if value:
            select = select.where(getattr(Alert, column) == value)
    if query.since:
        select = select.where(Alert.created_at >= query.since)
    rows, next_cursor = keyset_page(select, Alert.created_at, Alert.id, query.cursor, query.limit, int)
    return jsonify(alerts=[alert_json(a) for a in rows], next_cursor=next_cursor)
