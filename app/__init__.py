"""Flask application factory (the `web` process).

Imports are inside `create_app`: gunicorn's master imports `app.config` (gunicorn.conf.py) and
with it this package; importing Flask, redis and peewee here kept ~20 MiB in the master that
only the workers use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app; `test_config` overrides settings and ignores `.env` (hermetic tests)."""
    from flask import Flask

    from app.config import Settings, configure, get_settings
    from app.connections import bind_database, database, redis_connection

    settings = Settings(_env_file=None, **test_config) if test_config else get_settings()
    configure(settings)

    from app.logging_setup import setup_logging

    setup_logging(settings, process="web")

    app = Flask(__name__, static_folder=None)
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        JSON_SORT_KEYS=False,
        TESTING=bool(test_config),
    )
    bind_database(settings, pooled=True)  # per-request connections come from a per-process pool
    app.extensions["redis"] = redis_connection(settings)

    @app.teardown_appcontext
    def close_database(exc=None):
        if not database.is_closed():
            database.close()

    from app.errors import register_error_handlers

    register_error_handlers(app)

    from app.api.schemas import reject_unsafe_url

    app.before_request(reject_unsafe_url)

    from app.api import alerts, health, jobs, openapi

    app.register_blueprint(health.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(openapi.bp)

    from app.api import reports

    app.register_blueprint(reports.bp)

    from app.api import forecast

    app.register_blueprint(forecast.bp)

    from app.api import schedules
    from app.metrics import init_metrics

    app.register_blueprint(schedules.bp)
    init_metrics(app)

    from dashboard import init_dashboard

    init_dashboard(app)

    from app import cli

    cli.register(app)
    return app
