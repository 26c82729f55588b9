"""The `scheduler` process: registers the cron schedules with rq-scheduler and runs its loop.

Designed around rq-scheduler's known pitfalls (SPEC section 10):
- one template job per schedule, fixed id, no expiry, never executed itself: at each fire
  time a fresh run (own id, own history row, retry policy) is enqueued;
- next fire times are computed in UTC, whatever the host's timezone;
- each slot is claimed in Redis (SET NX per schedule and fire time) and the scheduled run's id
  is derived from the slot (the row's primary key), so two schedulers never run a slot twice;
- the loop lock is released only by its owner, and Redis or database outages are survived.
It also moves delayed retries (RQ's ScheduledJobRegistry) back to their queues when due, RQ's
own scheduler step, so workers run without RQ's scheduler child process.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from datetime import datetime, timezone

import peewee
import redis.exceptions
from redis import Redis
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq_scheduler import Scheduler
from rq_scheduler.utils import to_unix

from app.config import Settings, get_settings
from app.connections import bind_database, db_session, redis_connection
from app.core import ops_events, scheduled
from app.core.catalog import JOBS, QUEUES, JobSpec
from app.logging_setup import setup_logging
from app.runs.keys import release_if_owner
from app.scheduling import PAUSED_KEY, TEMPLATE_PREFIX, next_fire_time, template_id, template_matches

log = logging.getLogger("scheduler")

SLOT_KEY = "forecast-service:slot:{name}:{epoch}"
SLOT_KEY_TTL = 7 * 24 * 3600
MAX_MISSED_RECORDED = 100  # per catch-up; a long outage of a fast schedule is not replayed row by row


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ServiceScheduler(Scheduler):
    """rq-scheduler with UTC cron, per-slot idempotent firing and an owned lock."""

    def __init__(self, settings: Settings, connection: Redis, **kwargs):
        super().__init__(connection=connection, interval=settings.scheduler_interval, **kwargs)
        self.settings = settings
        self._stop_event = threading.Event()
        # RQ's scheduler, driven step by step: its per-queue locks keep one mover per queue
        # even next to workers started with WORKER_RQ_SCHEDULER=1.
        self.retries = RQScheduler(
            list(QUEUES),
            connection=connection,
            interval=max(1, int(settings.scheduler_interval)),
            name=f"{self.name}-retries",
        )
        self._retry_keys = [ScheduledJobRegistry(name, connection=connection).key for name in QUEUES]

    # -- registration -------------------------------------------------------------------
    def register_schedules(self) -> list[str]:
        """Create or update the catalogue's templates; keep a matching one (and its next time)."""
        changed = []
        for spec in JOBS.values():
            cron = spec.cron(self.settings)
            registered = self.connection.zscore(self.scheduled_jobs_key, template_id(spec.name)) is not None
            if registered and template_matches(self.connection, spec, cron):
                continue
            self._register(spec, cron)
            changed.append(spec.name)
        for raw in self.connection.zrange(self.scheduled_jobs_key, 0, -1):
            job_id = raw.decode()
            if job_id.startswith(TEMPLATE_PREFIX) and job_id[len(TEMPLATE_PREFIX) :] not in JOBS:
                self.cancel(job_id)
        return changed

    def _register(self, spec: JobSpec, cron: str) -> None:
        job = self._create_job(
            spec.func,
            id=template_id(spec.name),
            queue_name=spec.queue,
            result_ttl=-1,
            description=f"schedule {spec.name} ({cron} UTC)",
            meta={"cron_string": cron, "schedule_name": spec.name, "use_local_timezone": False},
            commit=False,
        )
        job.save()
        self.connection.persist(job.key)  # a template never expires (rq-scheduler issues 42, 315)
        self.connection.zadd(self.scheduled_jobs_key, {job.id: to_unix(next_fire_time(cron, utcnow()))})
        log.info("schedule %s registered: %s UTC on queue %s", spec.name, cron, spec.queue)

    # -- firing -------------------------------------------------------------------------
    def enqueue_jobs(self):
        """Fire every due template once per slot; other scheduled jobs go through rq-scheduler."""
        due = list(self.get_jobs_to_queue(with_times=True))
        for job, slot in due:
            name = job.meta.get("schedule_name")
            if name is None:
                self.enqueue_job(job)
            else:
                self.fire(name, job.meta["cron_string"], slot.replace(tzinfo=timezone.utc))
        return [job for job, _ in due]

    def fire(self, name: str, cron: str, slot: datetime) -> str | None:
        """Run slot `slot` of schedule `name` at most once, then move the template to its next time."""
        outcome = None
        claimed = self.connection.set(
            SLOT_KEY.format(name=name, epoch=int(slot.timestamp())), self.name, nx=True, ex=SLOT_KEY_TTL
        )
        paused = self.connection.sismember(PAUSED_KEY, name)
        if claimed and paused:
            log.info("schedule %s slot %s not run: schedule paused", name, slot.isoformat())
            scheduled.record_missed_slot(name, slot.replace(tzinfo=None), "schedule paused")  # its trace in the history
        elif claimed:
            try:
                result = scheduled.run_slot(self.connection, self.settings, name, slot.replace(tzinfo=None))
            except Exception:
                # Un-claim so the next tick retries this slot once the database is back.
                self.connection.delete(SLOT_KEY.format(name=name, epoch=int(slot.timestamp())))
                raise
            if result is None:
                log.info("schedule %s slot %s already has a run", name, slot.isoformat())
            else:
                outcome = result.status.value
                log.info("schedule %s slot %s fired: run %s %s", name, slot.isoformat(), result.run_id, outcome)
        now = utcnow()
        if claimed and not paused:
            self._record_missed(name, cron, slot, now)
        next_time = next_fire_time(cron, max(now, slot))
        self.connection.zadd(self.scheduled_jobs_key, {template_id(name): to_unix(next_time)})
        return outcome

    def _record_missed(self, name: str, cron: str, caught_up: datetime, now: datetime) -> None:
        """Slots between the one just fired and now were missed (outage): record each as skipped."""
        missed = next_fire_time(cron, caught_up)
        for _ in range(MAX_MISSED_RECORDED):
            if missed > now:
                return
            key = SLOT_KEY.format(name=name, epoch=int(missed.timestamp()))
            if self.connection.set(key, self.name, nx=True, ex=SLOT_KEY_TTL):
                scheduled.record_missed_slot(
                    name,
                    missed.replace(tzinfo=None),
                    f"missed: scheduler or Redis unavailable; caught up by {caught_up.isoformat()}",
                )
            missed = next_fire_time(cron, missed)

    # -- delayed retries ------------------------------------------------------------------
    def move_due_retries(self) -> None:
        """Put delayed retries whose time has come back on their queues (RQ's scheduler step)."""
        if self.retries.should_reacquire_locks:
            self.retries.acquire_locks()
        if self.retries.acquired_locks:
            self.retries.heartbeat()
            self.retries.enqueue_scheduled_jobs()

    def _earliest_retry(self) -> float | None:
        with self.connection.pipeline() as pipe:
            for key in self._retry_keys:
                pipe.zrange(key, 0, 0, withscores=True)
            firsts = [entries[0][1] for entries in pipe.execute() if entries]
        return min(firsts) if firsts else None

    # -- lock -----------------------------------------------------------------------------
    def acquire_lock(self):
        self._lock_acquired = bool(
            self.connection.set(self.scheduler_lock_key, self.name, ex=self.settings.scheduler_lock_ttl, nx=True)
        )
        return self._lock_acquired

    def remove_lock(self):
        if self._lock_acquired:
            release_if_owner(self.connection, self.scheduler_lock_key, self.name)
            self._lock_acquired = False

    # -- loop -----------------------------------------------------------------------------
    def tick(self) -> None:
        self.heartbeat()
        if not self.acquire_lock():
            return
        try:
            with db_session():
                self.register_schedules()
                self.enqueue_jobs()
                self.move_due_retries()
                scheduled.reconcile(self.connection, self.settings)
                ops_events.ops_step(self.connection, self.settings, slot_key=SLOT_KEY)  # never raises; posts off-loop
        finally:
            self.remove_lock()

    def _sleep_time(self, tick_started: float) -> float:
        """Until the next poll, or the earliest fire time if sooner: slots fire on time, not up to an interval late."""
        wait = self._interval - (time.monotonic() - tick_started)
        try:
            earliest = self.connection.zrange(self.scheduled_jobs_key, 0, 0, withscores=True)
            retry_at = self._earliest_retry()
        except redis.exceptions.RedisError:
            earliest, retry_at = [], None
        if earliest:
            wait = min(wait, earliest[0][1] - time.time() + 0.005)
        if retry_at is not None and self.retries.acquired_locks:  # another mover's retries: its business
            wait = min(wait, max(0.05, retry_at - time.time() + 0.005))
        return max(0.0, wait)

    def stop(self, *_):
        self._stop_event.set()

    def run(self, burst: bool = False):
        """Poll every `scheduler_interval` seconds until SIGTERM/SIGINT; survive outages."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        registered = False
        while not self._stop_event.is_set():
            started = time.monotonic()
            try:
                if not registered:
                    self.register_birth()
                    registered = True
                self.tick()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("Redis unavailable (%s); retrying", type(exc).__name__)
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                log.warning("database unavailable (%s); retrying", type(exc).__name__)
            except Exception:
                log.exception("scheduler tick failed; retrying")
            if burst:
                break
            self._stop_event.wait(self._sleep_time(started))
        try:
            self.remove_lock()
            self.retries.release_locks()
            self.register_death()
        except redis.exceptions.RedisError:
            pass
        log.info("scheduler stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="cron scheduler for the forecast service")
    parser.add_argument("--burst", action="store_true", help="one tick, then exit")
    args = parser.parse_args(argv)
    settings = get_settings()
    setup_logging(settings, process="scheduler")
    bind_database(settings)
    scheduler = ServiceScheduler(settings, redis_connection(settings))
    log.info(
        "scheduler %s polling every %ss (UTC schedules: %s)",
        scheduler.name,
        settings.scheduler_interval,
        ", ".join(f"{n}={c}" for n, c in settings.schedules.items()),
    )
    scheduler.run(burst=args.burst)


if __name__ == "__main__":
    main()
