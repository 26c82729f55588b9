"""Every error status of the API is a JSON body; bad input changes nothing."""

from __future__ import annotations

import pytest

from app import create_app
from app.models import JobRun
from tests.servers import free_port


def error_of(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body["error"]) >= {"code", "message"}
    return body["error"]


@pytest.mark.parametrize(
    "body,content_type",
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"force": "yes"}', "application/json"),
        (b'{"force": true, "extra": 1}', "application/json"),
        (b"\xff\xfe", "application/octet-stream"),
    ],
)
def test_bad_trigger_body_is_400_and_queues_nothing(client, auth, body, content_type):
    error_of(client.post("/api/jobs/forecast/trigger", headers=auth, data=body, content_type=content_type), 400)
    assert JobRun.select().count() == 0


@pytest.mark.parametrize(
    "query",
    [
        "limit=abc",
        "limit=-5",
        "limit=0",
        "limit=100000",
        "status=bogus",
        "trigger=cron",
        "cursor=garbage",
        "cursor=" + "A" * 500,
        "cursor=WyJ4IiwxXQ",
        "limit=1&limit=2",
        "unknown=1",
    ],
)
@pytest.mark.any_database
def test_bad_history_query_is_400(client, query):
    error_of(client.get(f"/api/jobs/forecast/history?{query}"), 400)


@pytest.mark.parametrize(
    "query", ["severity=urgent", "since=yesterday", "limit=-1", "cursor=%00%01", "type=DROP%20TABLE"]
)
@pytest.mark.any_database
def test_bad_alert_query_is_400(client, query):
    error_of(client.get(f"/api/alerts?{query}"), 400)


@pytest.mark.any_database
def test_bad_and_long_job_ids_are_400(client, auth):
    long_id = "a" * 5000
    error_of(client.get(f"/api/jobs/forecast/{long_id}"), 400)
    error_of(client.post(f"/api/jobs/forecast/{long_id}/cancel", headers=auth), 400)
    error_of(client.get("/api/jobs/forecast/bad.id"), 400)


def test_unknown_job_and_run_are_404(client, auth):
    assert error_of(client.post("/api/jobs/nope/trigger", headers=auth), 404)["code"] == "not_found"
    error_of(client.get("/api/jobs/forecast/0123abcd"), 404)
    error_of(client.get("/api/jobs/nope/history"), 404)


