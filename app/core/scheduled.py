"""Use cases the scheduler performs: run a cron slot, record a slot that did not run, reconcile.

The scheduler process (scheduler.py) owns its slot claims and templates in Redis; what happens
to the service's runs when a slot fires is a use case like a manual trigger, written here once
on top of the run lifecycle (`app.runs`). A slot that already has a run (the unique slot row
exists: another scheduler got there first) is an outcome, not an error.
"""

from __future__ import annotations

from datetime import datetime

import peewee
from redis import Redis

from app import runs
from app.config import Settings


def run_slot(redis: Redis, settings: Settings, name: str, slot: datetime) -> runs.EnqueueOutcome | None:
    """Queue the scheduled run of slot `slot` (naive UTC) of job `name`; None when the slot has a run already.

    A run of the same job still active makes the slot `skipped` (`runs.enqueue_run` records it).
    """
    try:
        return runs.enqueue_run(name, redis=redis, settings=settings, trigger="scheduled", slot=slot)
    except peewee.IntegrityError:
        return None


def record_missed_slot(name: str, slot: datetime, reason: str) -> str | None:
    """Record a slot that never ran (an outage, a paused schedule) as a `skipped` run saying why;
    None when the slot has a run already."""
    try:
        return runs.record_skipped_slot(name, slot, reason)
    except peewee.IntegrityError:
        return None


def reconcile(redis: Redis, settings: Settings) -> int:
    """Bring unfinished runs in line with RQ (runs no worker reported on); how many changed."""
    return runs.reconcile(redis, settings)
