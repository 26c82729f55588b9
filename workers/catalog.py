"""The job catalogue: each job's API name, function, queue and schedule setting."""
from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings

# Worker priority order (SPEC section 3).
QUEUES = ("forecast", "reports", "maintenance", "default")


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: str  # dotted path, enqueued by name so the web process never imports job code
    queue: str

    def cron(self, settings: Settings) -> str:
        return settings.schedules[self.name]


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec("forecast", "workers.jobs.run_scheduled_forecast", "forecast"),
        JobSpec("daily-summary", "workers.jobs.generate_daily_summary", "reports"),
        JobSpec("cleanup", "workers.jobs.cleanup_old_alerts", "maintenance"),
    )
}


class UnknownJob(LookupError):
    """No job of that name in the catalogue."""


def get_job(name: str) -> JobSpec:
    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJob(name) from None
