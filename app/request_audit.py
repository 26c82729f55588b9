"""Each mutating HTTP request, recorded in the audit log by the hook of its adapter.

The API (`app.api.audit.init_api_audit`) and the dashboards (`dashboard.init_dashboard`) each
register one after-request hook that calls `audit_response` for every request with a mutating
method that matched a route, whatever the route: a route added later (a retry, an alert
acknowledgement) is audited without remembering to. The action is named from the endpoint
(`ACTIONS` gives the known ones the same name whichever adapter served them; any other is its
endpoint name), the target from the URL's segments, the outcome and reason from the response's
status and JSON error. Refusals (401, 403, 409...) are recorded like successes; nothing secret
is read (no header but X-Request-ID, no body but the JSON error message).

A failure to record is logged and never changes the response: the action has already happened.
"""

from __future__ import annotations

import logging
import re
import uuid

import peewee
from flask import Response, g, request

from app.auth import Principal
from app.core import audit

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# Endpoint -> action: the same action has the same name from the API, the dashboard and the CLI.
ACTIONS = {
    "jobs.trigger": "run.trigger",
    "jobs.cancel": "run.cancel",
    "jobs.retry": "run.retry",
    "schedules.pause": "schedule.pause",
    "schedules.resume": "schedule.resume",
    "schedules.run": "schedule.run",
    "dashboard.pause_schedule": "schedule.pause",
    "dashboard.resume_schedule": "schedule.resume",
    "dashboard.run_schedule": "schedule.run",
    "dashboard.cancel_run": "run.cancel",
    "dashboard.retry_run": "run.retry",
    "jobs.retry_failed": "run.retry_failed",
    "alerts.acknowledge": "alert.acknowledge",
    "alerts.resolve": "alert.resolve",
    "dashboard.acknowledge_alert": "alert.acknowledge",
    "dashboard.resolve_alert": "alert.resolve",
    "rq_dashboard.requeue_job_view": "rq.requeue",
    "rq_dashboard.requeue_all": "rq.requeue_all",
    "rq_dashboard.delete_job_view": "rq.delete",
    "rq_dashboard.empty_queue": "rq.empty_queue",
    "rq_dashboard.compact_queue": "rq.compact_queue",
}

# URL segment -> the kind of thing it names, in the order a target lists them.
TARGET_KINDS = {
    "job_name": "job",
    "name": "schedule",
    "queue_name": "queue",
    "registry_name": "registry",
    "run_id": "run",
    "job_id": "job_id",
    "alert_id": "alert",
}
_NOT_TARGETS = frozenset({"instance_number"})


def request_id() -> str:
    """This request's id: the caller's X-Request-ID when it is a plain token, else a new one."""
    if "request_id" not in g:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
    return g.request_id


def is_action() -> bool:
    """A mutating method on a route that exists (a scanner's POST to nowhere is no action)."""
    return request.method not in SAFE_METHODS and request.url_rule is not None


def action_name(endpoint: str | None) -> str:
    return ACTIONS.get(endpoint or "", endpoint or "unknown")


def target_of(view_args: dict | None) -> str:
    """`kind:value` for each URL segment naming a thing, e.g. "job:forecast run:3f2a..."."""
    args = dict(view_args or {})
    parts = [f"{kind}:{args.pop(name)}" for name, kind in TARGET_KINDS.items() if name in args]
    parts += [f"{name}:{value}" for name, value in sorted(args.items()) if name not in _NOT_TARGETS]
    return " ".join(parts)


def _created_run(response: Response) -> str:
    """The run an accepted action queued (its JSON `job_id`), when it names one the URL did not."""
    if response.status_code >= 300 or not response.is_json:
        return ""
    body = response.get_json(silent=True)
    run = body.get("job_id") if isinstance(body, dict) else None
    if isinstance(run, str) and run not in (request.view_args or {}).values():
        return f"run:{run}"
    return ""


def _reason(response: Response) -> str:
    if response.status_code < 400:
        return ""
    body = response.get_json(silent=True) if response.is_json else None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{response.status_code} {error.get('code', '')}: {error.get('message', '')}".strip()
    return f"{response.status_code} {response.status}"


def audit_response(response: Response, source: audit.Source, principal: Principal | None) -> Response:
    """Record this request's action and outcome (call it only when `is_action()`); never raises."""
    try:
        rid = request_id()
        response.headers.setdefault(REQUEST_ID_HEADER, rid)
        status = response.status_code
        outcome = audit.Outcome.OK if status < 400 else audit.Outcome.REFUSED if status < 500 else audit.Outcome.FAILED
        target = " ".join(p for p in (target_of(request.view_args), _created_run(response)) if p)
        audit.record(
            actor=principal.name if principal else "anonymous",
            role=principal.role.value if principal else "",
            action=action_name(request.endpoint),
            target=target,
            outcome=outcome,
            reason=_reason(response),
            source=source,
            remote_addr=request.remote_addr or "",
            request_id=rid,
        )
    except (peewee.OperationalError, peewee.InterfaceError) as exc:  # the database is down: say so, go on
        log.warning("could not record the audit entry of %s %s: %s", request.method, request.path, type(exc).__name__)
    except Exception:  # the action happened (or was refused) whatever the log can store
        log.exception("could not record the audit entry of %s %s", request.method, request.path)
    return response
