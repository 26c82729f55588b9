"""The audit log: every action from the API, the dashboards and the CLI, allowed or refused.

Recorded by one hook per adapter, so the tests go through the real routes (Flask client), the
real rq-dashboard routes and a real `flask` CLI process; read back through `GET /api/audit` and
the dashboard's audit page; cleaned by the weekly cleanup run by a real worker. The model runs
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from datetime import timedelta

import pytest

from app.core import audit
from app.models import AuditEntry, utcnow
from tests import test_roles
from tests.conftest import TEST_TOKEN, settings_env
from tests.test_cleanup import _run_cleanup
from tests.test_dashboard import enqueue_never_run
from tests.test_roles import (
    OPERATE_TOKEN,
    OPERATOR,
    OPERATOR_AUTH,
    OPERATOR_PASSWORD,
    READ_TOKEN,
    VIEWER,
    VIEWER_AUTH,
    VIEWER_PASSWORD,
    bearer,
    tokens_setting,
    users_setting,
)

app_with_new_routes = test_roles.app_with_new_routes  # the app with routes added afterwards


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "dashboard_users": users_setting(), "api_tokens": tokens_setting()}


SECRETS = (OPERATE_TOKEN, READ_TOKEN, TEST_TOKEN, OPERATOR_PASSWORD, VIEWER_PASSWORD)


def entries(**where) -> list[AuditEntry]:
    query = AuditEntry.select().order_by(AuditEntry.id)
    for name, value in where.items():
        query = query.where(getattr(AuditEntry, name) == value)
    return list(query)


def only(**where) -> AuditEntry:
    found = entries(**where)
    assert len(found) == 1, [audit.entry_json(e) for e in entries()]
    return found[0]


def assert_no_secrets() -> None:
    for entry in entries():
        text = " ".join(str(v) for v in audit.entry_json(entry).values())
        for secret in SECRETS:
            assert secret not in text, entry


# --- the model and the service ---------------------------------------------------------------


def test_record_and_list_with_filters_and_keyset_pages(app):
    base = utcnow().replace(microsecond=0) - timedelta(hours=1)
    made = []
    for i, (actor, action, source) in enumerate(
        [
            ("ann", "run.cancel", audit.Source.API),
            ("bob", "schedule.pause", audit.Source.DASHBOARD),
            ("ann", "rq.delete", audit.Source.RQ_DASHBOARD),
            ("cli:root", "run.trigger", audit.Source.CLI),
            ("ann", "run.cancel", audit.Source.DASHBOARD),
        ]
    ):
        at = base + timedelta(minutes=10 * (i // 2))  # pairs share a time: the id breaks the tie
        made.append(audit.record(actor=actor, action=action, source=source, target=f"run:r{i}", at=at).id)

    everything = audit.list_entries(audit.AuditFilters(), limit=500)
    assert [e["id"] for e in everything["entries"]] == sorted(made, reverse=True)
    assert everything["next_cursor"] is None

    def ids(**filters) -> list[int]:
        return [e["id"] for e in audit.list_entries(audit.AuditFilters(**filters))["entries"]]

    assert ids(actor="ann") == [made[4], made[2], made[0]]
    assert ids(action="run.cancel", source=audit.Source.DASHBOARD) == [made[4]]
    assert ids(since=base + timedelta(minutes=10)) == [made[4], made[3], made[2]]
    assert ids(until=base + timedelta(minutes=10)) == [made[1], made[0]]  # until is exclusive
    assert ids(actor="nobody") == []

    seen, cursor = [], None
    while True:
        page = audit.list_entries(audit.AuditFilters(), cursor, limit=2)
        seen += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(made, reverse=True)


def test_long_and_odd_values_are_stored_cut_to_their_columns(app):
    entry = audit.record(actor="x" * 500, action="a\x00b", source=audit.Source.API, reason="r" * 1000)
    stored = AuditEntry.get_by_id(entry.id)
    assert len(stored.actor) == 100 and len(stored.reason) == 300
    assert "\x00" not in stored.action


# --- the API ---------------------------------------------------------------------------------


def test_api_action_is_recorded_with_actor_target_address_and_request_id(client):
    response = client.post(
        "/api/jobs/forecast/trigger", headers={**bearer(OPERATE_TOKEN), "X-Request-ID": "req-0123.abc"}
    )
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == "req-0123.abc"
    run_id = response.get_json()["job_id"]

    entry = only(action="run.trigger")
    assert (entry.actor, entry.role, entry.source, entry.outcome) == ("deployer", "operator", "api", "ok")
    assert entry.target == f"job:forecast run:{run_id}"
    assert (entry.remote_addr, entry.request_id) == ("127.0.0.1", "req-0123.abc")

    client.post(f"/api/jobs/forecast/{run_id}/cancel", headers={**bearer(TEST_TOKEN), "X-Request-ID": "<bad id>"})
    cancel = only(action="run.cancel")
    assert (cancel.actor, cancel.target, cancel.outcome) == ("api-token", f"job:forecast run:{run_id}", "ok")
    assert len(cancel.request_id) == 32 and cancel.request_id != "<bad id>"  # a malformed id is replaced


def test_refusals_are_recorded_with_their_reason_and_no_secret(client):
    assert client.post("/api/schedules/forecast/pause").status_code == 401
    assert client.post("/api/schedules/forecast/pause", headers=bearer("wrong-" + READ_TOKEN)).status_code == 401
    assert client.post("/api/schedules/forecast/pause", headers=bearer(READ_TOKEN)).status_code == 403
    assert client.post("/api/jobs/forecast/trigger", headers=bearer(OPERATE_TOKEN)).status_code == 202
    assert client.post("/api/jobs/forecast/trigger", headers=bearer(OPERATE_TOKEN)).status_code == 409
    assert client.post("/api/jobs/nonesuch/trigger", headers=bearer(OPERATE_TOKEN)).status_code == 404
    assert client.post("/dashboard/schedules/forecast/pause", headers=VIEWER_AUTH).status_code == 403

    anonymous = entries(actor="anonymous")
    assert [(e.action, e.outcome, e.role) for e in anonymous] == [("schedule.pause", "refused", "")] * 2
    assert anonymous[0].reason.startswith("401 unauthorized")
    reader = only(actor="reader")
    assert (reader.role, reader.outcome) == ("viewer", "refused") and reader.reason.startswith("403 forbidden")
    triggers = entries(action="run.trigger", target="job:forecast")
    assert [e.outcome for e in triggers] == ["refused"] and triggers[0].reason.startswith("409 conflict")
    assert only(target="job:nonesuch").reason.startswith("404 not_found")
    viewer = only(actor=VIEWER)
    assert (viewer.source, viewer.role, viewer.outcome) == ("dashboard", "viewer", "refused")
    assert_no_secrets()


def test_reads_are_not_recorded(client):
    for path in ("/api/jobs", "/api/schedules", "/api/alerts", "/api/jobs/stats", "/api/audit"):
        client.get(path, headers=bearer(READ_TOKEN))
    for path in ("/dashboard/", "/dashboard/data.json", "/dashboard/audit", "/dashboard/rq/"):
        client.get(path, headers=VIEWER_AUTH)
    client.post("/api/no/such/route", headers=bearer(OPERATE_TOKEN))  # no route: no action
    assert entries() == []


def test_a_route_added_later_is_audited(app_with_new_routes):
    client = app_with_new_routes.test_client()
    client.post("/api/late/r7/poke", headers=bearer(OPERATE_TOKEN))
    client.post("/api/late/r7/poke", headers=bearer(READ_TOKEN))
    client.post("/dashboard/late/r8/poke", headers=OPERATOR_AUTH)
    with app_with_new_routes.app_context():
        rows = [(e.actor, e.action, e.target, e.outcome, e.source) for e in entries()]
    assert rows == [
        ("deployer", "late_api.poke", "run:r7", "ok", "api"),
        ("reader", "late_api.poke", "run:r7", "refused", "api"),
        (OPERATOR, "late_page.poke_page", "run:r8", "ok", "dashboard"),
    ]


# --- the dashboards --------------------------------------------------------------------------


def test_dashboard_actions_are_recorded(client):
    client.post("/dashboard/schedules/forecast/pause", headers=OPERATOR_AUTH)
    run_id = client.post("/dashboard/schedules/forecast/run", headers=OPERATOR_AUTH).get_json()["job_id"]
    client.post(f"/dashboard/runs/{run_id}/cancel", headers=OPERATOR_AUTH)
    rows = [(e.actor, e.role, e.action, e.target, e.outcome, e.source) for e in entries()]
    assert rows == [
        (OPERATOR, "operator", "schedule.pause", "schedule:forecast", "ok", "dashboard"),
        (OPERATOR, "operator", "schedule.run", f"schedule:forecast run:{run_id}", "ok", "dashboard"),
        (OPERATOR, "operator", "run.cancel", f"run:{run_id}", "ok", "dashboard"),
    ]


def test_rq_dashboard_actions_are_recorded_through_its_routes(client, redis):
    from rq import Queue

    job = enqueue_never_run(redis, queue="default")
    enqueue_never_run(redis, queue="default")
    assert client.post(f"/dashboard/rq/job/{job.id}/delete", headers=OPERATOR_AUTH).status_code == 200
    assert client.post(f"/dashboard/rq/job/{job.id}/requeue", headers=OPERATOR_AUTH).status_code == 404
    assert client.post("/dashboard/rq/queue/default/queued/empty", headers=OPERATOR_AUTH).status_code == 200
    assert Queue("default", connection=redis).count == 0

    rows = [(e.action, e.target, e.outcome, e.source) for e in entries()]
    assert rows == [
        ("rq.delete", f"job_id:{job.id}", "ok", "rq-dashboard"),
        ("rq.requeue", f"job_id:{job.id}", "refused", "rq-dashboard"),
        ("rq.empty_queue", "queue:default registry:queued", "ok", "rq-dashboard"),
    ]
    assert {e.actor for e in entries()} == {OPERATOR}


# --- reading the log -------------------------------------------------------------------------


def test_api_audit_always_needs_a_token_and_filters(client):
    client.post("/api/schedules/forecast/pause", headers=bearer(OPERATE_TOKEN))
    client.post("/api/schedules/forecast/resume", headers=bearer(TEST_TOKEN))
    client.post("/dashboard/schedules/cleanup/pause", headers=OPERATOR_AUTH)

    assert client.get("/api/audit").status_code == 401  # API_READ_AUTH is off here: the log is not public
    body = client.get("/api/audit", headers=bearer(READ_TOKEN)).get_json()
    assert [e["action"] for e in body["entries"]] == ["schedule.pause", "schedule.resume", "schedule.pause"]
    assert set(body["entries"][0]) == {
        "id",
        "at",
        "actor",
        "role",
        "action",
        "target",
        "outcome",
        "reason",
        "source",
        "remote_addr",
        "request_id",
    }

    def actors(query: str) -> list[str]:
        response = client.get(f"/api/audit?{query}", headers=bearer(READ_TOKEN))
        assert response.status_code == 200, response.get_json()
        return [e["actor"] for e in response.get_json()["entries"]]

    assert actors("actor=deployer") == ["deployer"]
    assert actors("source=dashboard") == [OPERATOR]
    assert actors("action=schedule.resume") == ["api-token"]
    assert actors("since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00%2B02:00") == [OPERATOR, "api-token", "deployer"]
    assert actors("until=2000-01-01T00:00:00Z") == []

    first = client.get("/api/audit?limit=2", headers=bearer(READ_TOKEN)).get_json()
    rest = client.get(f"/api/audit?limit=2&cursor={first['next_cursor']}", headers=bearer(READ_TOKEN)).get_json()
    assert [e["actor"] for e in first["entries"] + rest["entries"]] == [OPERATOR, "api-token", "deployer"]
    assert rest["next_cursor"] is None

    for bad in ("source=web", "since=yesterday", "cursor=abc", "actor=a%20b", "actor=%00", "limit=0", "extra=1"):
        response = client.get(f"/api/audit?{bad}", headers=bearer(READ_TOKEN))
        assert response.status_code == 400, bad
        assert response.get_json()["error"]["code"] == "bad_request"


def test_audit_page_and_its_data(client):
    client.post("/dashboard/schedules/forecast/pause", headers=OPERATOR_AUTH)
    page = client.get("/dashboard/audit", headers=VIEWER_AUTH)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '<script src="/dashboard/static/audit.js" defer></script>' in html
    assert "<script>" not in html and " style=" not in html
    assert "style-src 'self';" in page.headers["Content-Security-Policy"]
    assert client.get("/dashboard/audit").status_code == 401

    data = client.get("/dashboard/audit/data.json?source=dashboard", headers=VIEWER_AUTH).get_json()
    assert [(e["actor"], e["action"]) for e in data["entries"]] == [(OPERATOR, "schedule.pause")]
    assert client.get("/dashboard/audit/data.json?since=bad", headers=VIEWER_AUTH).status_code == 400
    script = client.get("/dashboard/static/audit.js", headers=VIEWER_AUTH).get_data(as_text=True)
    assert "innerHTML" not in script and "textContent" in script


# --- the CLI ---------------------------------------------------------------------------------


def flask_cli(settings_overrides, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        env=settings_env(settings_overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_actions_are_recorded_by_a_real_flask_process(app, settings_overrides):
    paused = flask_cli(settings_overrides, "schedules", "pause", "forecast")
    assert paused.returncode == 0, paused.stderr
    refused = flask_cli(settings_overrides, "schedules", "pause", "nonesuch")
    assert refused.returncode != 0 and "unknown schedule" in refused.stderr
    listing = flask_cli(settings_overrides, "runs", "forecast")
    assert listing.returncode == 0, listing.stderr

    actor = f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
    rows = [(e.actor, e.role, e.action, e.target, e.outcome, e.source) for e in entries()]
    assert rows == [
        (actor, "operator", "schedule.pause", "schedule:forecast", "ok", "cli"),
        (actor, "operator", "schedule.pause", "schedule:nonesuch", "refused", "cli"),
    ]  # `runs` only reads: not recorded
    assert "unknown schedule" in entries()[1].reason


def test_a_cli_trigger_names_the_run_it_created_and_the_run_page_shows_who(app, client, settings_overrides):
    from app.models import JobRun

    triggered = flask_cli(settings_overrides, "trigger", "forecast", "--json")
    assert triggered.returncode == 0, triggered.stderr
    run_id = json.loads(triggered.stdout)["job_id"]
    (entry,) = entries(action="run.trigger")
    assert entry.target == f"job:forecast run:{run_id}" and entry.source == "cli"
    actor = f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
    from app.core.run_history import triggered_by

    assert triggered_by(JobRun.get_by_id(run_id)) == f"{actor} (cli)"


# --- retention -------------------------------------------------------------------------------


def test_cleanup_deletes_entries_older_than_the_retention(app, client, run_worker):
    retention = app.config["SETTINGS"].audit_retention_days
    now = utcnow()
    old = audit.record(
        actor="ann", action="run.cancel", source=audit.Source.API, at=now - timedelta(days=retention + 1)
    )
    edge = audit.record(
        actor="ann", action="run.cancel", source=audit.Source.API, at=now - timedelta(days=retention - 1)
    )

    result = _run_cleanup(client, bearer(OPERATE_TOKEN), run_worker)

    assert result["deleted_audit_entries"] == 1
    remaining = [e.id for e in entries()]
    assert old.id not in remaining and edge.id in remaining
    (trigger,) = entries(action="run.trigger")  # the cleanup's own trigger, recorded just now, stays
    assert trigger.target.startswith("job:cleanup run:")
