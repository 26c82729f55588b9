"""The API's front door: `/api/` lists what there is, `/api/docs` shows the OpenAPI document.

A newcomer's first request is `/api/` (the start-up banner prints it), so it answers with the
routes and where to read about them instead of a 404. The viewer is Swagger UI, vendored from npm
(`swagger-ui-dist`, Apache-2.0, app/api/static/swagger-ui/): no CDN, so it works offline and its
scripts come from this origin only.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, jsonify, render_template, url_for

bp = Blueprint(
    "api_index", __name__, static_folder="static", static_url_path="/api/static", template_folder="templates"
)

# Swagger UI sets style attributes at run time; scripts stay same-origin only.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def api_routes() -> list[dict[str, object]]:
    """Every `/api/` route of this app with its methods, in path order, written as OpenAPI paths."""
    routes = []
    for rule in current_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint.endswith(".static"):
            continue
        methods = sorted(m for m in (rule.methods or ()) if m in _METHODS)
        routes.append({"path": _CONVERTER.sub(r"{\1}", rule.rule), "methods": methods})
    return sorted(routes, key=lambda route: (str(route["path"]), route["methods"]))


@bp.get("/api/")
def index():
    return jsonify(
        name="forecast job service API",
        links={
            "openapi": url_for("openapi.openapi_document"),
            "docs": url_for("api_index.docs"),
            "health": url_for("health.healthz"),
            "ready": url_for("health.readyz"),
            "dashboard": "/dashboard/",
        },
        auth="Authorization: Bearer <API_TOKEN> (writes always; reads per API_READ_AUTH)",
        routes=api_routes(),
    )


@bp.get("/api/docs")
def docs() -> Response:
    response = Response(render_template("api/docs.html"))
    response.headers["Content-Security-Policy"] = DOCS_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/favicon.ico")
def favicon() -> Response:
    """Every page's icon (browsers ask for it on each load; a 404 there fills the logs)."""
    response = bp.send_static_file("favicon.ico")
    response.cache_control.max_age = 86400
    response.cache_control.public = True
    return response
