"""`GET /api/audit`: the audit log, newest first, filtered and keyset-paginated; and the API's audit hook.

The log says who did what from where, so reading it always needs a token (read or operate
scope), whatever API_READ_AUTH says. `init_api_audit` registers the API's two hooks: every
mutating request under /api needs the operate scope before any view runs (so a route added
later cannot forget it), and every one of them, allowed or refused, is recorded
(`app.request_audit`).
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Flask, Response, g, jsonify, request
from pydantic import Field, field_validator

from app.api.schemas import PageQuery, as_naive_utc, parse_query
from app.auth import api_principal, check_operate, require_any_token
from app.core import audit
from app.request_audit import audit_response, is_action

bp = Blueprint("audit", __name__, url_prefix="/api/audit")

API_PREFIX = "/api/"
NAME_PATTERN = r"^[A-Za-z0-9_.@+:-]+$"


class AuditQuery(PageQuery):
    actor: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    action: str | None = Field(None, max_length=100, pattern=NAME_PATTERN)
    source: audit.Source | None = None
    since: datetime | None = None
    until: datetime | None = None

    @field_validator("since", "until")
    @classmethod
    def _as_naive_utc(cls, value: datetime | None) -> datetime | None:
        return as_naive_utc(value)

    def filters(self) -> audit.AuditFilters:
        return audit.AuditFilters(
            actor=self.actor, action=self.action, source=self.source, since=self.since, until=self.until
        )


@bp.get("")
@require_any_token
def list_audit():
    query = parse_query(AuditQuery, request.args)
    return jsonify(audit.list_entries(query.filters(), query.cursor, query.limit))


def _is_api_action() -> bool:
    return request.path.startswith(API_PREFIX) and is_action()


def _operate_scope_for_actions() -> None:
    if _is_api_action():
        check_operate()  # raises 401 / 403; the error handlers answer, the audit hook records


def _audit_api_action(response: Response) -> Response:
    if _is_api_action() and "login_retry_after" not in g:  # throttled: refused before any check, not recorded
        return audit_response(response, audit.Source.API, api_principal())
    return response


def init_api_audit(app: Flask) -> None:
    app.register_blueprint(bp)
    app.before_request(_operate_scope_for_actions)
    app.after_request(_audit_api_action)
