"""rq-dashboard behind Basic auth, plus the project's own monitoring page (`dashboard.views`).

rq-dashboard's blueprint has no auth, no CSRF protection, a requeue route that answers GET,
Underscore templates that insert job data unescaped (rq-dashboard issue 526), inline scripts
built from request values, and routes that trust their path segments. Its blueprint is a
module-level object shared by every app in the process and may not get new hooks once
registered, so everything here is attached to the app and keyed on the path: every route
under /dashboard (both blueprints, static files, 404s) goes through `_guard` and
`_security_headers`. `dashboard.rq_pages` rebuilds rq-dashboard's pages without executable
inline script (their scripts are fixed files compiled at start-up); `dashboard.rq_guard`
answers 404 for any rq-dashboard URL whose segments name no real queue, registry, page or job,
before the view runs. The CSP is therefore a constant per page kind, fixed at start-up: it
never trusts anything in a response body.

Roles: every request names a dashboard user (`app.auth.dashboard_principal`); a `viewer` gets
403 on any mutating request under /dashboard (the project's actions, rq-dashboard's requeue,
delete, empty and compact, and any action added later), and pages get the role as
`dashboard_role` so they show no action controls to a viewer. Every mutating request, allowed
or refused, is recorded in the audit log by `_audit` (`app.request_audit`).
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import rq_dashboard
import rq_dashboard.web
from flask import Flask, Response, current_app, g, has_request_context, request

from app.auth import dashboard_principal
from app.connections import redis_client_url
from app.core.audit import Source
from app.errors import error_response
from app.request_audit import audit_response, is_action
from dashboard import alerts, rq_guard, rq_pages, runs, trends, views  # noqa: F401 - alerts, runs and trends register their routes on views.bp
from dashboard import audit as audit_views

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
RQ_PREFIX = "/dashboard/rq"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# rq-dashboard endpoints that change state: POST only (`requeue_all` also answers GET upstream).
RQ_ACTIONS = frozenset(
    {
        "rq_dashboard.requeue_all",
        "rq_dashboard.requeue_job_view",
        "rq_dashboard.delete_job_view",
        "rq_dashboard.empty_queue",
        "rq_dashboard.compact_queue",
    }
)

# rq-dashboard opens its own client per request from this URL; without these it has no timeouts.
RQ_CLIENT_OPTIONS = {"socket_connect_timeout": "5", "socket_timeout": "30"}

# Scripts only from files ('self'): neither dashboard has an executable inline script.
# Underscore's _.template compiles rq-dashboard's (static, escaping) row templates with
# `new Function`, so rq-dashboard's pages add 'unsafe-eval'; never 'unsafe-inline' nor a hash,
# so injected markup or script text cannot run. rq-dashboard uses inline style attributes.
CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def init_dashboard(app: Flask) -> None:
    """Mount both dashboards under /dashboard and guard them; safe to call for many apps."""
    settings = app.config["SETTINGS"]
    if not (settings.dashboard_username and settings.dashboard_password) and not settings.dashboard_users:
        log.warning(
            "neither DASHBOARD_USERS nor DASHBOARD_USERNAME/DASHBOARD_PASSWORD set: /dashboard refuses every request"
        )

    # A tuple: rq-dashboard indexes it by the URL's instance number.
    app.config["RQ_DASHBOARD_REDIS_URL"] = (rq_client_url(redis_client_url(settings)),)
    # Sets app.redis_conn, used by the action routes that carry no instance number;
    # the view and data routes replace it with a fresh client on every request.
    rq_dashboard.web.setup_rq_connection(app)

    app.register_blueprint(views.bp)
    app.register_blueprint(audit_views.bp)
    app.register_blueprint(rq_pages.blueprint)  # before rq-dashboard's: its templates win
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=RQ_PREFIX)
    rq_guard.replace_views(app)
    app.before_request(_guard)
    app.after_request(_security_headers)
    app.after_request(_audit)
    app.context_processor(_role_context)


def rq_client_url(redis_url: str) -> str:
    """The app's Redis URL with client timeouts added as query options (redis-py reads them)."""
    parts = urlsplit(redis_url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    for key, value in RQ_CLIENT_OPTIONS.items():
        query.setdefault(key, value)
    return urlunsplit(parts._replace(query=urlencode(query)))


def is_dashboard_request() -> bool:
    """By path and by matched rule, so odd spellings of a dashboard URL are guarded too."""
    path = request.path
    rule = request.url_rule.rule if request.url_rule is not None else ""
    return any(p == PREFIX or p.startswith(PREFIX + "/") for p in (path, rule))


def _guard() -> Response | None:
    if not is_dashboard_request():
        return None
    principal = dashboard_principal()
    if principal is None:
        return _too_many_attempts() if "login_retry_after" in g else _unauthorized()
    if request.endpoint in RQ_ACTIONS and request.method != "POST":
        response = error_response(405, "method_not_allowed", "This action only accepts POST.")
        response.headers["Allow"] = "POST"
        return response
    if request.method not in SAFE_METHODS and not same_origin():
        log.warning("refused cross-origin %s %s", request.method, request.path)
        return error_response(403, "cross_origin_refused", "Cross-origin requests to the dashboard are refused.")
    if request.method not in SAFE_METHODS and not principal.can_operate:
        return error_response(
            403, "forbidden", f"{principal.name} has the {principal.role.value} role: actions need the operator role."
        )
    instance = (request.view_args or {}).get("instance_number")
    if instance is not None and instance >= len(current_app.config["RQ_DASHBOARD_REDIS_URL"]):
        return error_response(404, "not_found", "No such Redis instance.")  # upstream raises LookupError: 500
    if request.blueprint == rq_dashboard.blueprint.name:
        return rq_guard.check_rq_request()
    return None


def _audit(response: Response) -> Response:
    """Every mutating dashboard request that matched a route, allowed or refused, into the audit log."""
    if not (is_dashboard_request() and is_action()) or "login_retry_after" in g:
        return response  # a refusal before any credential was checked names no one: not recorded
    source = Source.RQ_DASHBOARD if request.blueprint == rq_dashboard.blueprint.name else Source.DASHBOARD
    return audit_response(response, source, dashboard_principal())


def _role_context() -> dict:
    """`dashboard_role` for the templates: "viewer" pages show no action controls."""
    if not has_request_context() or not is_dashboard_request():
        return {}
    principal = dashboard_principal()
    return {
        "dashboard_role": principal.role.value if principal else "",
        "dashboard_user": principal.name if principal else "",
    }


def _unauthorized() -> Response:
    response = error_response(401, "unauthorized", "Dashboard credentials required.")
    response.headers["WWW-Authenticate"] = 'Basic realm="dashboard"'
    return response


def _too_many_attempts() -> Response:
    seconds = g.login_retry_after
    response = error_response(
        429, "too_many_login_attempts", f"Too many login attempts on this server; retry in {seconds} s."
    )
    response.headers["Retry-After"] = str(seconds)
    return response


def _origin_key(url: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def same_origin() -> bool:
    """Origin, or Referer when the browser sent no Origin, must be this request's scheme+host.

    Behind a TLS-terminating proxy the app must see the client's scheme and host
    (e.g. werkzeug's ProxyFix), or every same-origin POST is refused.
    """
    source = request.headers.get("Origin") if "Origin" in request.headers else request.headers.get("Referer")
    if not source:
        return False
    given = _origin_key(source)
    return given is not None and given == _origin_key(request.host_url)


def _security_headers(response: Response) -> Response:
    if not is_dashboard_request():
        return response
    response.headers["Content-Security-Policy"] = content_security_policy(response)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def content_security_policy(response: Response) -> str:
    """Fixed per page kind; the response body is never read (nothing in it is trusted)."""
    policy = dict(CSP)
    if request.blueprint == rq_dashboard.blueprint.name:
        policy["script-src"] = "'self' 'unsafe-eval'"
    if request.blueprint in (views.bp.name, audit_views.bp.name):
        policy["style-src"] = "'self'"  # the project's page has no inline styles at all
    return "; ".join(f"{name} {value}" for name, value in policy.items())
