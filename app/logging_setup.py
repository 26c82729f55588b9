"""Logging for web, worker and scheduler: text or one JSON object a line, job id on every run line.

The job id reaches a line through a context variable the worker sets when it takes a job
(`set_job_context`, `logging_for_job`), so RQ's own lines about a run carry it too.

Every formatted line passes a redactor that removes the configured secrets (API token,
dashboard password, webhook URLs, the Redis and database passwords) and any URL password or
bearer token, so neither a message nor a traceback can leak them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import datetime, timezone
from urllib.parse import quote, unquote, urlsplit

from app.config import Settings

REDACTED = "***"

# The run a line belongs to: (job id, job name), set by the worker from the moment it dequeues
# a job until it has handled its outcome (`workers.worker.ServiceWorker`), in the worker process
# and, inherited across the fork, in its work-horse. RQ logs a run's dequeue, success, failure
# and retry lines outside `job.perform()`, where `rq.get_current_job()` is None.
_job_context: ContextVar[tuple[str, str] | None] = ContextVar("job_context", default=None)


def job_context(job) -> tuple[str, str]:
    """The (id, name) a job's log lines carry: the catalogue name in its meta, else its function."""
    return job.id, (job.meta or {}).get("job_name") or _safe_func_name(job)


def set_job_context(job) -> None:
    """From now on, this context's log lines belong to `job` (None: to no job)."""
    _job_context.set(job_context(job) if job is not None else None)


@contextlib.contextmanager
def logging_for_job(job) -> Iterator[None]:
    """Lines logged inside belong to `job`; the previous context is restored afterwards."""
    token = _job_context.set(job_context(job))
    try:
        yield
    finally:
        _job_context.reset(token)


class JobContextFilter(logging.Filter):
    """Adds the current job's id and name to each record (empty outside a job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _job_context.get()
        if context is None:
            context = _current_rq_job()  # a job run by a plain `rq worker` (inside `job.perform()`)
        job_id, job_name = context or ("", "")
        record.job_id = getattr(record, "job_id", job_id)
        record.job_name = getattr(record, "job_name", job_name)
        return True


def _current_rq_job() -> tuple[str, str] | None:
    try:
        from rq import get_current_job

        job = get_current_job()
    except Exception:  # outside a worker there is no job context
        return None
    return job_context(job) if job is not None else None


def _safe_func_name(job) -> str:
    try:
        return job.func_name
    except Exception:  # an undeserialisable job still gets its id logged
        return ""


class Redactor:
    """Replaces secrets in a formatted line: configured values, URL passwords, bearer tokens."""

    URL_PASSWORD = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@")
    BEARER = re.compile(r"(?i)(?P<prefix>\bbearer\s+)[A-Za-z0-9._~+/=-]{6,}")
    MIN_LENGTH = 4  # shorter values would redact ordinary words

    def __init__(self, secrets: Iterable[str] = ()):
        variants = set()
        for secret in secrets:
            if secret and len(secret) >= self.MIN_LENGTH:
                variants.update({secret, quote(secret, safe=""), json.dumps(secret)[1:-1]})
        self.secrets = sorted(variants, key=len, reverse=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Redactor":
        secrets = [
            settings.api_token,
            settings.dashboard_password,
            settings.summary_webhook_url,
            settings.alert_webhook_url,
        ]
        for url in (settings.summary_webhook_url, settings.alert_webhook_url):
            path = urlsplit(url).path if url else ""
            if len(path) > 1:
                secrets.append(path)  # Slack's token is the path
        for url in (settings.redis_url, settings.database_url):
            try:
                password = urlsplit(url).password
            except ValueError:
                password = None
            if password:
                secrets += [password, unquote(password)]
        return cls(secrets)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = self.URL_PASSWORD.sub(lambda m: m.group("prefix") + REDACTED + "@", text)
        return self.BEARER.sub(lambda m: m.group("prefix") + REDACTED, text)


class JSONFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor | None = None):
        super().__init__()
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": getattr(record, "service", ""),
            "message": record.getMessage(),
        }
        if record.job_id:
            payload["job_id"] = record.job_id
            payload["job_name"] = record.job_name
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(payload))


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str, redactor: Redactor | None = None):
        super().__init__(fmt)
        self.redact = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.job_id:
            line = line.replace(" :: ", f" [{record.job_name} {record.job_id}] ", 1)
        return self.redact(line.replace(" :: ", " ", 1))


def setup_logging(settings: Settings, process: str) -> None:
    """Configure the root logger once per process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_forecast_service", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._forecast_service = True
    handler.addFilter(JobContextFilter())

    def tag(record: logging.LogRecord) -> bool:
        record.service = process
        return True

    handler.addFilter(tag)
    redactor = Redactor.from_settings(settings)
    if settings.log_format == "json":
        handler.setFormatter(JSONFormatter(redactor))
    else:
        handler.setFormatter(TextFormatter(f"%(asctime)s %(levelname)s {process} %(name)s :: %(message)s", redactor))
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    if sys.unraisablehook is sys.__unraisablehook__:  # a test runner's own hook is left alone
        sys.unraisablehook = _log_unraisable


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """What Python cannot raise (in a finalizer or an at-fork callback: RQ's stop lands there when
    SIGTERM arrives while the worker forks) as a log line, not a bare traceback on stderr."""
    logging.getLogger("unraisable").warning(
        "%s: %r",
        unraisable.err_msg or "Exception ignored in",
        unraisable.object,
        exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback),  # type: ignore[arg-type]
    )
