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
    from contextlib import ExitStack

    from flask import Flask, appcontext_pushed, g

    from app.config import Settings, configure, get_settings, using_settings
    from app.connections import bind_process_database, database, make_database, redis_connection, using_database
    from app.login_throttle import LoginThrottle

    settings = Settings(_env_file=None, **test_config) if test_config else get_settings()
    configure(settings)  # the process's default, for code outside any app context (as the last app's)

    from app.logging_setup import setup_logging

    setup_logging(settings, process="web")

    app = Flask(__name__, static_folder=None)
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        JSON_SORT_KEYS=False,
        TESTING=bool(test_config),
    )
    # This app's own database, Redis and settings: every context of this app uses them, whatever
    # other app the process created since. Per-request connections come from this app's pool.
    app_database = make_database(settings.database_url, pooled=True)
    app.extensions["database"] = app_database
    app.extensions["redis"] = redis_connection(settings)
    app.extensions["login_throttle"] = LoginThrottle(settings.login_attempts_per_minute)
    bind_process_database(app_database)  # code outside any app context (scripts, tests) uses the last app's

    def enter_app_context(sender: Flask, **extra) -> None:
        stack = ExitStack()
        stack.enter_context(using_database(app_database))
        stack.enter_context(using_settings(settings))
        g._service_context = stack

    appcontext_pushed.connect(enter_app_context, app, weak=False)

    @app.teardown_appcontext
    def close_database(exc=None):
        try:
            if not database.is_closed():
                database.close()
        finally:
            stack = g.pop("_service_context", None)
            if stack is not None:
                stack.close()

    from app.errors import register_error_handlers

    register_error_handlers(app)

    from app.api.schemas import reject_unsafe_url

    app.before_request(reject_unsafe_url)

    @app.after_request
    def no_sniffing(response):
        # The dashboards' CSP allows same-origin scripts: no response may be sniffed into one.
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    from app.api import alerts, health, index, jobs, openapi

    app.register_blueprint(index.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(openapi.bp)

    from app.api import reports

    app.register_blueprint(reports.bp)

    from app.api import forecast, trends

    app.register_blueprint(forecast.bp)
    app.register_blueprint(trends.bp)

    from app.api import runs

    app.register_blueprint(runs.bp)

    from app.api import schedules
    from app.metrics import init_metrics

    app.register_blueprint(schedules.bp)
    init_metrics(app)

    from app.api.audit import init_api_audit

    init_api_audit(app)  # GET /api/audit, and every mutating /api request checked and recorded

    from dashboard import init_dashboard

    init_dashboard(app)

    from app import cli

    cli.register(app)

    from app.api.fast_reads import FastReads

    app.wsgi_app = FastReads(app, app.wsgi_app)  # type: ignore[method-assign]
    return app
