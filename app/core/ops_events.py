"""Operational events: detected by the scheduler's ops step, recorded once, posted through an outbox.

Why an outbox: nobody was told when a run failed for good, a schedule missed its slot or a
worker died. An event is a row (`OpsEvent`, unique `dedup_key`) written in one transaction
with its `WebhookDelivery` row; posting happens later, off the run's path, with retries and
backoff, and every attempt's outcome is recorded. So a slow or failing receiver never blocks
a run or a cron slot, and an event is neither lost nor doubled when a process dies:
detection is idempotent (the unique key), delivery is claimed row by row (compare-and-set).

What is detected, each tick of the scheduler (`ops_step`, after `runs.reconcile`):
- runs that ended `failed` (retries exhausted: RQ only fails a run for good), `stopped`, or
  failed as abandoned (their worker died, or their job vanished from Redis), from the run
  rows themselves, which carry the state change: a run row that ended is the durable fact,
  found again after any outage within OPS_EVENT_LOOKBACK_HOURS (and never before this
  module's migration was applied: no flood of old failures on the first deploy);
- a schedule whose latest slot is past due + OPS_OVERDUE_GRACE with no run recorded for it
  (or recorded as missed), while the schedule is not paused; one event per slot;
- a worker whose heartbeat is older than its deadline (`app.core.stats.heartbeat_deadline`),
  or that vanished from RQ without a death record; one event per worker life (name and birth).

Redis keys owned here: `WATCH_KEY` (since when each schedule's cron has been watched, so a new
or changed cron never reports slots from before), `KNOWN_WORKERS_KEY` (the live workers the
last step saw: RQ forgets a dead one within seconds) and `STEP_KEY` (the ops step's
heartbeat, which the health summary reads to tell whether any scheduler runs).
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import peewee
from redis import Redis
from redis.exceptions import RedisError
from rq import Worker
from rq.worker import BaseWorker

from app.config import Settings
from app.connections import database, db_session
from app.core.catalog import JOBS
from app.core.stats import LOST, worker_state
from app.migrations import SchemaMigration
from app.models import JobRun, OpsEvent, WebhookDelivery, iso, utcnow
from app.notify import NotifyError, ops_message, post_json, safe_target
from app.scheduling import PAUSED_KEY, InvalidCron

log = logging.getLogger(__name__)

WATCH_KEY = "forecast-service:ops:schedule-watch"  # hash: schedule name -> "<epoch> <cron>"
KNOWN_WORKERS_KEY = "forecast-service:ops:known-workers"  # hash: worker name -> JSON of its last sighting
STEP_KEY = "forecast-service:ops:last-step"  # epoch of the last ops step (expires: no scheduler)
STEP_KEY_TTL = 120
MAX_BACKOFF = 3600.0
DELIVERY_BATCH = 20
RUN_SCAN_LIMIT = 200
LOST_WORKER_SHOWN = timedelta(hours=1)  # a lost worker's event keeps it on the page this long
MIGRATION_VERSION = "0008"


class EventKind(str, enum.Enum):
    RUN_FAILED = "run_failed"  # retries exhausted
    RUN_STOPPED = "run_stopped"
    RUN_ABANDONED = "run_abandoned"  # its worker died, or its job vanished from Redis
    SCHEDULE_OVERDUE = "schedule_overdue"
    WORKER_LOST = "worker_lost"


RUN_KINDS = (EventKind.RUN_FAILED, EventKind.RUN_STOPPED, EventKind.RUN_ABANDONED)


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # OPS_DELIVERY_MAX_ATTEMPTS posts failed


@dataclass(frozen=True)
class OverdueSlot:
    name: str
    cron: str
    slot: datetime  # naive UTC
    missed: bool  # a row says the slot was missed (scheduler or Redis down); else no row at all


# --- recording ------------------------------------------------------------------------------------


def record_event(
    settings: Settings,
    kind: EventKind,
    dedup_key: str,
    subject: str,
    message: str,
    *,
    job_name: str | None = None,
    run_id: str | None = None,
    run_attempts: int | None = None,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> OpsEvent | None:
    """Record the event and its pending delivery in one transaction; None if `dedup_key` was recorded."""
    now = now or utcnow()
    try:
        with database.atomic():
            event = OpsEvent.create(
                kind=kind.value,
                dedup_key=dedup_key[:200],
                subject=subject[:200],
                job_name=job_name,
                run_id=run_id,
                run_attempts=run_attempts,
                message=message,
                details=details or {},
                created_at=now,
            )
            if settings.ops_webhook:
                WebhookDelivery.create(
                    event=event,
                    target=safe_target(settings.ops_webhook),
                    status=DeliveryStatus.PENDING.value,
                    next_attempt_at=now,
                    created_at=now,
                )
    except peewee.IntegrityError:
        return None
    log.warning("ops event %s: %s", kind.value, message)
    return event


# --- detection: runs ------------------------------------------------------------------------------

_floor_cache: list[datetime | None] = []


def _migration_floor() -> datetime | None:
    """When migration 0008 was applied (events start then); None on a schema made by create_tables."""
    if _floor_cache:
        return _floor_cache[0]
    if not database.table_exists(SchemaMigration._meta.table_name):
        return None  # not cached: `migrate` may run later
    with database.bind_ctx([SchemaMigration]):
        row = SchemaMigration.get_or_none(SchemaMigration.version == MIGRATION_VERSION)
    if row is None:
        return None
    _floor_cache.append(row.applied_at)
    return row.applied_at


def run_event_kind(status: str, error: str | None) -> EventKind | None:
    """The event an ended run raises: failed (for good), stopped, abandoned; None for the others."""
    if status == "stopped":
        return EventKind.RUN_STOPPED
    if status != "failed":
        return None
    if error and (error.startswith("abandoned") or error.startswith("lost:")):
        return EventKind.RUN_ABANDONED
    return EventKind.RUN_FAILED


_RUN_TITLES = {
    EventKind.RUN_FAILED: "failed for good",
    EventKind.RUN_STOPPED: "stopped",
    EventKind.RUN_ABANDONED: "abandoned",
}


def detect_run_events(settings: Settings, now: datetime | None = None) -> list[OpsEvent]:
    """Record an event for each run that ended failed or stopped and has none for its attempt count."""
    now = now or utcnow()
    since = now - timedelta(hours=settings.ops_event_lookback_hours)
    floor = _migration_floor()
    if floor is not None and floor > since:
        since = floor
    recorded = OpsEvent.select(OpsEvent.id).where(
        (OpsEvent.run_id == JobRun.id) & (OpsEvent.run_attempts == JobRun.attempts)
    )
    rows = (
        JobRun.select(JobRun.id, JobRun.job_name, JobRun.status, JobRun.error, JobRun.attempts, JobRun.ended_at)
        .where(JobRun.status.in_(["failed", "stopped"]) & (JobRun.ended_at >= since) & ~peewee.fn.EXISTS(recorded))
        .order_by(JobRun.ended_at)
        .limit(RUN_SCAN_LIMIT)
    )
    events = []
    for row in rows:
        kind = run_event_kind(row.status, row.error)
        if kind is None:
            continue
        reason = f": {row.error}" if row.error else ""
        message = f"{row.job_name} run {row.id} {_RUN_TITLES[kind]} after {row.attempts} attempt(s){reason}"
        event = record_event(
            settings,
            kind,
            f"run:{row.id}:{row.attempts}",
            row.id,
            message[:2000],
            job_name=row.job_name,
            run_id=row.id,
            run_attempts=row.attempts,
            details={"status": row.status, "attempts": row.attempts, "error": row.error, "ended_at": iso(row.ended_at)},
            now=now,
        )
        if event is not None:
            events.append(event)
    return events


# --- detection: schedules -------------------------------------------------------------------------


def latest_due_slot(cron: str, now: datetime, grace: float) -> datetime:
    """The newest fire time at or before `now - grace`, naive UTC."""
    import crontab

    cutoff = (now - timedelta(seconds=grace)).replace(tzinfo=timezone.utc) + timedelta(seconds=1)
    try:
        slot: datetime = crontab.CronTab(cron).previous(now=cutoff, default_utc=True, return_datetime=True)
    except ValueError as exc:
        raise InvalidCron(f"{cron!r}: {exc}") from None
    return slot.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _watched_since(redis: Redis, name: str, cron: str, now: datetime, write: bool) -> datetime | None:
    """Since when this schedule has been watched with this cron; starts (write=True) or restarts the watch."""
    raw = redis.hget(WATCH_KEY, name)
    if raw is not None:
        epoch, _, watched_cron = _text(raw).partition(" ")
        if watched_cron == cron:
            return datetime.fromtimestamp(float(epoch), timezone.utc).replace(tzinfo=None)
    if write:
        redis.hset(WATCH_KEY, name, f"{now.replace(tzinfo=timezone.utc).timestamp():.0f} {cron}")
    return None


def overdue_slots(
    redis: Redis,
    settings: Settings,
    now: datetime | None = None,
    *,
    slot_key: str | None = None,
    write: bool = False,
) -> list[OverdueSlot]:
    """Schedules whose latest slot past due + OPS_OVERDUE_GRACE has no run (or a missed one), not paused.

    `slot_key` (the scheduler's per-slot claim key, `{name}` and `{epoch}`): a claimed slot
    with no row was claimed while paused, so it is not overdue. `write`: start watching
    schedules seen for the first time (the scheduler does; readers only look).
    """
    now = now or utcnow()
    paused = {_text(p) for p in redis.smembers(PAUSED_KEY)}
    found = []
    for name, spec in JOBS.items():
        cron = spec.cron(settings)
        since = _watched_since(redis, name, cron, now, write)
        if since is None or name in paused:
            continue
        slot = latest_due_slot(cron, now, settings.ops_overdue_grace)
        if slot < since:
            continue
        row = (
            JobRun.select(JobRun.status, JobRun.error).where((JobRun.job_name == name) & (JobRun.slot == slot)).first()
        )
        if row is not None:
            if row.status == "skipped" and (row.error or "").startswith("missed"):
                found.append(OverdueSlot(name, cron, slot, missed=True))
            continue
        if slot_key and redis.exists(
            slot_key.format(name=name, epoch=int(slot.replace(tzinfo=timezone.utc).timestamp()))
        ):
            continue
        found.append(OverdueSlot(name, cron, slot, missed=False))
    return found


def overdue_message(item: OverdueSlot, grace: float) -> str:
    how = "was missed (scheduler or Redis unavailable)" if item.missed else f"has no run {grace:g} s after its time"
    return f"schedule {item.name} is overdue: its {item.slot:%Y-%m-%d %H:%M} UTC slot ({item.cron}) {how}"


def detect_overdue(
    redis: Redis, settings: Settings, now: datetime | None = None, *, slot_key: str | None = None
) -> list[OpsEvent]:
    now = now or utcnow()
    events = []
    for item in overdue_slots(redis, settings, now, slot_key=slot_key, write=True):
        epoch = int(item.slot.replace(tzinfo=timezone.utc).timestamp())
        event = record_event(
            settings,
            EventKind.SCHEDULE_OVERDUE,
            f"overdue:{item.name}:{epoch}",
            item.name,
            overdue_message(item, settings.ops_overdue_grace),
            job_name=item.name,
            details={"slot": iso(item.slot), "cron": item.cron, "missed": item.missed},
            now=now,
        )
        if event is not None:
            events.append(event)
    return events


def open_overdue(settings: Settings, now: datetime | None = None) -> list[OpsEvent]:
    """Recorded overdue events whose slot is still the schedule's latest due one and still has no run."""
    now = now or utcnow()
    out = []
    latest = {
        name: latest_due_slot(spec.cron(settings), now, settings.ops_overdue_grace) for name, spec in JOBS.items()
    }
    recent = OpsEvent.select().where(
        (OpsEvent.kind == EventKind.SCHEDULE_OVERDUE.value) & (OpsEvent.created_at >= now - timedelta(days=2))
    )
    for event in recent.order_by(OpsEvent.created_at.desc()):
        slot_text = (event.details or {}).get("slot")
        if event.subject not in latest or not slot_text:
            continue
        slot = datetime.fromisoformat(slot_text.rstrip("Z"))
        if slot != latest[event.subject]:
            continue
        ran = (
            JobRun.select(JobRun.id)
            .where((JobRun.job_name == event.subject) & (JobRun.slot == slot) & (JobRun.status != "skipped"))
            .exists()
        )
        if not ran:
            out.append(event)
    return out


# --- detection: workers ---------------------------------------------------------------------------


def _worker_info(worker: BaseWorker) -> dict[str, Any]:
    return {
        "name": worker.name,
        "birth": int(worker.birth_date.timestamp()) if worker.birth_date else 0,
        "last_heartbeat": iso(worker.last_heartbeat),
        "queues": worker.queue_names(),
        "hostname": worker.hostname,
        "pid": worker.pid,
        "current_job": worker.get_current_job_id(),
    }


def detect_lost_workers(redis: Redis, settings: Settings, now: datetime | None = None) -> list[OpsEvent]:
    """Record a lost worker: listed past its heartbeat deadline, or gone from RQ without a death record.

    RQ drops a dead worker's key as soon as its last heartbeat's TTL runs out (seconds to a
    minute), so each step remembers the live workers (`KNOWN_WORKERS_KEY`): one that vanished
    without `register_death` (a clean stop writes it) died. One event per worker life.
    """
    now = now or utcnow()
    known = {_text(k): json.loads(v) for k, v in redis.hgetall(KNOWN_WORKERS_KEY).items()}
    listed = Worker.all(connection=redis)
    lost = []
    for worker in listed:
        info = _worker_info(worker)
        if worker_state(worker, settings, now) == LOST:
            lost.append(info)
        else:
            redis.hset(KNOWN_WORKERS_KEY, worker.name, json.dumps(info))
    listed_names = {w.name for w in listed}
    for name, info in known.items():
        if name in listed_names:
            continue
        if redis.hexists(Worker.redis_worker_namespace_prefix + name, "death"):
            redis.hdel(KNOWN_WORKERS_KEY, name)  # stopped cleanly
            continue
        lost.append(info)
    events = []
    for info in lost:
        doing = f" while running {info['current_job']}" if info.get("current_job") else ""
        message = (
            f"worker {info['name']} on {info.get('hostname') or '?'} (pid {info.get('pid')}) is lost{doing}: "
            f"last heartbeat {info.get('last_heartbeat') or 'never'}; queues {', '.join(info.get('queues') or [])}"
        )
        event = record_event(
            settings,
            EventKind.WORKER_LOST,
            f"worker:{info['name']}:{info.get('birth', 0)}",
            info["name"],
            message,
            details={k: v for k, v in info.items() if k != "name"},
            now=now,
        )
        redis.hdel(KNOWN_WORKERS_KEY, info["name"])
        if event is not None:
            events.append(event)
    return events


def recent_lost_workers(now: datetime | None = None, window: timedelta = LOST_WORKER_SHOWN) -> list[OpsEvent]:
    """Lost-worker events of the last `window`, newest first (RQ forgets a dead worker within minutes)."""
    now = now or utcnow()
    return list(
        OpsEvent.select()
        .where((OpsEvent.kind == EventKind.WORKER_LOST.value) & (OpsEvent.created_at >= now - window))
        .order_by(OpsEvent.created_at.desc())
    )


# --- delivery -------------------------------------------------------------------------------------


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """Wait after the `attempts`-th failed post: OPS_DELIVERY_BACKOFF doubled each time, at most 1 h."""
    return float(min(MAX_BACKOFF, settings.ops_delivery_backoff * 2 ** max(0, attempts - 1)))


def deliver_due(settings: Settings, now: datetime | None = None, limit: int = DELIVERY_BATCH) -> int:
    """Post due deliveries; return how many were delivered. Each is claimed first (attempt count CAS).

    The claim pushes `next_attempt_at` past the post's timeout, so another scheduler does not
    post it meanwhile and a process that dies mid-post leaves it due again (at least once).
    """
    now = now or utcnow()
    lease = timedelta(seconds=settings.webhook_timeout + 30)
    due = list(
        WebhookDelivery.select(WebhookDelivery, OpsEvent)
        .join(OpsEvent)
        .where((WebhookDelivery.status == DeliveryStatus.PENDING.value) & (WebhookDelivery.next_attempt_at <= now))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    delivered = 0
    for delivery in due:
        attempt = delivery.attempts + 1
        claimed = (
            WebhookDelivery.update(attempts=attempt, next_attempt_at=now + lease)
            .where(
                (WebhookDelivery.id == delivery.id)
                & (WebhookDelivery.attempts == delivery.attempts)
                & (WebhookDelivery.status == DeliveryStatus.PENDING.value)
            )
            .execute()
        )
        if not claimed:
            continue
        url = settings.ops_webhook
        try:
            if not url:
                raise NotifyError("no webhook configured (OPS_WEBHOOK_URL, ALERT_WEBHOOK_URL)")
            post_json(url, ops_message(event_json(delivery.event)), settings.webhook_timeout)
        except Exception as exc:  # noqa: BLE001 - recorded on the row; a bug must not stop the loop
            error = str(exc) if isinstance(exc, NotifyError) else f"{type(exc).__name__}: {exc}"
            gave_up = attempt >= settings.ops_delivery_max_attempts
            WebhookDelivery.update(
                status=(DeliveryStatus.FAILED if gave_up else DeliveryStatus.PENDING).value,
                next_attempt_at=utcnow() + timedelta(seconds=backoff_seconds(settings, attempt)),
                last_error=error[:2000],
            ).where(WebhookDelivery.id == delivery.id).execute()
            log.warning(
                "ops alert %s not delivered (attempt %d%s): %s",
                delivery.event.kind,
                attempt,
                ", giving up" if gave_up else "",
                error,
            )
            continue
        WebhookDelivery.update(status=DeliveryStatus.DELIVERED.value, delivered_at=utcnow(), last_error=None).where(
            WebhookDelivery.id == delivery.id
        ).execute()
        delivered += 1
    return delivered


class _Deliverer:
    """One background delivery thread per process: a slow receiver never delays the scheduler's tick."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def kick(self, settings: Settings) -> bool:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._thread = threading.Thread(target=self._run, args=(settings,), name="ops-delivery", daemon=True)
            self._thread.start()
            return True

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @staticmethod
    def _run(settings: Settings) -> None:
        try:
            with db_session():
                while deliver_due(settings) >= DELIVERY_BATCH:
                    pass
        except Exception:  # noqa: BLE001 - the next tick tries again
            log.exception("ops alert delivery failed")


deliverer = _Deliverer()


def ops_step(
    redis: Redis,
    settings: Settings,
    *,
    slot_key: str | None = None,
    now: datetime | None = None,
    background: bool = True,
) -> dict[str, int]:
    """The scheduler's per-tick step: detect and record events, then post due deliveries.

    Each detection is guarded on its own (a failing one is logged; the others still run), so
    this never raises into the scheduler's loop. Posting runs in a background thread
    (`background=False`: here, for tests and `flask ops deliver`-style callers).
    """
    now = now or utcnow()
    counts = {"runs": 0, "overdue": 0, "workers": 0}
    steps: Iterable[tuple[str, Any]] = (
        ("runs", lambda: detect_run_events(settings, now)),
        ("overdue", lambda: detect_overdue(redis, settings, now, slot_key=slot_key)),
        ("workers", lambda: detect_lost_workers(redis, settings, now)),
    )
    for name, detect in steps:
        try:
            counts[name] = len(detect())
        except (RedisError, peewee.OperationalError, peewee.InterfaceError) as exc:
            log.warning("ops step: %s detection skipped (%s unavailable)", name, type(exc).__name__)
        except Exception:  # noqa: BLE001 - logged; the scheduler's own work goes on
            log.exception("ops step: %s detection failed", name)
    try:
        redis.set(STEP_KEY, f"{now.replace(tzinfo=timezone.utc).timestamp():.0f}", ex=STEP_KEY_TTL)
    except Exception:  # noqa: BLE001
        log.warning("ops step heartbeat not written (Redis unavailable)")
    if background:
        deliverer.kick(settings)
    else:
        try:
            counts["delivered"] = deliver_due(settings, now)
        except Exception:  # noqa: BLE001
            log.exception("ops alert delivery failed")
    return counts


def last_step_at(redis: Redis) -> datetime | None:
    """When an ops step last ran (None: none within STEP_KEY_TTL, so no scheduler is working)."""
    raw = redis.get(STEP_KEY)
    return datetime.fromtimestamp(float(raw), timezone.utc).replace(tzinfo=None) if raw else None


# --- listing --------------------------------------------------------------------------------------


def event_json(event: OpsEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "kind": event.kind,
        "subject": event.subject,
        "job_name": event.job_name,
        "run_id": event.run_id,
        "message": event.message,
        "details": event.details or {},
        "created_at": iso(event.created_at),
    }


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "target": delivery.target,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.status == DeliveryStatus.PENDING.value else None,
        "last_error": delivery.last_error,
        "delivered_at": iso(delivery.delivered_at),
    }


def list_events(limit: int = 50, kind: str | None = None) -> list[dict[str, Any]]:
    """The newest events with their deliveries, newest first."""
    query = OpsEvent.select().order_by(OpsEvent.created_at.desc(), OpsEvent.id.desc()).limit(limit)
    if kind:
        query = query.where(OpsEvent.kind == kind)
    events = list(query)
    deliveries: dict[int, list[dict[str, Any]]] = {}
    if events:
        for delivery in WebhookDelivery.select().where(WebhookDelivery.event.in_([e.id for e in events])):
            deliveries.setdefault(delivery.event_id, []).append(delivery_json(delivery))
    return [{**event_json(e), "deliveries": deliveries.get(e.id, [])} for e in events]


def failing_deliveries(now: datetime | None = None, window: timedelta = timedelta(hours=24)) -> dict[str, Any]:
    """Deliveries that gave up in `window`, and pending ones that failed at least once (retrying)."""
    now = now or utcnow()
    base = WebhookDelivery.select().where(WebhookDelivery.created_at >= now - window)
    gave_up = base.where(WebhookDelivery.status == DeliveryStatus.FAILED.value)
    retrying = base.where(
        (WebhookDelivery.status == DeliveryStatus.PENDING.value) & WebhookDelivery.last_error.is_null(False)
    )
    latest = (
        WebhookDelivery.select(WebhookDelivery.last_error)
        .where((WebhookDelivery.created_at >= now - window) & WebhookDelivery.last_error.is_null(False))
        .order_by(WebhookDelivery.next_attempt_at.desc())
        .first()
    )
    return {
        "failed": gave_up.count(),
        "retrying": retrying.count(),
        "last_error": latest.last_error if latest else None,
    }
