"""Guessing dashboard passwords is bounded, and the answer's time does not tell which names exist.

Each wrong password costs a PBKDF2 check (~0.5 s of CPU at the default rounds): a budget of
checks per app and process (LOGIN_ATTEMPTS_PER_MINUTE) refuses further guesses with 429 before
any hashing, while a login verified before keeps working. An unknown user name is checked
against a dummy hash as slow as the real ones. Real Redis and SQLite.
"""

from __future__ import annotations

import pytest

from app import credentials
from app.credentials import hash_secret
from app.login_throttle import LoginThrottle, TooManyLoginAttempts
from app.models import AuditEntry
from tests.test_dashboard import SAME_ORIGIN, basic

USER, PASSWORD = "pia", "pia-password-0123"
NEWCOMER, NEWCOMER_PASSWORD = "nils", "nils-password-0123"
ROUNDS = 20_000  # cheap PBKDF2 for the test; the default is 600,000
BUDGET = 3


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_refills_over_the_minute_and_says_when_to_retry():
    clock = FakeClock()
    throttle = LoginThrottle(3, clock=clock)
    for _ in range(3):
        throttle.take()
    with pytest.raises(TooManyLoginAttempts) as refused:
        throttle.take()
    assert refused.value.retry_after == 20  # one check per 20 s at 3 a minute
    clock.now += 20
    throttle.take()
    with pytest.raises(TooManyLoginAttempts):
        throttle.take()


def test_no_limit_when_the_setting_is_zero():
    throttle = LoginThrottle(0, clock=FakeClock())
    for _ in range(1000):
        throttle.take()


@pytest.fixture
def settings_overrides(settings_overrides):
    users = ",".join(
        [
            f"{USER}:operator:{hash_secret(PASSWORD, iterations=ROUNDS)}",
            f"{NEWCOMER}:viewer:{hash_secret(NEWCOMER_PASSWORD, iterations=ROUNDS)}",
        ]
    )
    return {**settings_overrides, "dashboard_users": users, "login_attempts_per_minute": BUDGET}


def test_guesses_over_the_budget_get_429_before_hashing_and_signed_in_users_keep_working(client, monkeypatch):
    assert client.get("/dashboard/", headers=basic(USER, PASSWORD)).status_code == 200  # verified: remembered
    for attempt in range(BUDGET - 1):
        assert client.get("/dashboard/", headers=basic(USER, f"guess-{attempt}")).status_code == 401

    checks: list[str] = []
    real_check = credentials._check
    monkeypatch.setattr(
        credentials, "_check", lambda secret, stored: checks.append(stored) or real_check(secret, stored)
    )
    refused = client.get("/dashboard/", headers=basic(USER, "one-guess-too-many"))
    assert refused.status_code == 429
    assert refused.headers["Retry-After"].isdigit() and int(refused.headers["Retry-After"]) >= 1
    assert refused.get_json()["error"]["code"] == "too_many_login_attempts"
    assert checks == []  # refused before any hashing

    assert client.get("/dashboard/", headers=basic(USER, PASSWORD)).status_code == 200  # remembered
    assert client.get("/dashboard/", headers=basic(NEWCOMER, NEWCOMER_PASSWORD)).status_code == 429  # not yet
    assert client.get("/dashboard/", headers=basic("nobody", "x")).status_code == 429
    assert client.get("/dashboard/").status_code == 401  # no credentials: nothing to check


def test_a_throttled_action_changes_nothing_and_writes_no_audit_row(client):
    for attempt in range(BUDGET):
        client.get("/dashboard/", headers=basic(USER, f"guess-{attempt}"))
    before = AuditEntry.select().count()
    response = client.post("/dashboard/schedules/forecast/pause", headers={**basic(USER, "guess"), **SAME_ORIGIN})
    assert response.status_code == 429
    assert AuditEntry.select().count() == before
    schedules = {s["name"]: s for s in client.get("/api/schedules").get_json()["schedules"]}
    assert schedules["forecast"]["paused"] is False


def test_an_unknown_name_is_checked_against_a_hash_as_slow_as_the_real_ones(client, monkeypatch):
    checked: list[str] = []
    real_check = credentials._check
    monkeypatch.setattr(
        credentials, "_check", lambda secret, stored: checked.append(stored) or real_check(secret, stored)
    )
    assert client.get("/dashboard/", headers=basic("no-such-user", "x")).status_code == 401
    assert len(checked) == 1 and checked[0].startswith(f"pbkdf2_sha256${ROUNDS}$")


def test_the_single_login_is_remembered_only_for_its_own_password(settings_overrides):
    from app import create_app
    from tests.conftest import DASHBOARD_PASSWORD, DASHBOARD_USER

    first = create_app({**settings_overrides, "dashboard_users": "", "login_attempts_per_minute": 1})
    assert first.test_client().get("/dashboard/", headers=basic()).status_code == 200
    other = create_app(
        {
            **settings_overrides,
            "dashboard_users": "",
            "dashboard_password": DASHBOARD_PASSWORD + "-changed",
            "login_attempts_per_minute": 1,
        }
    )
    # The first app's remembered login does not open the second, whose password differs.
    assert other.test_client().get("/dashboard/", headers=basic(DASHBOARD_USER, DASHBOARD_PASSWORD)).status_code == 401
    assert other.test_client().get("/dashboard/", headers=basic(DASHBOARD_USER, DASHBOARD_PASSWORD)).status_code == 429


TOKEN = "deploy-token-" + "d" * 32


@pytest.fixture
def api_client(app, settings_overrides):  # `app` made the tables
    from app import create_app

    tokens = f"deployer:operate:{hash_secret(TOKEN, iterations=ROUNDS)}"
    return create_app({**settings_overrides, "api_tokens": tokens, "api_read_auth": "on"}).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_wrong_tokens_against_pbkdf2_hashes_are_bounded_too_and_a_verified_token_keeps_working(api_client):
    from app.models import JobRun

    assert api_client.get("/api/jobs/forecast/history", headers=bearer(TOKEN)).status_code == 200  # spent one
    for attempt in range(BUDGET - 1):
        assert api_client.get("/api/jobs/forecast/history", headers=bearer(f"guess-{attempt}")).status_code == 401
    runs, entries = JobRun.select().count(), AuditEntry.select().count()
    refused = api_client.post("/api/jobs/forecast/trigger", headers=bearer("guess"), json={})
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "too_many_login_attempts"
    assert int(refused.headers["Retry-After"]) >= 1
    assert (JobRun.select().count(), AuditEntry.select().count()) == (runs, entries)  # nothing changed, nothing logged
    assert api_client.get("/api/jobs/forecast/history", headers=bearer("guess")).status_code == 429
    assert api_client.get("/api/jobs/forecast/history", headers=bearer(TOKEN)).status_code == 200  # remembered
