"""Alerts an operator works with: sightings per run, acknowledge and resolve (API, dashboard, CLI),
the state filter, no repeated notification, and the webhook delivery state, on both databases."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.test_dashboard import SAME_ORIGIN, basic
from tests.test_notify import WebhookServer, refused_url


def _candidate(subject: str = "L1", severity: str = "high") -> dict:
    return {
        "type": "capacity_warning",
        "severity": severity,
        "title": f"{subject} over capacity",
        "message": "P(load > capacity) = 0.9",
        "subject": subject,
        "fingerprint": f"capacity_warning:{subject}",
        "figures": {"probability": 0.9},
    }


def _store(run_id: str, *candidates: dict):
    from app.alert_store import store_alerts
    from app.connections import database, db_session

    with db_session(), database.atomic():
        return store_alerts(list(candidates) or [_candidate()], run_id)


def _alert_row(alert_id: int) -> dict:
    from app.connections import db_session
    from app.models import Alert

    with db_session():
        return Alert.select().where(Alert.id == alert_id).dicts().get()


@pytest.fixture
def webhook():
    server = WebhookServer()
    yield server
    server.close()


def test_each_sighting_is_kept_with_its_run_and_the_alert_points_to_the_latest(client, auth):
    first = _store("run-1").created[0].id
    _store("run-2")
    _store("run-3")
    body = client.get(f"/api/alerts/{first}", headers=auth).get_json()
    assert body["occurrences"] == 3 and body["job_id"] == "run-1" and body["last_job_id"] == "run-3"
    assert [s["job_id"] for s in body["sightings"]] == ["run-3", "run-2", "run-1"]
    assert body["state"] == "open"
    listed = client.get("/api/alerts", headers=auth).get_json()["alerts"][0]
    assert listed["last_job_id"] == "run-3" and listed["state"] == "open"


def test_acknowledge_then_resolve_records_who_when_and_why(client, auth):
    alert = _store("run-1").created[0].id
    acked = client.post(f"/api/alerts/{alert}/acknowledge", headers=auth, json={"comment": "checking line L1"})
    assert acked.status_code == 200
    body = acked.get_json()
    assert body["state"] == "acknowledged" and body["acknowledged_by"] == "api" and body["acknowledged_at"]
    assert body["comment"] == "checking line L1" and body["resolved"] is False
    _store("run-2")  # still seen: refreshed, still acknowledged
    assert client.get(f"/api/alerts/{alert}", headers=auth).get_json()["state"] == "acknowledged"
    resolved = client.post(f"/api/alerts/{alert}/resolve", headers=auth, json={"comment": "overtime shift added"})
    body = resolved.get_json()
    assert resolved.status_code == 200 and body["state"] == "resolved" and body["resolved"] is True
    assert body["resolved_by"] == "api" and body["comment"] == "overtime shift added"
    for action in ("acknowledge", "resolve"):
        again = client.post(f"/api/alerts/{alert}/{action}", headers=auth)
        assert again.status_code == 409 and again.get_json()["error"]["code"] == "conflict"
    assert _alert_row(alert)["comment"] == "overtime shift added"


def test_the_state_filter_lists_each_state(client, auth):
    a = _store("r", _candidate("A")).created[0].id
    b = _store("r", _candidate("B")).created[0].id
    c = _store("r", _candidate("C")).created[0].id
    client.post(f"/api/alerts/{b}/acknowledge", headers=auth)
    client.post(f"/api/alerts/{c}/resolve", headers=auth)
    ids = {
        state: [x["id"] for x in client.get(f"/api/alerts?state={state}", headers=auth).get_json()["alerts"]]
        for state in ("open", "acknowledged", "resolved")
    }
    assert ids == {"open": [a], "acknowledged": [b], "resolved": [c]}
    assert client.get("/api/alerts?state=closed", headers=auth).status_code == 400


@pytest.mark.parametrize(
    "alert_id, status",
    [("0", 404), ("-1", 404), ("abc", 404), ("9" * 30, 404), (str(2**63), 404), ("1.0", 404), ("٣", 404)],
)
def test_malformed_or_unknown_alert_ids_are_404_json(client, auth, alert_id, status):
    for method, path in (("GET", ""), ("POST", "/acknowledge"), ("POST", "/resolve")):
        response = client.open(f"/api/alerts/{alert_id}{path}", method=method, headers=auth)
        assert response.status_code == status and response.is_json, (method, path)


@pytest.mark.parametrize(
    "body",
    [
        {"comment": "a\u0000b"},
        {"comment": "x" * 2001},
        {"comment": 5},
        {"comment": ["x"]},
        {"other": 1},
        "not an object",
        {"comment": "\ud800"},
    ],
)
def test_bad_bodies_are_400_and_change_nothing(client, auth, body):
    import json

    alert = _store("run-1").created[0].id
    before = _alert_row(alert)
    raw = json.dumps(body) if not isinstance(body, str) else body
    for action in ("acknowledge", "resolve"):
        response = client.post(
            f"/api/alerts/{alert}/{action}", headers={**auth, "Content-Type": "application/json"}, data=raw
        )
        assert response.status_code == 400 and response.is_json, (action, response.get_data(as_text=True))
    assert _alert_row(alert) == before


def test_writes_need_the_token(client, auth):
    alert = _store("run-1").created[0].id
    for action in ("acknowledge", "resolve"):
        assert client.post(f"/api/alerts/{alert}/{action}").status_code == 401
    assert _alert_row(alert)["state"] == "open"


def test_a_resolved_condition_seen_again_opens_and_notifies_a_new_alert_an_acknowledged_one_does_not(
    client, auth, webhook
):
    from app import notify

    settings = SimpleNamespace(alert_webhook_url=webhook.url, webhook_timeout=5.0)
    first = _store("run-1")
    notify.notify_high_alerts(settings, first.created)
    alert = first.created[0].id
    assert len(webhook.received) == 1
    assert _alert_row(alert)["notification"] is not None
    client.post(f"/api/alerts/{alert}/acknowledge", headers=auth)
    second = _store("run-2")
    assert second.created == [] and second.updated == 1
    notify.notify_high_alerts(settings, second.created)
    assert len(webhook.received) == 1  # acknowledged and seen again: no new message
    client.post(f"/api/alerts/{alert}/resolve", headers=auth)
    third = _store("run-3")
    assert len(third.created) == 1 and third.created[0].id != alert
    notify.notify_high_alerts(settings, third.created)
    assert len(webhook.received) == 2  # the condition returned after resolution
    assert client.get(f"/api/alerts/{alert}", headers=auth).get_json()["state"] == "resolved"
    new = client.get(f"/api/alerts/{third.created[0].id}", headers=auth).get_json()
    assert new["state"] == "open" and new["notification"]["state"] == "delivered"


def test_a_failed_alert_delivery_is_recorded_on_the_alert(client, auth):
    from app import notify

    created = _store("run-1").created
    assert (
        notify.notify_high_alerts(SimpleNamespace(alert_webhook_url=refused_url(), webhook_timeout=2.0), created)
        is False
    )
    body = client.get(f"/api/alerts/{created[0].id}", headers=auth).get_json()
    assert body["notification"]["state"] == "failed" and "unreachable" in body["notification"]["error"]
    assert "s3cr3t" not in body["notification"]["error"]


def test_the_dashboard_lists_filters_shows_and_acts(client, auth):
    payload = _candidate("<script>alert(1)</script>")
    alert = _store("run-<1>", payload).created[0].id
    creds = basic()
    page = client.get("/dashboard/alerts?state=open", headers=creds)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and f'data-alert="{alert}"' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    detail = client.get(f"/dashboard/alerts/{alert}", headers=creds)
    assert detail.status_code == 200 and "run-&lt;1&gt;" in detail.get_data(as_text=True)
    assert client.get("/dashboard/alerts/999999", headers=creds).status_code == 404
    assert client.get("/dashboard/alerts?state=nope", headers=creds).status_code == 400
    refused = client.post(f"/dashboard/alerts/{alert}/acknowledge", headers={**creds, "Origin": "http://evil.example"})
    assert refused.status_code == 403 and _alert_row(alert)["state"] == "open"
    acked = client.post(
        f"/dashboard/alerts/{alert}/acknowledge", headers={**creds, **SAME_ORIGIN}, json={"comment": "mine"}
    )
    assert acked.status_code == 200 and acked.get_json()["alert"]["acknowledged_by"].startswith("dashboard:")
    resolved = client.post(f"/dashboard/alerts/{alert}/resolve", headers={**creds, **SAME_ORIGIN})
    assert resolved.status_code == 200 and resolved.get_json()["alert"]["state"] == "resolved"
    again = client.post(f"/dashboard/alerts/{alert}/resolve", headers={**creds, **SAME_ORIGIN})
    assert again.status_code == 409
    assert f'data-alert="{alert}"' in client.get("/dashboard/alerts?state=resolved", headers=creds).get_data(
        as_text=True
    )


def test_the_cli_shows_acknowledges_and_resolves(runner, client, auth):
    alert = _store("run-1").created[0].id
    shown = runner.invoke(args=["alert", "show", str(alert)])
    assert shown.exit_code == 0 and "run run-1" in shown.output and "(open)" in shown.output
    acked = runner.invoke(args=["alert", "ack", str(alert), "--comment", "looking"])
    assert acked.exit_code == 0 and "acknowledged" in acked.output and "by cli" in acked.output
    resolved = runner.invoke(args=["alert", "resolve", str(alert)])
    assert resolved.exit_code == 0 and "resolved" in resolved.output
    again = runner.invoke(args=["alert", "resolve", str(alert)])
    assert again.exit_code == 1 and "already resolved" in again.output
    missing = runner.invoke(args=["alert", "ack", "nope"])
    assert missing.exit_code == 1 and "no alert" in missing.output
    listed = runner.invoke(args=["alerts", "--state", "resolved", "--json"])
    assert listed.exit_code == 0 and f'"id": {alert}' in listed.output


def test_the_daily_report_records_its_webhook_delivery(app, webhook):
    from app import notify
    from app.connections import db_session
    from app.models import DailySummary
    from workers import jobs

    body = jobs.generate_daily_summary.__wrapped__  # the job's body, without the run tracking
    settings = app.config["SETTINGS"]
    with db_session():
        body("report-run", settings.model_copy(update={"summary_webhook_url": webhook.url}))
        delivery = DailySummary.select().get().delivery
        assert delivery["state"] == "delivered" and delivery["job_id"] == "report-run"
        with pytest.raises(notify.NotifyError):
            body("report-run-2", settings.model_copy(update={"summary_webhook_url": refused_url()}))
        delivery = DailySummary.select().get().delivery
        assert (
            delivery["state"] == "failed"
            and delivery["job_id"] == "report-run-2"
            and "unreachable" in delivery["error"]
        )
        body("report-run-3", settings.model_copy(update={"summary_webhook_url": ""}))
        assert DailySummary.select().get().delivery["state"] == "not_configured"


def test_the_dashboard_data_names_each_jobs_last_success_and_failure_and_its_skipped_slots(client, redis):
    from datetime import timedelta

    from app.connections import db_session
    from app.models import JobRun, utcnow
    from app.runs import record_skipped_slot

    now = utcnow()
    with db_session():
        for run_id, status, minutes in (("ok-old", "finished", 50), ("ok-new", "finished", 20), ("bad", "failed", 30)):
            at = now - timedelta(minutes=minutes)
            JobRun.create(
                id=run_id,
                job_name="forecast",
                queue="forecast",
                trigger="manual",
                status=status,
                enqueued_at=at,
                started_at=at,
                ended_at=at + timedelta(seconds=3),
                attempts=1,
                error=None,
            )
    record_skipped_slot(
        "forecast", (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0), "schedule paused"
    )
    record_skipped_slot("forecast", (now - timedelta(days=9)).replace(minute=0, second=0, microsecond=0), "old")
    data = client.get("/dashboard/data.json", headers=basic()).get_json()
    forecast = data["last_outcomes"]["forecast"]
    assert forecast["last_success"]["job_id"] == "ok-new" and forecast["last_failure"]["job_id"] == "bad"
    assert data["last_outcomes"]["cleanup"] == {"last_success": None, "last_failure": None}
    skips = data["skipped_slots"]["forecast"]
    assert skips["count"] == 1 and skips["last"]["reason"] == "schedule paused"
    assert data["skipped_slots"]["cleanup"]["count"] == 0
