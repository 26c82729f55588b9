"""The job functions RQ runs (enqueued by dotted path from the catalogue).

Thin adapters: each runs inside the run tracking (`app.runs.tracking.tracked`) and calls its use
case in the service layer (`app.core.reports`, `app.core.maintenance`); the forecast's own
pipeline and fan-out stay beside the workers.
"""

from __future__ import annotations

import importlib
import logging

from app import notify
from app.alert_store import store_alerts
from app.config import Settings
from app.connections import database
from app.core import maintenance, reports
from app.runs.tracking import tracked

log = logging.getLogger(__name__)


class PipelineNotFound(ImportError):
    """FORECAST_PIPELINE does not name an importable `module:function`."""


def load_pipeline(path: str):
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise PipelineNotFound(f"FORECAST_PIPELINE={path!r} is not an importable module:function") from exc


@tracked("forecast")
def run_scheduled_forecast(job_id: str, settings: Settings) -> dict:
    """Run the configured pipeline and store its alerts (refreshing open ones).

    The built-in pipeline runs in `workers.forecast_chunks`: a large run is fanned out over
    the workers and finished by its gather job (this job then returns at once).
    """
    from rq import get_current_job

    from app.runs import lifecycle
    from workers import forecast_chunks

    if settings.forecast_pipeline == forecast_chunks.BUILTIN:
        return forecast_chunks.run_forecast(job_id, settings, get_current_job())
    pipeline = load_pipeline(settings.forecast_pipeline)
    log.info("running forecast pipeline %s", settings.forecast_pipeline)
    candidates = pipeline(settings)
    with database.atomic():
        attempt = lifecycle.taken_attempt(job_id)
        if attempt is not None:
            lifecycle.check_attempt(job_id, attempt)  # a replaced attempt stores nothing
        outcome = store_alerts(candidates, job_id=job_id)
    # Committed first: a webhook that fails or hangs cannot lose or hold up the alerts.
    notify.notify_high_alerts(settings, outcome.created)
    return {
        "status": "completed",
        "alerts_generated": outcome.new + outcome.updated,
        "new_alerts": outcome.new,
        "updated_alerts": outcome.updated,
        "summary": {f"{sev}_severity": n for sev, n in outcome.by_severity.items()},
    }


@tracked("daily-summary")
def generate_daily_summary(job_id: str, settings: Settings) -> dict:
    """Report on the previous UTC day (`app.core.reports.generate_daily_report`); re-running the day
    replaces its stored report, and a webhook failure raises so RQ retries the run."""
    return {"status": "completed", **reports.generate_daily_report(job_id, settings)}


@tracked("cleanup")
def cleanup_old_alerts(job_id: str, settings: Settings) -> dict:
    """Delete what outlived its retention (`app.core.maintenance.cleanup`)."""
    deleted = maintenance.cleanup(settings)
    log.info(
        "cleanup deleted %d alerts (%d sightings), %d runs, %d recorded forecasts and %d audit entries",
        deleted["deleted_alerts"],
        deleted["deleted_sightings"],
        deleted["deleted_runs"],
        deleted["deleted_forecasts"],
        deleted["deleted_audit_entries"],
    )
    return {"status": "completed", **deleted}
