"""Alerts raised by the forecast pipeline: listed newest first (filtered, keyset-paginated), one with
its sightings, and the operator's acknowledge and resolve (`app.core.alerts`)."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from app.api.schemas import AlertActionBody, AlertQuery, parse_json_body, parse_query
from app.api.serializers import alert_json
from app.auth import require_read_token, require_token
from app.core import alerts
from app.core.listings import alerts_page

bp = Blueprint("alerts", __name__, url_prefix="/api/alerts")


def actor() -> str:
    """Who acts through the API: the token's name when tokens are named, else "api"."""
    return str(getattr(g, "actor", None) or "api")


@bp.get("")
@require_read_token
def list_alerts():
    query = parse_query(AlertQuery, request.args)
    return jsonify(alerts_page(query))


@bp.get("/<alert_id>")
@require_read_token
def get_alert(alert_id: str):
    alert, sightings = alerts.get_alert(alert_id)
    return jsonify({**alert_json(alert), "sightings": sightings})


@bp.post("/<alert_id>/acknowledge")
@require_token
def acknowledge(alert_id: str):
    body = parse_json_body(AlertActionBody, request.get_data(cache=False))
    return jsonify(alert_json(alerts.acknowledge(alert_id, actor(), body.comment)))


@bp.post("/<alert_id>/resolve")
@require_token
def resolve(alert_id: str):
    body = parse_json_body(AlertActionBody, request.get_data(cache=False))
    return jsonify(alert_json(alerts.resolve(alert_id, actor(), body.comment)))
