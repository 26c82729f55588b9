"""The Celery peer for the benchmark: Redis broker and result backend, one no-op task.

    celery -A bench.celery_app worker -c 2       # prefork pool
    celery -A bench.celery_app beat / flower     # for the idle-memory comparison

BENCH_CELERY_URL names the Redis database (the benchmark uses its own Redis, db 1).
"""

from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

URL = os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/1")

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_default_queue="bench-celery",
    timezone="UTC",
    # beat's schedule for the memory comparison: the three jobs of the old design, as cron
    beat_schedule={
        "forecast": {"task": "bench.celery_app.noop", "schedule": crontab(minute=0, hour="*/2")},
        "daily-summary": {"task": "bench.celery_app.noop", "schedule": crontab(minute=0, hour=8)},
        "cleanup": {"task": "bench.celery_app.noop", "schedule": crontab(minute=0, hour=0, day_of_week=0)},
    },
)


@app.task(name="bench.celery_app.noop")
def noop() -> None:
    return None
