"""Cron schedules as rq-scheduler holds them, evaluated in UTC.

rq-scheduler keeps one template job per cron schedule in its sorted set, scored by the next
fire time. The service's templates have fixed ids (`schedule-<job name>`), no expiry, and
are never executed themselves: at each fire time the scheduler enqueues a fresh run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import crontab
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq_scheduler import Scheduler

from app.config import Settings
from app.core.catalog import JOBS, JobSpec
from app.models import JobRun

TEMPLATE_PREFIX = "schedule-"
PAUSED_KEY = "forecast-service:paused-schedules"


class InvalidCron(ValueError):
    """A schedule's cron string does not parse."""


def template_id(job_name: str) -> str:
    return f"{TEMPLATE_PREFIX}{job_name}"


def next_fire_time(cron: str, after: datetime) -> datetime:
    """The first fire time strictly after `after`, in UTC (host timezone ignored)."""
    if after.tzinfo is None:
        after = after.replace(tzinfo=timezone.utc)
    try:
        tab = crontab.CronTab(cron)
    except ValueError as exc:
        raise InvalidCron(f"{cron!r}: {exc}") from None
    return tab.next(now=after.astimezone(timezone.utc), default_utc=True, return_datetime=True).astimezone(timezone.utc)


@dataclass
class ScheduleInfo:
    name: str
    cron: str
    queue: str
    func: str
    registered: bool
    paused: bool
    next_run: datetime | None
    last_run: JobRun | None


def read_schedules(redis: Redis, settings: Settings) -> list[ScheduleInfo]:
    """The catalogue's schedules with their next fire time in Redis and last run in the database."""
    with redis.pipeline() as pipe:
        for name in JOBS:
            pipe.zscore(Scheduler.scheduled_jobs_key, template_id(name))
        pipe.smembers(PAUSED_KEY)
        *scores, paused = pipe.execute()
    paused_names = {p.decode() for p in paused}
    infos = []
    for (name, spec), score in zip(JOBS.items(), scores):
        last = (
            JobRun.select()
            .where((JobRun.job_name == name) & (JobRun.trigger == "scheduled"))
            .order_by(JobRun.enqueued_at.desc())
            .first()
        )
        infos.append(
            ScheduleInfo(
                name=name,
                cron=spec.cron(settings),
                queue=spec.queue,
                func=spec.func,
                registered=score is not None,
                paused=name in paused_names,
                next_run=datetime.fromtimestamp(score, timezone.utc) if score is not None else None,
                last_run=last,
            )
        )
    return infos


def template_matches(redis: Redis, spec: JobSpec, cron: str) -> bool:
    """True when the registered template has this cron string and queue (so it is kept)."""
    try:
        job = Job.fetch(template_id(spec.name), connection=redis)
    except NoSuchJobError:
        return False
    return job.meta.get("cron_string") == cron and job.origin == spec.queue and job.func_name == spec.func
