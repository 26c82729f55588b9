"""The dashboard's alert pages: a list filtered by state (and severity, type) with paging, a page
per alert with the runs that saw it, and the acknowledge / resolve actions.

Registered on the dashboard blueprint (`dashboard.views.bp`): its auth, same-origin check on
POSTs, CSP and domain-error table apply. The pages are rendered by Jinja (autoescaped); the
actions are JSON POSTs from `static/alerts.js` calling the service layer (`app.core.alerts`), as
the API and the CLI do.
"""

from __future__ import annotations

from flask import jsonify, make_response, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from app.api.schemas import AlertActionBody, AlertQuery, parse_json_body, parse_query
from app.api.serializers import alert_json
from app.connections import db_session
from app.core import alerts
from app.core.listings import alerts_page
from dashboard.views import _no_store, bp

FILTERS = ("state", "severity", "type", "cursor")


def actor() -> str:
    """Who acts on the dashboard: the signed-in user's name."""
    auth = request.authorization
    return f"dashboard:{auth.username}" if auth and auth.username else "dashboard"


@bp.get("/alerts")
def alerts_list():
    args = MultiDict({key: request.args[key] for key in FILTERS if request.args.get(key)})
    query = parse_query(AlertQuery, args)
    with db_session():
        page = alerts_page(query)
    next_url = None
    if page["next_cursor"]:
        next_url = url_for("dashboard.alerts_list", **{**args.to_dict(), "cursor": page["next_cursor"]})
    html = render_template(
        "dashboard/alerts.html",
        alerts=page["alerts"],
        filters=args.to_dict(),
        states=[s.value for s in alerts.AlertState],
        next_url=next_url,
        home_url=url_for("dashboard.home"),
    )
    return _no_store(make_response(html))


@bp.get("/alerts/<alert_id>")
def alert_page(alert_id: str):
    alert, sightings = alerts.get_alert(alert_id)
    html = render_template(
        "dashboard/alert.html",
        alert=alert_json(alert),
        sightings=sightings,
        home_url=url_for("dashboard.home"),
        list_url=url_for("dashboard.alerts_list"),
    )
    return _no_store(make_response(html))


@bp.post("/alerts/<alert_id>/acknowledge")
def acknowledge_alert(alert_id: str):
    body = parse_json_body(AlertActionBody, request.get_data(cache=False))
    alert = alerts.acknowledge(alert_id, actor(), body.comment)
    return jsonify(alert=alert_json(alert), message=f"alert {alert.id} acknowledged")


@bp.post("/alerts/<alert_id>/resolve")
def resolve_alert(alert_id: str):
    body = parse_json_body(AlertActionBody, request.get_data(cache=False))
    alert = alerts.resolve(alert_id, actor(), body.comment)
    return jsonify(alert=alert_json(alert), message=f"alert {alert.id} resolved")
