"""The job catalogue: the one list of the service's jobs, their functions, queues and default crons.

Everything that names a job reads it here: the API and CLI (which jobs exist), the scheduler
(what to register, on which queue), the worker (which queues, in which order) and the
settings, whose `*_CRON` variables only override a job's default cron. It imports nothing of
the project, so any layer may read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

# Worker priority order (SPEC section 3).
QUEUES = ("forecast", "reports", "maintenance", "default")


class HasSchedules(Protocol):
    """What a job reads of the settings (`app.config.Settings`, which imports this module)."""

    @property
    def schedules(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: str  # dotted path, enqueued by name so the web process never imports job code
    queue: str
    default_cron: str  # UTC; the setting `cron_setting` overrides it
    cron_setting: str  # the Settings field (and environment variable, upper-cased) of its cron
    # A run's work depends on its slot (the daily summary reports its slot's day): retrying the
    # failures since a time retries each failed slot, not only the newest (`app.core.jobs.retry_failed`).
    per_slot: bool = False

    def cron(self, settings: HasSchedules) -> str:
        return settings.schedules[self.name]


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec("forecast", "workers.jobs.run_scheduled_forecast", "forecast", "0 */2 * * *", "forecast_cron"),
        JobSpec(
            "daily-summary", "workers.jobs.generate_daily_summary", "reports", "0 8 * * *", "daily_summary_cron", True
        ),
        JobSpec("cleanup", "workers.jobs.cleanup_old_alerts", "maintenance", "0 0 * * 0", "cleanup_cron"),
    )
}


class UnknownJob(LookupError):
    """No job of that name in the catalogue."""


def get_job(name: str) -> JobSpec:
    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJob(name) from None
