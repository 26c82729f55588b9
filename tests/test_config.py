"""Settings: environment over .env, validation, production refuses missing or demo secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings


def test_defaults_match_the_spec():
    s = Settings(_env_file=None)
    assert (s.forecast_cron, s.daily_summary_cron, s.cleanup_cron) == ("0 */2 * * *", "0 8 * * *", "0 0 * * 0")
    assert (s.job_max_retries, s.job_retry_delay, s.job_timeout, s.result_ttl) == (3, 300, 1800, 3600)
    assert (s.scheduler_interval, s.forecast_horizon_days, s.alert_retention_days) == (5, 14, 90)


def test_environment_wins_over_env_file(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("API_TOKEN=from-file\nPORT=9000\n")
    monkeypatch.setenv("API_TOKEN", "from-env")
    s = Settings(_env_file=env_file)
    assert (s.api_token, s.port) == ("from-env", 9000)


@pytest.mark.parametrize(
    "secrets",
    [
        {},
        {"api_token": "change-me", "dashboard_username": "admin", "dashboard_password": "x7Gq2"},
        {"api_token": "k3yk3yk3y", "dashboard_username": "ops", "dashboard_password": ""},
    ],
)
def test_production_refuses_missing_or_demo_secrets(secrets):
    with pytest.raises(ValidationError, match="APP_ENV=production"):
        Settings(_env_file=None, app_env="production", **secrets)


STRONG = {
    "api_token": "Vq3m9-kR2xW7tY1uZ8pL4nB6cD0eF5gH",
    "dashboard_username": "ops",
    "dashboard_password": "pw-7a8b9c-long",
}


def test_production_starts_with_real_secrets():
    s = Settings(_env_file=None, app_env="production", **STRONG)
    assert len(s.api_token) == 32 and s.read_auth_required


@pytest.mark.parametrize(
    "weak,named,why",
    [
        ({"api_token": "x"}, "API_TOKEN", "at least 32 characters; this one has 1"),
        ({"api_token": "Vq3m9-kR2xW7tY1uZ8pL4nB6cD0eF5g"}, "API_TOKEN", "at least 32 characters; this one has 31"),
        ({"dashboard_password": "pw-7a8b9c"}, "DASHBOARD_PASSWORD", "at least 12 characters; this one has 9"),
        (
            {"dashboard_username": "operator-one", "dashboard_password": "operator-one"},
            "DASHBOARD_PASSWORD",
            "must not be the user name",
        ),
        (
            {"dashboard_username": "Operator-One", "dashboard_password": " operator-one "},
            "DASHBOARD_PASSWORD",
            "must not be the user name",
        ),
        ({"dashboard_username": "ops", "dashboard_password": "ops"}, "DASHBOARD_PASSWORD", "at least 12 characters"),
        ({"dashboard_password": "Zq7#"}, "DASHBOARD_PASSWORD", "at least 12 characters; this one has 4"),
    ],
)
def test_production_refuses_weak_secrets_naming_each_without_echoing_it(weak, named, why):
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, app_env="production", **{**STRONG, **weak})
    message = str(refused.value)
    assert f"APP_ENV=production needs real values for: {named} ({why}" in message
    for value in weak.values():  # (pydantic would quote the input unless told not to)
        if len(value.strip()) >= 4:
            assert value.strip().lower() not in message.replace(named, "").lower()


def test_weak_secrets_are_fine_outside_production():
    Settings(_env_file=None, app_env="development", api_token="x", dashboard_username="a", dashboard_password="a")


def test_app_env_is_read_case_insensitively():
    with pytest.raises(ValidationError, match="APP_ENV=production"):
        Settings(_env_file=None, app_env=" Production ", api_token="x")


@pytest.mark.parametrize(
    "app_env,value,required",
    [
        ("production", None, True),
        ("production", "auto", True),
        ("production", "on", True),
        ("production", "off", False),
        ("production", "0", False),
        ("development", None, False),
        ("development", "1", True),
        ("development", "true", True),
        ("development", "off", False),
    ],
)
def test_read_auth_is_on_in_production_unless_turned_off(monkeypatch, app_env, value, required):
    if value is None:
        monkeypatch.delenv("API_READ_AUTH", raising=False)
    else:
        monkeypatch.setenv("API_READ_AUTH", value)
    assert Settings(_env_file=None, app_env=app_env, **STRONG).read_auth_required is required


def test_unknown_read_auth_value_is_refused():
    with pytest.raises(ValidationError, match="api_read_auth"):
        Settings(_env_file=None, api_read_auth="sometimes")


@pytest.mark.parametrize("host,bind", [(None, "0.0.0.0:8000"), ("127.0.0.1", "127.0.0.1:8000"), ("::1", "[::1]:8000")])
def test_host_gives_the_bind_address(host, bind):
    s = Settings(_env_file=None, **({"host": host} if host else {}))
    assert s.bind_address == bind


@pytest.mark.parametrize(
    "field,value",
    [("forecast_cron", "every 2 hours"), ("log_format", "xml"), ("job_timeout", 0), ("scheduler_interval", -1)],
)
def test_invalid_values_are_rejected(field, value):
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **{field: value})


def test_postgres_scheme_is_accepted():
    from app.connections import make_database

    db = make_database("postgres://user:pw@db.example:5433/forecast")
    assert (db.database, db.connect_params["host"], db.connect_params["port"]) == ("forecast", "db.example", 5433)
