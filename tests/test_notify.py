"""Webhook posting against a real local HTTP server: success, 500, timeout, connection refused."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from app import notify
from app.config import Settings
from tests.servers import free_port

SECRET_PATH = "/services/T000/B000/s3cr3t-webhook-token"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping (timeout tests) must not hold up teardown


@dataclass
class WebhookServer:
    """A real HTTP server in a thread; `status` and `delay` set how it answers the next POSTs."""

    status: int = 200
    delay: float = 0.0
    received: list[dict] = field(default_factory=list)

    def __post_init__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if server.delay:
                    time.sleep(server.delay)
                self.send_response(server.status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if server.status < 300 else b"error")

            def log_message(self, *args):
                pass

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}{SECRET_PATH}"

    def messages(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.received]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def webhook():
    server = WebhookServer()
    yield server
    server.close()


def refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}{SECRET_PATH}"


REPORT = {
    "date": "2024-05-01",
    "alerts": {
        "total": 3,
        "by_type": {"capacity_warning": 1, "demand_spike": 2},
        "by_severity": {"high": 1, "medium": 2},
        "by_source": {"scheduled_job": 3},
    },
    "runs": {"forecast": {"finished": 11, "failed": 1}, "daily-summary": {"finished": 1}},
}


def test_post_json_delivers_a_json_body(webhook):
    assert notify.post_json(webhook.url, {"text": "hello"}, timeout=5) == 200
    (request,) = webhook.received
    assert request["path"] == SECRET_PATH
    assert request["headers"]["Content-Type"].startswith("application/json")
    assert json.loads(request["body"]) == {"text": "hello"}


def test_error_status_raises_without_the_secret(webhook):
    webhook.status = 500
    with pytest.raises(notify.NotifyError, match="HTTP 500") as caught:
        notify.post_json(webhook.url, {"text": "x"}, timeout=5)
    assert "s3cr3t" not in str(caught.value) and "127.0.0.1" in str(caught.value)


def test_redirect_is_an_error_not_a_silent_get(webhook):
    webhook.status = 302
    with pytest.raises(notify.NotifyError, match="HTTP 302"):
        notify.post_json(webhook.url, {"text": "x"}, timeout=5)
    assert len(webhook.received) == 1


def test_timeout_raises(webhook):
    webhook.delay = 2.0
    began = time.monotonic()
    with pytest.raises(notify.NotifyError, match="timed out") as caught:
        notify.post_json(webhook.url, {"text": "x"}, timeout=0.3)
    assert time.monotonic() - began < 1.8
    assert "s3cr3t" not in str(caught.value)


def test_connection_refused_raises():
    with pytest.raises(notify.NotifyError, match="unreachable") as caught:
        notify.post_json(refused_url(), {"text": "x"}, timeout=2)
    assert "s3cr3t" not in str(caught.value)


def test_summary_message_is_slack_compatible():
    message = notify.summary_message({**REPORT, "alerts": {**REPORT["alerts"], "by_type": {"<b>&x": 1}}}, "run-1")
    assert message["text"].startswith("Forecast service daily report 2024-05-01: 3 alerts")
    assert "high 1, medium 2, low 0" in message["text"]
    types = [b["type"] for b in message["blocks"]]
    assert types[0] == "header" and "section" in types and types[-1] == "context"
    flat = json.dumps(message["blocks"])
    assert "&lt;b&gt;&amp;x 1" in flat and "<b>" not in flat  # mrkdwn control characters escaped
    assert "*forecast*: failed 1, finished 11" in flat


def test_send_daily_report_posts_only_when_configured(webhook):
    assert notify.send_daily_report(Settings(_env_file=None), REPORT) is False
    settings = Settings(_env_file=None, summary_webhook_url=webhook.url)
    assert notify.send_daily_report(settings, REPORT, "run-1") is True
    assert webhook.messages()[0]["text"].startswith("Forecast service daily report 2024-05-01")


def test_send_daily_report_raises_on_failure():
    settings = Settings(_env_file=None, summary_webhook_url=refused_url(), webhook_timeout=2)
    with pytest.raises(notify.NotifyError):
        notify.send_daily_report(settings, REPORT)


def _alert(severity: str, n: int = 1):
    return SimpleNamespace(
        id=n,
        type="capacity_warning",
        severity=severity,
        title=f"Line L{n} over capacity",
        message="forecast 120 > capacity 100",
        subject=f"line:L{n}",
        job_id="run-1",
    )


def test_high_alert_notification_lists_only_high_alerts(webhook):
    settings = Settings(_env_file=None, alert_webhook_url=webhook.url)
    assert notify.notify_high_alerts(settings, [_alert("high", 1), _alert("medium", 2)]) is True
    (message,) = webhook.messages()
    assert message["text"] == "1 new high-severity alert: capacity_warning line:L1"
    assert "Line L1 over capacity" in json.dumps(message["blocks"]) and "line:L2" not in json.dumps(message)


def test_many_high_alerts_fit_one_message(webhook):
    settings = Settings(_env_file=None, alert_webhook_url=webhook.url)
    notify.notify_high_alerts(settings, [_alert("high", n) for n in range(30)])
    (message,) = webhook.messages()
    assert len(message["blocks"]) <= 50 and "and 10 more" in json.dumps(message["blocks"])


def test_no_high_alert_or_no_url_posts_nothing(webhook):
    assert notify.notify_high_alerts(Settings(_env_file=None, alert_webhook_url=webhook.url), [_alert("low")]) is False
    assert notify.notify_high_alerts(Settings(_env_file=None), [_alert("high")]) is False
    assert webhook.received == []


@pytest.mark.parametrize("mode", ["500", "timeout", "refused"])
def test_alert_notification_failures_are_logged_not_raised(webhook, caplog, mode):
    url = webhook.url
    if mode == "500":
        webhook.status = 500
    elif mode == "timeout":
        webhook.delay = 2.0
    else:
        url = refused_url()
    settings = Settings(_env_file=None, alert_webhook_url=url, webhook_timeout=0.3)
    with caplog.at_level(logging.WARNING, logger="app.notify"):
        assert notify.notify_high_alerts(settings, [_alert("high")]) is False
    assert "not delivered" in caplog.text and "s3cr3t" not in caplog.text


def test_webhook_urls_must_be_http():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(_env_file=None, summary_webhook_url="file:///etc/passwd")
