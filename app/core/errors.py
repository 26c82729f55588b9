"""The service layer's exceptions: what a use case refuses, named, with what a caller may show.

Each adapter (API, dashboard, CLI) has one table mapping these to its own responses; nothing
here knows HTTP status codes or click. `message` is for people, `details` for machines.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A use case refused; the base of every domain error."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(ServiceError):
    """A value the service cannot act on (a malformed id or cursor, an out-of-range value)."""


class NotFound(ServiceError):
    """The thing named does not exist."""


class Conflict(ServiceError):
    """The thing exists but is in a state that forbids the request."""


class UnknownJobName(NotFound):
    """No catalogue job of that name."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown job {name[:50]!r}; known: {', '.join(known)}")
        self.name = name


class UnknownSchedule(NotFound):
    """No catalogue schedule of that name."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown schedule {name[:50]!r}; known: {', '.join(known)}")
        self.name = name


class InvalidRunId(InvalidInput):
    def __init__(self) -> None:
        super().__init__("invalid job id: 1-64 letters, digits, '_' or '-'")


class InvalidCursor(InvalidInput):
    def __init__(self) -> None:
        super().__init__("invalid cursor")


class ValueOutOfRange(InvalidInput):
    def __init__(self) -> None:
        super().__init__("a value is out of the range the database stores")


class RunMissing(NotFound):
    """No run with that id (of that job, when a job is named)."""

    def __init__(self, run_id: str, job_name: str | None = None) -> None:
        super().__init__(f"no {job_name} run with id {run_id}" if job_name else f"no run with id {run_id}")
        self.run_id = run_id
        self.job_name = job_name


class RunActive(Conflict):
    """A run of the same job is queued or running."""

    def __init__(self, job_name: str, active_id: str) -> None:
        super().__init__(f"a {job_name} run is already queued or running: {active_id}", active_job_id=active_id)
        self.job_name = job_name
        self.active_id = active_id


class RunEnded(Conflict):
    """The run has ended; there is nothing to cancel."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} already ended", run_status=status)
        self.run_id = run_id
        self.status = status


class ReportMissing(NotFound):
    """No daily report for that day (or none at all when no day is named)."""

    def __init__(self, day: str | None) -> None:
        super().__init__(f"no daily report for {day}" if day else "no daily report stored yet")
        self.day = day


class RunNotRetryable(Conflict):
    """Only an ended, unsuccessful run can be retried (a waiting or running run, or a finished one, cannot)."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(
            f"run {run_id} is {status}: only a failed, stopped, canceled or skipped run can be retried",
            run_status=status,
        )
        self.run_id = run_id
        self.status = status


class AlertMissing(NotFound):
    """No alert with that id."""

    def __init__(self, alert_id: object) -> None:
        super().__init__(f"no alert with id {str(alert_id)[:40]!r}")  # repr: no control character is echoed
        self.alert_id = alert_id


class AlertResolved(Conflict):
    """The alert is resolved (closed); a new sighting opens a new alert."""

    def __init__(self, alert_id: int, resolved_by: str | None) -> None:
        super().__init__(f"alert {alert_id} is already resolved", resolved_by=resolved_by)
        self.alert_id = alert_id


class InvalidTrendWindow(InvalidInput):
    """A trends window that is not one of the offered ones."""

    def __init__(self, value: str, known: list[str]) -> None:
        super().__init__(f"window must be one of {', '.join(known)}, not {value[:40]!r}")