def test_missing_or_wrong_token_is_401(client):
    response = client.post("/api/jobs/forecast/trigger")
    error_of(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    error_of(client.post("/api/jobs/forecast/trigger", headers={"Authorization": "Bearer wrong"}), 401)
    error_of(client.post("/api/jobs/forecast/trigger", headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401)
    error_of(client.post("/api/jobs/forecast/x1/cancel"), 401)
    assert JobRun.select().count() == 0


def test_reads_are_open_by_default(client):
    assert client.get("/api/jobs/forecast/history").status_code == 200
    assert client.get("/api/alerts").status_code == 200


@pytest.mark.any_database
def test_wrong_method_is_405(client, auth):
    error_of(client.get("/api/jobs/forecast/trigger", headers=auth), 405)
    error_of(client.delete("/api/alerts"), 405)


def test_body_over_limit_is_413(client, auth):
    error_of(
        client.post(
            "/api/jobs/forecast/trigger", headers=auth, data=b"{" + b" " * 70000 + b"}", content_type="application/json"
        ),
        413,
    )
    assert JobRun.select().count() == 0


@pytest.mark.any_database
def test_openapi_document_lists_every_api_route(client, app):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    documented = {path.replace("{", "<").replace("}", ">") for path in doc["paths"]}
    routes = {
        r.rule
        for r in app.url_map.iter_rules()
        if r.rule.startswith("/api/") and r.rule != "/api/openapi.json" and not r.endpoint.endswith(".static")
    }
    assert routes <= documented


class TestReadAuth:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "api_read_auth": True}

    def test_reads_need_the_token(self, client, auth):
        error_of(client.get("/api/jobs/forecast/history"), 401)
        error_of(client.get("/api/alerts"), 401)
        error_of(client.get("/api/jobs/stats"), 401)
        assert client.get("/api/alerts", headers=auth).status_code == 200
        assert client.get("/healthz").status_code == 200


def test_redis_down_is_503_not_500(settings_overrides, auth):
    app = create_app({**settings_overrides, "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    client = app.test_client()
    from app.connections import db_session
    from app.models import create_tables

    with db_session():
        create_tables()
    assert error_of(client.post("/api/jobs/forecast/trigger", headers=auth), 503)["code"] == "redis_unavailable"
    error_of(client.get("/api/jobs/stats"), 503)
    assert client.get("/readyz").status_code == 503
    assert client.get("/readyz").get_json()["checks"]["database"] == "ok"
    assert client.get("/api/alerts").status_code == 200  # database-only routes keep working


def test_database_down_is_503_not_500(settings_overrides, auth):
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    client = create_app({**settings_overrides, "database_url": dead}).test_client()
    assert error_of(client.get("/api/alerts"), 503)["code"] == "database_unavailable"
    error_of(client.get("/api/jobs/forecast/history"), 503)
    error_of(client.post("/api/jobs/forecast/trigger", headers=auth), 503)
    assert client.get("/readyz").get_json()["checks"]["database"].startswith("down")


# -- extreme input (issue 11, point 4): 400 with a message, never a 500 --------------------------
def cursor_of(*values) -> str:
    """A cursor in the service's format holding arbitrary JSON values (no escaping of surrogates)."""
    import base64
    import json

    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "since",
    [
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59.999999-00:01",
        "0001-01-01T00:00:00+23:59",
    ],
)
@pytest.mark.any_database
def test_since_out_of_range_after_utc_conversion_is_400(client, since):
    from urllib.parse import quote

    message = error_of(client.get(f"/api/alerts?since={quote(since)}"), 400)["message"]
    assert message.startswith("since:") and "range" in message


@pytest.mark.parametrize(
    "since,count", [("9999-12-31T23:59:59+00:00", 0), ("0001-01-01T00:00:00-01:00", 1), ("0001-01-01T00:00:00Z", 1)]
)
def test_since_at_the_edges_of_the_range_still_works(client, since, count):
    from urllib.parse import quote

    from app.models import Alert

    Alert.create(type="spike", severity="high", title="t", message="m", subject="s", fingerprint="f")
    response = client.get(f"/api/alerts?since={quote(since)}")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert len(response.get_json()["alerts"]) == count


@pytest.mark.parametrize(
    "path,cursor",
    [
        ("/api/alerts", cursor_of("2026-01-01T00:00:00", 2**63)),
        ("/api/alerts", cursor_of("2026-01-01T00:00:00", -(2**63) - 1)),
        ("/api/alerts", cursor_of("2026-01-01T00:00:00", 10**30)),
        ("/api/alerts", cursor_of("2026-01-01T00:00:00", 1.5)),
        ("/api/jobs/forecast/history", cursor_of("2026-01-01T00:00:00", "a\x00b")),
        ("/api/jobs/forecast/history", cursor_of("2026-01-01T00:00:00", "\ud800")),
        ("/api/jobs/forecast/history", cursor_of("2026-01-01T00:00:00", "x" * 100)),
        ("/api/jobs/forecast/history", cursor_of("2026-01-01T00:00:00\x00", "abc")),
    ],
)
@pytest.mark.any_database
def test_cursor_with_out_of_range_or_unsafe_id_is_400(client, path, cursor):
    assert error_of(client.get(f"{path}?cursor={cursor}"), 400)["message"] == "invalid cursor"


def test_cursor_ids_at_the_signed_64_bit_bounds_work(client):
    for row_id in (2**63 - 1, -(2**63)):
        response = client.get(f"/api/alerts?cursor={cursor_of('2026-01-01T00:00:00', row_id)}")
        assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"force": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"force": ' + b'{"a":' * 3000 + b"1" + b"}" * 3001,
        b'{"force": ' + b"9" * 5000 + b"}",  # more digits than Python converts to an int
        b'{"force": 1e999999}',
        b'{"\\ud800": true}',
        b'{"force": "\\u0000"}',
        b'{"force": true, "force": false, "\\u0000": 1}',
    ],
)
def test_pathological_trigger_bodies_are_400_and_queue_nothing(client, auth, redis, body):
    keys = redis.dbsize()
    error = error_of(
        client.post("/api/jobs/forecast/trigger", headers=auth, data=body, content_type="application/json"), 400
    )
    assert error["message"]
    assert JobRun.select().count() == 0 and redis.dbsize() == keys


@pytest.mark.parametrize(
    "url",
    [
        "/api/jobs/forecast/history?status=%00",
        "/api/alerts?source=a%00b",
        "/api/jobs/fore%00cast/history",
        "/api/alerts?%00=1",
        "/api/reports?cursor=%00",
        "/api/jobs/forecast/a%00b",
    ],
)
@pytest.mark.any_database
def test_nul_in_url_is_400(client, url):
    assert "NUL" in error_of(client.get(url), 400)["message"]


@pytest.mark.parametrize(
    "query,shown",
    [
        ("%E2%80%AEgnp.exe=1", "\\u202egnp.exe: Extra inputs are not permitted"),  # right-to-left override
        ("%1F=1&%1F=2", "\\x1f: given more than once"),
        ("%F0%AF%A8%9E=1", "\\U0002fa1e: Extra inputs are not permitted"),  # unassigned code point
        ("x" * 300 + "=1", "x" * 50 + ": Extra inputs are not permitted"),
    ],
)
@pytest.mark.any_database
def test_names_quoted_in_errors_are_escaped_and_short(client, query, shown):
    message = error_of(client.get(f"/api/alerts?{query}"), 400)["message"]
    assert message == shown and message.isprintable()
