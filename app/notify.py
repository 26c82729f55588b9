"""Slack-compatible webhook messages: the daily report, new high-severity alerts, operational alerts.

Posting uses the standard library (one JSON POST needs no HTTP client dependency). A
webhook URL is a secret (Slack's carries its token in the path), so only its scheme and
host ever reach a log line or an exception message. Each delivery's outcome is stored with what
it delivered (`alerts.notification`, `daily_summaries.delivery`), so the pages that show an alert
or a report say whether its webhook got it.
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable
from urllib.parse import urlsplit

from app.config import Settings
from app.connections import db_session
from app.models import Alert, iso, utcnow

log = logging.getLogger(__name__)

USER_AGENT = "forecast-service-webhook/1"
MAX_ALERTS_LISTED = 20  # Slack allows 50 blocks a message; the rest are counted, not listed


class NotifyError(Exception):
    """A webhook did not accept the message (error status, timeout, unreachable)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: urllib would re-send the POST as a GET without its body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def safe_target(url: str) -> str:
    """`scheme://host[:port]` of a webhook URL: what logs may show of it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


def post_json(url: str, payload: dict, timeout: float) -> int:
    """POST `payload` as JSON; return the 2xx status or raise NotifyError (no secrets in it)."""
    target = safe_target(url)
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
    )
    try:
        with _opener.open(request, timeout=timeout) as response:  # http(s) only: checked by the settings
            response.read(1024)
            return response.status
    except urllib.error.HTTPError as exc:
        raise NotifyError(f"webhook {target} answered HTTP {exc.code}") from None
    except (TimeoutError, socket.timeout):
        raise NotifyError(f"webhook {target} timed out after {timeout:g}s") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise NotifyError(f"webhook {target} timed out after {timeout:g}s") from None
        raise NotifyError(f"webhook {target} unreachable: {type(reason).__name__}") from None
    except OSError as exc:  # connection reset mid-response and the like
        raise NotifyError(f"webhook {target} failed: {type(exc).__name__}") from None


def _escape(text: object) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _counts(mapping: dict[str, int]) -> str:
    return ", ".join(f"{_escape(k)} {v}" for k, v in sorted(mapping.items())) or "none"


def summary_message(report: dict, job_id: str | None = None) -> dict:
    """The daily report as a Slack message: `text` for notifications, `blocks` for the layout."""
    alerts = report.get("alerts", {})
    severity = alerts.get("by_severity", {})
    runs = report.get("runs", {})
    run_lines = [f"*{_escape(job)}*: {_counts(statuses)}" for job, statuses in sorted(runs.items())]
    text = (
        f"Forecast service daily report {report.get('date')}: {alerts.get('total', 0)} alerts "
        f"(high {severity.get('high', 0)}, medium {severity.get('medium', 0)}, low {severity.get('low', 0)})"
    )
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Daily report {report.get('date')} (UTC)"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Alerts*\n{alerts.get('total', 0)}"},
                {"type": "mrkdwn", "text": f"*By severity*\n{_counts(severity)}"},
                {"type": "mrkdwn", "text": f"*By type*\n{_counts(alerts.get('by_type', {}))}"},
                {"type": "mrkdwn", "text": f"*By source*\n{_counts(alerts.get('by_source', {}))}"},
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Runs*\n" + ("\n".join(run_lines) or "none")}},
    ]
    if job_id:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"run {_escape(job_id)}"}]})
    return {"text": text, "blocks": blocks}


def alerts_message(alerts: list) -> dict:
    """New high-severity alerts (Alert rows) as one Slack message."""
    listed = alerts[:MAX_ALERTS_LISTED]
    text = (
        f"{len(alerts)} new high-severity alert{'s' if len(alerts) != 1 else ''}: "
        + "; ".join(f"{a.type} {a.subject}" for a in listed[:5])
        + ("; …" if len(alerts) > 5 else "")
    )
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{len(alerts)} new high-severity alert(s)"}}
    ]
    for alert in listed:
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": (
                        f"*{_escape(alert.title)}*\n{_escape(alert.message)}\n"
                        f"`{_escape(alert.type)}` · {_escape(alert.subject)} · alert {alert.id} · run {_escape(alert.job_id or '-')}"
                    ),
                },
            }
        )
    if len(alerts) > len(listed):
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"and {len(alerts) - len(listed)} more: see /api/alerts?severity=high"}
                ],
            }
        )
    return {"text": text, "blocks": blocks}


def send_daily_report(settings: Settings, report: dict, job_id: str | None = None) -> bool:
    """Post the report when SUMMARY_WEBHOOK_URL is set; failures raise (the job's retry policy applies)."""
    if not settings.summary_webhook_url:
        return False
    status = post_json(settings.summary_webhook_url, summary_message(report, job_id), settings.webhook_timeout)
    log.info(
        "daily report %s posted to %s (HTTP %d)", report.get("date"), safe_target(settings.summary_webhook_url), status
    )
    return True


def notify_high_alerts(settings: Settings, alerts: Iterable) -> bool:
    """Post new high-severity alerts when ALERT_WEBHOOK_URL is set; failures are logged, never raised.

    The alerts are already committed: a lost notification must not fail (and re-run) the job.
    """
    high = [a for a in alerts if a.severity == "high"]
    if not settings.alert_webhook_url or not high:
        return False
    try:
        post_json(settings.alert_webhook_url, alerts_message(high), settings.webhook_timeout)
    except NotifyError as exc:
        log.warning("high-severity alert notification not delivered (%d alerts): %s", len(high), exc)
        _record_alert_delivery(high, "failed", str(exc))
        return False
    except Exception as exc:  # a bug here must not fail a run whose alerts are stored
        log.exception("high-severity alert notification failed")
        _record_alert_delivery(high, "failed", type(exc).__name__)
        return False
    log.info("%d high-severity alert(s) posted to %s", len(high), safe_target(settings.alert_webhook_url))
    _record_alert_delivery(high, "delivered", None)
    return True


def delivery_state(state: str, error: str | None, **extra: object) -> dict:
    """What is stored of one webhook delivery (shown where the alert or report is shown)."""
    return {"state": state, "at": iso(utcnow()), "error": error, **extra}


def _record_alert_delivery(alerts: list, state: str, error: str | None) -> None:
    """Store the delivery state on each alert; a failure to store it is logged, never raised."""
    try:
        with db_session():
            Alert.update(notification=delivery_state(state, error)).where(
                Alert.id.in_([a.id for a in alerts])
            ).execute()
    except Exception:
        log.warning("could not record the alert webhook's delivery state", exc_info=True)


OPS_TITLES = {
    "run_failed": "Run failed for good",
    "run_stopped": "Run stopped",
    "run_abandoned": "Run abandoned",
    "schedule_overdue": "Schedule overdue",
    "worker_lost": "Worker lost",
}


def ops_message(event: dict) -> dict:
    """An operational event (`app.core.ops_events.event_json`) as a Slack message plus structured fields.

    Slack reads `text` and `blocks` and ignores the rest; other receivers read `event`, which
    carries the kind, subject, run and job, and the details as plain JSON.
    """
    title = OPS_TITLES.get(event.get("kind", ""), str(event.get("kind")))
    text = f"[forecast service] {title}: {event.get('message')}"
    context = " · ".join(
        f"{label} {_escape(event[key])}"
        for key, label in (("job_name", "job"), ("run_id", "run"), ("created_at", "at"))
        if event.get(key)
    )
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(event.get("message", ""))}},
    ]
    if context:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": text, "blocks": blocks, "event": event}
