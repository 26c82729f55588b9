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


@pytest.mark.parametrize("secrets", [
    {},
    {"api_token": "change-me", "dashboard_username": "admin", "dashboard_password": "x7Gq2"},
    {"api_token": "k3yk3yk3y", "dashboard_username": "ops", "dashboard_password": ""},
])
def test_production_refuses_missing_or_demo_secrets(secrets):
    with pytest.raises(ValidationError, match="APP_ENV=production"):
        Settings(_env_file=None, app_env="production", **secrets)


def test_production_starts_with_real_secrets():
    Settings(_env_file=None, app_env="production", api_token="k3yk3yk3y-long", dashboard_username="ops",
             dashboard_password="pw-7a8b9c")


@pytest.mark.parametrize("field,value", [("forecast_cron", "every 2 hours"), ("log_format", "xml"),
                                         ("job_timeout", 0), ("scheduler_interval", -1)])
def test_invalid_values_are_rejected(field, value):
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **{field: value})


def test_postgres_scheme_is_accepted():
    from app.connections import make_database

    db = make_database("postgres://user:pw@db.example:5433/forecast")
    assert (db.database, db.connect_params["host"], db.connect_params["port"]) == ("forecast", "db.example", 5433)
