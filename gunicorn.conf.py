"""gunicorn settings for the `web` process, from the service's settings (HOST, PORT, WEB_CONCURRENCY,
WEB_WORKER_CLASS, WEB_THREADS, GUNICORN_TIMEOUT, LOG_FORMAT, LOG_LEVEL):
`gunicorn -c gunicorn.conf.py 'app:create_app()'`.

The values come from app.config, the one module that reads the environment, so gunicorn and
the app agree (and APP_ENV=production without real secrets stops gunicorn before it binds).
gunicorn's own error and access lines go through the service's log handler: the same text or
JSON lines, redacted, as the app's.
"""

from __future__ import annotations

import logging

from gunicorn.glogging import Logger

from app.config import get_settings
from app.logging_setup import setup_logging

_settings = get_settings()

bind = _settings.bind_address  # HOST (all interfaces by default; `make run`: 127.0.0.1) and PORT
workers = _settings.web_concurrency
worker_class = _settings.web_worker_class
threads = _settings.web_threads  # gthread only; a pool of up to 32 database connections per worker
timeout = _settings.gunicorn_timeout
graceful_timeout = _settings.gunicorn_timeout
keepalive = 5  # seconds an idle client connection stays open (gthread; sync closes after each request)
# Which proxies may set X-Forwarded-Proto: gunicorn reads FORWARDED_ALLOW_IPS itself (set it to
# '*' behind Heroku's router, whose addresses vary; see docs/operations.md, Deploying).
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
loglevel = _settings.log_level.lower()
# gunicorn 25+ opens a control socket at one fixed path per user: two web processes on a host
# (systemd units, tests) would fight over it, and the platform manages the process anyway.
control_socket_disable = True


class ServiceLogger(Logger):
    """gunicorn's logger with its records handed to the service's root handler."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        setup_logging(_settings, process="web")
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.propagate = True
        self.access_log.setLevel(logging.INFO)


logger_class = ServiceLogger
