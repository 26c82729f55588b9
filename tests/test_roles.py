"""Roles: dashboard users (viewer / operator) and API tokens (read / operate), stored as hashes.

A viewer reads everything and acts on nothing: every mutating route under /dashboard (the
project's actions, rq-dashboard's, and a route added after the fact) answers 403 JSON and
changes nothing, and its pages show no action control. A read-scoped token reads the API and is
refused every write, again including a route the roles code has never seen. The single
credentials that predate roles (API_TOKEN, DASHBOARD_USERNAME/PASSWORD) keep acting as operators.
Real Redis, SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from flask import Blueprint, jsonify
from rq import Queue
from rq.registry import FailedJobRegistry

from app.config import Settings
from app.credentials import Role, hash_secret, parse_credentials, verify_secret
from tests.conftest import TEST_TOKEN
from tests.test_dashboard import SAME_ORIGIN, basic, enqueue_never_run

pytestmark = pytest.mark.postgres_only  # who may do what is decided before any query

VIEWER, VIEWER_PASSWORD = "vera", "viewer-pass-0123"
OPERATOR, OPERATOR_PASSWORD = "olga", "operator-pass-0123"
READ_TOKEN = "read-token-" + "r" * 32
OPERATE_TOKEN = "operate-token-" + "o" * 32
FAST = 100_000  # PBKDF2 rounds for the tests' users (the default is 600,000)


def users_setting() -> str:
    return ",".join(
        [
            f"{VIEWER}:viewer:{hash_secret(VIEWER_PASSWORD, iterations=FAST)}",
            f"{OPERATOR}:operator:{hash_secret(OPERATOR_PASSWORD, algorithm='sha256')}",
        ]
    )


def tokens_setting() -> str:
    return ",".join(
        [
            f"reader:read:{hash_secret(READ_TOKEN, algorithm='sha256')}",
            f"deployer:operate:{hash_secret(OPERATE_TOKEN, iterations=FAST)}",
        ]
    )


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "dashboard_users": users_setting(), "api_tokens": tokens_setting()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


VIEWER_AUTH = {**basic(VIEWER, VIEWER_PASSWORD), **SAME_ORIGIN}
OPERATOR_AUTH = {**basic(OPERATOR, OPERATOR_PASSWORD), **SAME_ORIGIN}
LEGACY_AUTH = {**basic(), **SAME_ORIGIN}


def forbidden(response) -> dict:
    assert response.status_code == 403, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "forbidden"
    return error


# --- the dashboard -------------------------------------------------------------------------


def test_viewer_reads_the_dashboard_and_its_data(client):
    for path in ("/dashboard/", "/dashboard/data.json", "/dashboard/audit", "/dashboard/rq/"):
        assert client.get(path, headers=VIEWER_AUTH).status_code == 200, path


def test_viewer_is_refused_every_dashboard_action_and_nothing_changes(client, redis):
    queued = client.post("/dashboard/schedules/forecast/run", headers=OPERATOR_AUTH)
    assert queued.status_code == 202
    run_id = queued.get_json()["job_id"]

    for path in (
        "/dashboard/schedules/forecast/pause",
        "/dashboard/schedules/forecast/resume",
        "/dashboard/schedules/cleanup/run",
        f"/dashboard/runs/{run_id}/cancel",
    ):
        error = forbidden(client.post(path, headers=VIEWER_AUTH))
        assert VIEWER in error["message"] and "operator" in error["message"]

    schedules = {s["name"]: s for s in client.get("/dashboard/data.json", headers=VIEWER_AUTH).get_json()["schedules"]}
    assert schedules["forecast"]["paused"] is False
    assert client.get(f"/api/jobs/forecast/{run_id}").get_json()["status"] == "queued"
    assert client.get("/api/jobs/cleanup/history").get_json()["runs"] == []


def test_viewer_is_refused_rq_dashboard_actions(client, redis):
    job = enqueue_never_run(redis, queue="default")
    failed = enqueue_never_run(redis, queue="default")
    failed.set_status("failed")
    FailedJobRegistry("default", connection=redis).add(failed, ttl=600)
    for path in (
        f"/dashboard/rq/job/{job.id}/delete",
        f"/dashboard/rq/job/{failed.id}/requeue",
        "/dashboard/rq/requeue/default",
        "/dashboard/rq/queue/default/queued/empty",
        "/dashboard/rq/queue/default/compact",
    ):
        forbidden(client.post(path, headers=VIEWER_AUTH))
    queue = Queue("default", connection=redis)
    assert job.id in queue.job_ids
    assert failed.id in FailedJobRegistry("default", connection=redis).get_job_ids()

    assert client.post(f"/dashboard/rq/job/{job.id}/delete", headers=OPERATOR_AUTH).status_code == 200
    assert job.id not in queue.job_ids


def test_operators_act_named_and_single_login(client):
    for auth in (OPERATOR_AUTH, LEGACY_AUTH):
        response = client.post("/dashboard/schedules/forecast/pause", headers=auth)
        assert response.status_code == 200 and response.get_json()["paused"] is True
        assert client.post("/dashboard/schedules/forecast/resume", headers=auth).status_code == 200


@pytest.mark.parametrize(
    "auth",
    [
        basic(VIEWER, OPERATOR_PASSWORD),
        basic(OPERATOR, VIEWER_PASSWORD),
        basic("nobody", VIEWER_PASSWORD),
        basic(VIEWER, ""),
        basic(VIEWER, VIEWER_PASSWORD + "x"),
    ],
)
def test_wrong_dashboard_credentials_are_refused(client, auth):
    response = client.get("/dashboard/", headers=auth)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="dashboard"'


def test_pages_carry_the_role_so_a_viewer_gets_no_action_controls(client):
    viewer_page = client.get("/dashboard/", headers=VIEWER_AUTH).get_data(as_text=True)
    operator_page = client.get("/dashboard/", headers=OPERATOR_AUTH).get_data(as_text=True)
    assert 'data-role="viewer"' in viewer_page
    assert 'data-role="operator"' in operator_page
    assert 'href="/dashboard/audit"' in viewer_page
    css = client.get("/dashboard/static/dashboard.css", headers=VIEWER_AUTH).get_data(as_text=True)
    assert 'main[data-role="viewer"] button[data-action]' in css


# --- the API -------------------------------------------------------------------------------


@pytest.fixture
def settings_read_auth_on(settings_overrides):
    settings_overrides["api_read_auth"] = "on"
    return settings_overrides


def test_read_token_reads_but_may_not_act(settings_read_auth_on, client, redis):
    reader = bearer(READ_TOKEN)
    for path in ("/api/jobs", "/api/schedules", "/api/alerts", "/api/jobs/forecast/history", "/metrics"):
        assert client.get(path, headers=reader).status_code == 200, path

    for path in ("/api/jobs/forecast/trigger", "/api/schedules/forecast/pause", "/api/schedules/forecast/run"):
        error = forbidden(client.post(path, headers=reader))
        assert "operate scope" in error["message"]
    run_id = client.post("/api/jobs/forecast/trigger", headers=bearer(OPERATE_TOKEN)).get_json()["job_id"]
    forbidden(client.post(f"/api/jobs/forecast/{run_id}/cancel", headers=reader))

    assert client.get(f"/api/jobs/forecast/{run_id}", headers=reader).get_json()["status"] == "queued"
    assert client.get("/api/jobs/forecast/history", headers=reader).get_json()["runs"][0]["job_id"] == run_id
    assert [s["paused"] for s in client.get("/api/schedules", headers=reader).get_json()["schedules"]] == [False] * 3


def test_operate_token_and_the_single_token_act(client):
    for token in (OPERATE_TOKEN, TEST_TOKEN):
        response = client.post("/api/schedules/forecast/pause", headers=bearer(token))
        assert response.status_code == 200 and response.get_json()["paused"] is True
        assert client.post("/api/schedules/forecast/resume", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("token", ["", "wrong", READ_TOKEN + "x", OPERATE_TOKEN[:-1], "sha256$" + "0" * 64])
def test_unknown_tokens_get_401(settings_read_auth_on, client, token):
    assert client.post("/api/jobs/forecast/trigger", headers=bearer(token)).status_code == 401
    assert client.get("/api/jobs", headers=bearer(token)).status_code == 401


@pytest.fixture
def app_with_new_routes(settings_overrides):
    """The app with POST routes added afterwards, as another change would add them (no auth code in them)."""
    from app import create_app
    from app.config import configure
    from app.connections import database, db_session
    from app.models import create_tables

    app = create_app(settings_overrides)
    calls = []
    api = Blueprint("late_api", __name__, url_prefix="/api/late")
    page = Blueprint("late_page", __name__, url_prefix="/dashboard/late")

    @api.post("/<run_id>/poke")
    def poke(run_id: str):
        calls.append(("api", run_id))
        return jsonify(ok=True)

    @page.post("/<run_id>/poke")
    def poke_page(run_id: str):
        calls.append(("dashboard", run_id))
        return jsonify(ok=True)

    app.register_blueprint(api)
    app.register_blueprint(page)
    with db_session():
        create_tables()
    app.calls = calls
    yield app
    if not database.is_closed():
        database.close()
    configure(None)


def test_a_route_added_later_is_guarded_by_role(app_with_new_routes):
    client = app_with_new_routes.test_client()
    assert client.post("/api/late/r1/poke").status_code == 401
    forbidden(client.post("/api/late/r1/poke", headers=bearer(READ_TOKEN)))
    forbidden(client.post("/dashboard/late/r1/poke", headers=VIEWER_AUTH))
    assert app_with_new_routes.calls == []
    assert client.post("/api/late/r1/poke", headers=bearer(OPERATE_TOKEN)).status_code == 200
    assert client.post("/dashboard/late/r1/poke", headers=OPERATOR_AUTH).status_code == 200
    assert app_with_new_routes.calls == [("api", "r1"), ("dashboard", "r1")]


# --- settings and hashes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ("ann:admin:sha256$" + "a" * 64, "must be one of viewer, operator"),
        ("ann:viewer:plaintext-password", "not a hash"),
        ("ann:viewer:sha256$abc", "not a hash"),
        ("a b:viewer:sha256$" + "a" * 64, "the name must be"),
        ("ann:viewer:sha256$" + "a" * 64 + ",ann:operator:sha256$" + "b" * 64, "given twice"),
        (f"operator:viewer:sha256${'c' * 64}", "names DASHBOARD_USERNAME again"),
    ],
)
def test_malformed_dashboard_users_are_refused_without_quoting_them(users, message):
    with pytest.raises(ValueError) as caught:
        Settings(_env_file=None, dashboard_users=users, dashboard_username="operator", dashboard_password="x" * 12)
    assert message in str(caught.value)
    assert "plaintext-password" not in str(caught.value) and "a" * 64 not in str(caught.value)


def test_api_token_scopes_are_read_and_operate():
    with pytest.raises(ValueError, match="must be one of read, operate"):
        Settings(_env_file=None, api_tokens="ci:operator:sha256$" + "a" * 64)
    roles = {c.name: c.role for c in Settings(_env_file=None, api_tokens=tokens_setting()).api_token_credentials}
    assert roles == {"reader": Role.VIEWER, "deployer": Role.OPERATOR}


def test_production_accepts_named_credentials_instead_of_the_single_ones():
    settings = Settings(
        _env_file=None, app_env="production", dashboard_users=users_setting(), api_tokens=tokens_setting()
    )
    assert [c.name for c in settings.dashboard_user_credentials] == [VIEWER, OPERATOR]
    with pytest.raises(ValueError, match="API_TOKEN"):
        Settings(_env_file=None, app_env="production", dashboard_users=users_setting())


def test_hashes_verify_only_their_secret():
    for stored in (hash_secret("s3cret", iterations=FAST), hash_secret("s3cret", algorithm="sha256")):
        assert verify_secret("s3cret", stored)
        assert verify_secret("s3cret", stored)  # remembered: the same answer
        assert not verify_secret("s3cret ", stored)
        assert not verify_secret("", stored)
    assert hash_secret("s3cret", iterations=FAST) != hash_secret("s3cret", iterations=FAST)  # salted
    assert not verify_secret("\udcff", hash_secret("x", algorithm="sha256"))  # a lone surrogate: no error


def test_hash_secret_command_prints_a_hash_the_settings_accept(runner):
    result = runner.invoke(args=["hash-secret", "--iterations", str(FAST)], input="correct horse\n")
    assert result.exit_code == 0, result.output
    stored = result.output.strip().splitlines()[-1]
    assert "correct horse" not in result.output
    assert verify_secret("correct horse", stored)
    (user,) = parse_credentials(f"ann:viewer:{stored}", "DASHBOARD_USERS", Role)
    assert user.role is Role.VIEWER

    generated = runner.invoke(args=["hash-secret", "--generate"])
    assert generated.exit_code == 0, generated.output
    lines = generated.output.strip().splitlines()
    token, stored = lines[0].removeprefix("token: "), lines[-1]
    assert len(token) >= 32 and stored.startswith("sha256$") and verify_secret(token, stored)

    assert runner.invoke(args=["hash-secret"], input="\n").exit_code == 2


def test_rq_dashboard_pages_hide_their_action_buttons_from_a_viewer(client, redis):
    job = enqueue_never_run(redis, queue="default")
    link = '<link rel="stylesheet" href="/dashboard/static/rq-viewer.css">'
    for path in (
        "/dashboard/rq/",
        f"/dashboard/rq/0/view/job/{job.id}",
        "/dashboard/rq/0/view/jobs/default/queued/8/asc/1",
    ):
        viewer_page = client.get(path, headers=VIEWER_AUTH)
        assert viewer_page.status_code == 200, path
        assert link in viewer_page.get_data(as_text=True), path
        assert link not in client.get(path, headers=OPERATOR_AUTH).get_data(as_text=True), path
    css = client.get("/dashboard/static/rq-viewer.css", headers=VIEWER_AUTH).get_data(as_text=True)
    for button in ("#delete-job-btn", "#requeue-all-btn", "#empty-btn", '[data-role="delete-job-btn"]'):
        assert button in css
