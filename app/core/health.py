"""What is wrong right now, one line per problem: the dashboard's health strip and `/api/health/summary`.

An on-call operator should not have to read six cards to learn that a worker died or a
schedule missed its slot. Each check is guarded on its own: with Redis down the database
checks still answer (and the reverse), so the summary itself never fails and always says
which part could not be checked.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from peewee import fn
from redis import Redis
from rq import Worker

from app.config import Settings
from app.connections import database, db_session
from app.core import ops_events
from app.core.catalog import QUEUES
from app.core.stats import LOST, queue_stats, worker_state
from app.models import JobRun, iso, utcnow

log = logging.getLogger(__name__)

FAILED_WINDOW = timedelta(hours=24)


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


class ProblemKind(str, enum.Enum):
    REDIS_UNAVAILABLE = "redis_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    NO_WORKER = "no_worker"
    LOST_WORKER = "lost_worker"
    SCHEDULER_NOT_RUNNING = "scheduler_not_running"
    SCHEDULE_OVERDUE = "schedule_overdue"
    FAILED_RUNS = "failed_runs"
    WEBHOOK_FAILING = "webhook_failing"


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    severity: Severity
    message: str
    subject: str | None = None

    def json(self) -> dict[str, Any]:
        out = asdict(self)
        out["kind"], out["severity"] = self.kind.value, self.severity.value
        return out


def _down(exc: Exception) -> str:
    return f"down: {type(exc).__name__}"


def _redis_problems(redis: Redis, settings: Settings, now: datetime) -> list[Problem]:
    problems = []
    workers = Worker.all(connection=redis)
    live_queues: set[str] = set()
    for worker in workers:
        if worker_state(worker, settings, now) == LOST:
            beat = iso(worker.last_heartbeat) or "never"
            problems.append(
                Problem(
                    ProblemKind.LOST_WORKER,
                    Severity.ERROR,
                    f"worker {worker.name} lost: last heartbeat {beat}",
                    worker.name,
                )
            )
        else:
            live_queues.update(worker.queue_names())
    waiting = queue_stats(redis)
    for queue in QUEUES:
        if queue in live_queues:
            continue
        queued = waiting.get(queue, {}).get("queued", 0)
        problems.append(
            Problem(
                ProblemKind.NO_WORKER,
                Severity.ERROR if queued else Severity.WARNING,
                f"no worker on queue {queue}" + (f" ({queued} run(s) waiting)" if queued else ""),
                queue,
            )
        )
    if ops_events.last_step_at(redis) is None:
        problems.append(
            Problem(
                ProblemKind.SCHEDULER_NOT_RUNNING,
                Severity.ERROR,
                f"no scheduler has run for {ops_events.STEP_KEY_TTL} s: cron slots are not fired, "
                "retries not moved back, operational alerts not sent",
            )
        )
    return problems


def _database_problems(settings: Settings, now: datetime, live_lost: set[str]) -> list[Problem]:
    problems = []
    for event in ops_events.recent_lost_workers(now):
        if event.subject in live_lost:
            continue  # still listed by RQ: reported from Redis above
        live_lost.add(event.subject)
        beat = (event.details or {}).get("last_heartbeat") or "?"
        problems.append(
            Problem(
                ProblemKind.LOST_WORKER,
                Severity.ERROR,
                f"worker {event.subject} lost: last heartbeat {beat}",
                event.subject,
            )
        )
    for event in ops_events.open_overdue(settings, now):
        problems.append(Problem(ProblemKind.SCHEDULE_OVERDUE, Severity.ERROR, event.message, event.subject))
    failed = (
        JobRun.select(JobRun.job_name, fn.COUNT(JobRun.id))
        .where((JobRun.status == "failed") & (JobRun.enqueued_at >= now - FAILED_WINDOW))
        .group_by(JobRun.job_name)
        .tuples()
    )
    by_job = {str(row[0]): int(row[1]) for row in failed.execute()}
    if by_job:
        total = sum(by_job.values())
        detail = ", ".join(f"{name} {count}" for name, count in sorted(by_job.items()))
        problems.append(
            Problem(
                ProblemKind.FAILED_RUNS,
                Severity.WARNING,
                f"{total} failed run{'s' if total != 1 else ''} in the last 24 h ({detail})",
            )
        )
    deliveries = ops_events.failing_deliveries(now)
    if deliveries["failed"] or deliveries["retrying"]:
        parts = []
        if deliveries["failed"]:
            parts.append(f"{deliveries['failed']} gave up")
        if deliveries["retrying"]:
            parts.append(f"{deliveries['retrying']} retrying")
        problems.append(
            Problem(
                ProblemKind.WEBHOOK_FAILING,
                Severity.ERROR if deliveries["failed"] else Severity.WARNING,
                f"webhook deliveries failing ({', '.join(parts)}): {deliveries['last_error']}",
            )
        )
    return problems


def health_summary(redis: Redis, settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """`problems` (one line each, errors first) and `checks` (redis/database: ok or down); `ok` when none."""
    now = now or utcnow()
    checks: dict[str, str] = {}
    problems: list[Problem] = []
    try:
        redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unavailable
        checks["redis"] = _down(exc)
        problems.append(Problem(ProblemKind.REDIS_UNAVAILABLE, Severity.ERROR, f"Redis unavailable ({_down(exc)})"))
    try:
        with db_session():
            database.execute_sql("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = _down(exc)
        problems.append(
            Problem(ProblemKind.DATABASE_UNAVAILABLE, Severity.ERROR, f"database unavailable ({_down(exc)})")
        )
    live_lost: set[str] = set()
    if checks["redis"] == "ok":
        try:
            redis_problems = _redis_problems(redis, settings, now)
            live_lost = {p.subject for p in redis_problems if p.kind is ProblemKind.LOST_WORKER and p.subject}
            problems += redis_problems
        except Exception as exc:  # noqa: BLE001 - Redis went away between the checks
            log.warning("health: Redis checks failed: %r", exc)
            checks["redis"] = _down(exc)
    if checks["database"] == "ok":
        try:
            with db_session():
                problems += _database_problems(settings, now, live_lost)
        except Exception as exc:  # noqa: BLE001
            log.warning("health: database checks failed: %r", exc)
            checks["database"] = _down(exc)
    problems.sort(key=lambda p: p.severity is not Severity.ERROR)
    return {
        "ok": not problems,
        "status": "ok" if not problems else "problems",
        "checked_at": iso(now),
        "checks": checks,
        "problems": [p.json() for p in problems],
    }
