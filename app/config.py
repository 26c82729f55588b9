"""Settings: the one module that reads the environment (and `.env`).

Variables set in the environment win over `.env`; keyword arguments win over both,
which is how tests and `create_app(test_config)` override a value.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from enum import Enum
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.catalog import JOBS
from app.credentials import Credential, CredentialError, Role, Scope, parse_credentials

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_URL = f"sqlite:///{PROJECT_ROOT / 'var' / 'forecast.db'}"

# Values shipped in .env.example; production refuses them like missing ones.
DEMO_SECRETS = {"", "change-me", "changeme", "secret", "admin", "password"}
# Production minimums: a bearer token is a machine secret (make run generates 32 characters);
# a dashboard password is typed by people, but not guessable from the user name.
MIN_API_TOKEN_LENGTH = 32
MIN_DASHBOARD_PASSWORD_LENGTH = 12


class ConfigError(Exception):
    """The settings cannot run in the selected environment."""


class ReadAuth(str, Enum):
    """API_READ_AUTH: whether read routes need the bearer token."""

    AUTO = "auto"  # in production yes, elsewhere no
    ON = "on"
    OFF = "off"


_READ_AUTH_ALIASES = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off", "": "auto"}


class Settings(BaseSettings):
    # ENV_FILE names another file to read instead of the project's `.env` (tests use /dev/null).
    # hide_input_in_errors: a refused setting's message must not quote the secrets beside it.
    model_config = SettingsConfigDict(
        env_file=os.environ.get("ENV_FILE", PROJECT_ROOT / ".env"),
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    redis_url: str = "redis://localhost:6379/0"
    # rediss:// certificate checks; Heroku Redis has a self-signed certificate (none, or name its CA).
    redis_ssl_cert_reqs: Literal["required", "optional", "none"] = "required"
    redis_ssl_ca_certs: str = ""
    database_url: str = DEFAULT_SQLITE_URL
    # The web process's listen address. All interfaces by default (Heroku, containers and the
    # systemd units need it); `make run` sets 127.0.0.1 unless HOST is given.
    host: str = Field("0.0.0.0", pattern=r"^[A-Za-z0-9.:\[\]-]+$")
    port: int = 8000
    app_env: str = "development"
    web_concurrency: int = Field(2, ge=1)  # gunicorn workers (Heroku sets WEB_CONCURRENCY)
    # gthread: each worker serves `web_threads` requests at once and keeps connections alive,
    # overlapping the Redis and PostgreSQL waits (sync: one request per worker, no keep-alive).
    web_worker_class: Literal["gthread", "sync"] = "gthread"
    web_threads: int = Field(4, ge=1, le=64)
    gunicorn_timeout: int = Field(30, ge=1)
    migration_lock_timeout: float = Field(300.0, gt=0)  # seconds a migrate waits for another one

    api_token: str = ""
    api_read_auth: ReadAuth = ReadAuth.AUTO
    dashboard_username: str = ""
    dashboard_password: str = ""
    # Named credentials with roles (docs/operations.md, "Roles and audit"): comma-separated
    # `name:viewer|operator:hash` and `name:read|operate:hash`, hashes from `flask hash-secret`.
    # API_TOKEN and DASHBOARD_USERNAME/DASHBOARD_PASSWORD keep working beside them, as operators.
    dashboard_users: str = ""
    api_tokens: str = ""
    # Dashboard password checks per minute per web process for credentials it has not verified
    # before (each PBKDF2 check costs ~0.5 s of CPU); over it, 429 (app/login_throttle.py). 0: no limit.
    login_attempts_per_minute: int = Field(10, ge=0)

    # Each job's cron (UTC) defaults to the catalogue's (app/core/catalog.py); these only override it.
    forecast_cron: str = JOBS["forecast"].default_cron
    daily_summary_cron: str = JOBS["daily-summary"].default_cron
    cleanup_cron: str = JOBS["cleanup"].default_cron
    scheduler_interval: float = Field(5.0, gt=0)
    scheduler_lock_ttl: int = Field(30, gt=0)

    # A killed worker's run is detected as abandoned within about
    # heartbeat interval + abandoned-after + maintenance interval seconds, then retried.
    worker_heartbeat_interval: int = Field(10, ge=1)
    worker_abandoned_after: int = Field(30, ge=1)
    worker_maintenance_interval: int = Field(30, ge=1)
    # Queues whose jobs each run in a fresh forked work-horse (a run's memory never outlives it);
    # jobs of the other queues run in the worker process itself, without a fork per job.
    worker_fork_queues: str = Field("forecast", pattern=r"^[\w.-]*(,[\w.-]+)*$")
    # Fork the next work-horse while idle (trigger -> start without a fork; one idle process more).
    worker_standby_horse: bool = True
    # RQ's own scheduler child in each worker (moves delayed retries back to their queue).
    # Off (0): the scheduler process does it, and every worker saves a process.
    worker_rq_scheduler: bool = False
    # SIGTERM: a forked (forecast) run is requeued at once; one running in the worker process
    # may finish within this many seconds, then is requeued (Heroku's SIGKILL follows at 30 s).
    worker_shutdown_grace: float = Field(20.0, ge=0)

    job_max_retries: int = Field(3, ge=0)
    job_retry_delay: int = Field(300, ge=0)
    job_timeout: int = Field(1800, gt=0)
    result_ttl: int = Field(3600, ge=0)

    alert_retention_days: int = Field(90, ge=1)
    history_retention_days: int = Field(90, ge=1)
    audit_retention_days: int = Field(365, ge=1)  # the weekly cleanup deletes older audit entries
    cleanup_batch_size: int = Field(20000, ge=1)  # 260k rows/s, writers wait < 10 ms (make bench)

    forecast_pipeline: str = "app.forecast.pipeline:run_pipeline"
    forecast_horizon_days: int = Field(14, ge=1, le=366)
    # A series whose data ends more than this many days before the horizon start is stale: a
    # `stale_data` alert for its line, never read as zero demand (app/forecast/pipeline.py).
    forecast_stale_days: int = Field(3, ge=0, le=365)
    # Capacity-warning severity: the probability that a line's load exceeds its capacity on some
    # day of the horizon (app/forecast/rules.py).
    capacity_high_probability: float = Field(0.5, gt=0, le=1)
    capacity_medium_probability: float = Field(0.2, gt=0, le=1)
    capacity_low_probability: float = Field(0.1, gt=0, le=1)
    spike_medium_score: float = 4.0
    spike_high_score: float = 8.0
    # Fan-out: a built-in forecast run with more series than the threshold is split into one
    # chunk job per live worker on the forecast queue, each of at most `forecast_chunk_size`
    # series (its memory bound); one worker alone runs a run that fits one chunk in one piece.
    forecast_fanout_threshold: int = Field(4000, ge=0)
    forecast_chunk_size: int = Field(16000, ge=1)
    # Test hook: "<chunk index>:<failures>" makes that chunk fail its first <failures> attempts.
    forecast_chunk_fault: str = Field("", pattern=r"^(\d+:\d+)?$")

    max_request_bytes: int = 64 * 1024
    log_level: str = "INFO"
    log_format: str = "text"

    # Slack-compatible incoming webhooks; empty: not posted. Their URLs are secrets (redacted in logs).
    summary_webhook_url: str = ""
    alert_webhook_url: str = ""
    webhook_timeout: float = Field(10.0, gt=0)
    # Operational alerts (a run failed for good, stopped or abandoned; a schedule overdue; a worker
    # lost), posted by the scheduler's ops step (app/core/ops_events.py); empty: ALERT_WEBHOOK_URL.
    ops_webhook_url: str = ""
    ops_overdue_grace: int = Field(300, ge=0)  # seconds after its fire time before a slot without a run is overdue
    ops_delivery_max_attempts: int = Field(8, ge=1)  # then the delivery is recorded `failed`
    ops_delivery_backoff: float = Field(30.0, gt=0)  # seconds before the 2nd attempt; doubles, at most 1 h
    ops_event_lookback_hours: int = Field(24, ge=1)  # runs that ended this long ago are still reported once

    @field_validator(*(spec.cron_setting for spec in JOBS.values()))
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        import crontab

        try:
            crontab.CronTab(value)
        except ValueError as exc:
            raise ValueError(f"invalid cron string {value!r}: {exc}") from None
        return value

    @field_validator("summary_webhook_url", "alert_webhook_url", "ops_webhook_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value and (urlparse(value).scheme not in ("http", "https") or not urlparse(value).netloc):
            raise ValueError("webhook URLs must be http:// or https:// URLs")
        return value

    @field_validator("app_env", mode="before")
    @classmethod
    def _env_name(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value  # "Production" is production

    @field_validator("api_read_auth", mode="before")
    @classmethod
    def _read_auth_aliases(cls, value: object) -> object:
        if isinstance(value, bool):
            return ReadAuth.ON if value else ReadAuth.OFF
        if isinstance(value, str):
            value = value.strip().lower()
            value = _READ_AUTH_ALIASES.get(value, value)
        return value

    @field_validator("dashboard_users", "api_tokens")
    @classmethod
    def _credentials(cls, value: str, info: ValidationInfo) -> str:
        grants = Role if info.field_name == "dashboard_users" else Scope
        try:
            parse_credentials(value, info.field_name.upper(), grants)
        except CredentialError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("log_format")
    @classmethod
    def _known_log_format(cls, value: str) -> str:
        if value not in ("text", "json"):
            raise ValueError("LOG_FORMAT must be 'text' or 'json'")
        return value

    @model_validator(mode="after")
    def _capacity_levels_in_order(self) -> "Settings":
        if not self.capacity_high_probability >= self.capacity_medium_probability >= self.capacity_low_probability:
            raise ValueError(
                "CAPACITY_HIGH_PROBABILITY >= CAPACITY_MEDIUM_PROBABILITY >= CAPACITY_LOW_PROBABILITY is required"
            )
        return self

    @model_validator(mode="after")
    def _one_login_per_name(self) -> "Settings":
        if self.dashboard_username and self.dashboard_username in {c.name for c in self.dashboard_user_credentials}:
            raise ValueError("DASHBOARD_USERS names DASHBOARD_USERNAME again: give each login once")
        return self

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> "Settings":
        """Production refuses missing, demo and weak secrets, naming each and why (never its value)."""
        if self.app_env == "production":
            problems = production_secret_problems(self)
            if problems:
                raise ValueError("APP_ENV=production needs real values for: " + "; ".join(problems))
        return self

    @property
    def read_auth_required(self) -> bool:
        """Whether read routes need the bearer token: API_READ_AUTH, or `auto` = production only."""
        if self.api_read_auth is ReadAuth.AUTO:
            return self.app_env == "production"
        return self.api_read_auth is ReadAuth.ON

    @property
    def dashboard_user_credentials(self) -> tuple[Credential, ...]:
        """DASHBOARD_USERS, parsed (validated when the settings were made)."""
        return parse_credentials(self.dashboard_users, "DASHBOARD_USERS", Role)

    @property
    def api_token_credentials(self) -> tuple[Credential, ...]:
        """API_TOKENS, parsed (validated when the settings were made); each scope as its role."""
        return parse_credentials(self.api_tokens, "API_TOKENS", Scope)

    @property
    def bind_address(self) -> str:
        """HOST:PORT for gunicorn (an IPv6 host in brackets)."""
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"

    @property
    def ops_webhook(self) -> str:
        """Where operational alerts go: OPS_WEBHOOK_URL, else ALERT_WEBHOOK_URL (empty: not posted)."""
        return self.ops_webhook_url or self.alert_webhook_url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def schedules(self) -> dict[str, str]:
        """Cron string per catalogue job, evaluated in UTC (its setting; the catalogue's default unless set)."""
        return {name: getattr(self, spec.cron_setting) for name, spec in JOBS.items()}


def production_secret_problems(settings: Settings) -> list[str]:
    """What makes the secrets unfit for production, one entry per variable (empty: fit)."""
    problems = []
    token = settings.api_token.strip()
    if not token and settings.api_tokens.strip():
        pass  # named tokens (API_TOKENS) instead of the single one
    elif token.lower() in DEMO_SECRETS:
        problems.append("API_TOKEN (missing or a demo value)")
    elif len(token) < MIN_API_TOKEN_LENGTH:
        problems.append(
            f"API_TOKEN (at least {MIN_API_TOKEN_LENGTH} characters; this one has {len(token)}; "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    user = settings.dashboard_username.strip()
    password = settings.dashboard_password.strip()
    if not (user or password) and settings.dashboard_users.strip():
        return problems  # named users (DASHBOARD_USERS) instead of the single login
    if user.lower() in DEMO_SECRETS:
        problems.append("DASHBOARD_USERNAME (missing or a demo value)")
    if password.lower() in DEMO_SECRETS:
        problems.append("DASHBOARD_PASSWORD (missing or a demo value)")
    elif len(password) < MIN_DASHBOARD_PASSWORD_LENGTH:
        problems.append(
            f"DASHBOARD_PASSWORD (at least {MIN_DASHBOARD_PASSWORD_LENGTH} characters; this one has {len(password)})"
        )
    elif user and password.lower() == user.lower():
        problems.append("DASHBOARD_PASSWORD (must not be the user name)")
    return problems


_current: Settings | None = None
# The settings of the app whose context is active (`using_settings`), over the process's.
_context_settings: ContextVar[Settings | None] = ContextVar("context_settings", default=None)


def get_settings() -> Settings:
    """The active app's settings, else the process's (read from the environment on first use)."""
    global _current
    active = _context_settings.get()
    if active is not None:
        return active
    if _current is None:
        _current = Settings()
    return _current


@contextlib.contextmanager
def using_settings(settings: Settings) -> Iterator[Settings]:
    """Inside, `get_settings()` answers `settings` (this thread or task only)."""
    token = _context_settings.set(settings)
    try:
        yield settings
    finally:
        _context_settings.reset(token)


def configure(settings: Settings | None) -> Settings | None:
    """Make `settings` the process's settings (None: read the environment again)."""
    global _current
    _current = settings
    return settings


def generate_secret(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)
