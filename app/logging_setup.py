"""Logging for web, worker and scheduler: text or one JSON object a line, job id on every run line."""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from app.config import Settings


class JobContextFilter(logging.Filter):
    """Adds the current RQ job's id and name to each record (empty outside a job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = job_name = ""
        try:
            from rq import get_current_job

            job = get_current_job()
        except Exception:  # outside a worker there is no job context
            job = None
        if job is not None:
            job_id = job.id
            job_name = (job.meta or {}).get("job_name", job.func_name)
        record.job_id = getattr(record, "job_id", job_id)
        record.job_name = getattr(record, "job_name", job_name)
        return True


class JSONFormatter(logging.Formatter):
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
        return json.dumps(payload)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.job_id:
            line = line.replace(" :: ", f" [{record.job_name} {record.job_id}] ", 1)
        return line.replace(" :: ", " ", 1)


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
    if settings.log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(TextFormatter(f"%(asctime)s %(levelname)s {process} %(name)s :: %(message)s"))
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
