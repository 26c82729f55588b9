"""Reading run history: one run in full (the run page) and a filtered, keyset-paged run list.

Written once for the dashboard's run pages and `GET /api/runs`, so both accept the same
filters and refuse the same bad values (`InvalidRunFilter`, a domain error each adapter maps
to its own 400). Only reads: nothing here writes a row or a Redis key.

The list is newest first by (enqueued_at, id). Without a job filter it is one indexed query
per catalogue job (job_name [+ status], enqueued_at, id), merged, like the dashboard's recent
runs, so a page costs a few index range scans whatever the history's length. The total is a
count capped at `COUNT_CAP` ("1000+"): an exact count of a large history on every page view
would cost more than the page.

A fanned-out forecast run's chunks live in Redis only (RQ jobs named by `app.runs.fanout`);
their progress is read from there and is reported as unavailable, never as an error, when
Redis is down or the jobs have expired.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import peewee
import redis.exceptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from redis import Redis
from rq.job import Job, JobStatus

from app.connections import db_session
from app.core.catalog import JOBS
from app.core.errors import InvalidInput, RunMissing
from app.core.jobs import run_id as valid_run_id
from app.core.pagination import decode_cursor, encode_cursor
from app.models import Alert, AuditEntry, JobRun, OpsEvent, RunAttempt, WebhookDelivery, iso, run_duration
from app.runs import fanout
from app.runs.status import RETRYABLE_VALUES, TERMINAL_VALUES

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
COUNT_CAP = 1000  # the list's total is exact up to this many runs, then "1000+"
MAX_ALERTS = 200  # alerts listed on a run's page (the total is always given)
MAX_RETRIES_LISTED = 50  # runs that retry this one, linked from its page
MAX_FILTER_TEXT = 200
ERROR_PREVIEW = 300  # characters of a run's error in a list row

RunStatusName = Literal["queued", "scheduled", "started", "finished", "failed", "canceled", "stopped", "skipped"]


class InvalidRunFilter(InvalidInput):
    """A run-list filter, cursor or limit the service cannot apply (named in the message)."""


class RunAction(str, enum.Enum):
    STOP = "stop"  # a running run: its worker is asked to stop it
    CANCEL = "cancel"  # a queued run: it never executes
    RETRY = "retry"  # an ended, unsuccessful run: a new run linked to it (app.core.jobs.retry)


class RunQuery(BaseModel):
    """The run list's filters and page (the query string of `/api/runs` and `/dashboard/runs`)."""

    model_config = ConfigDict(extra="forbid", str_max_length=MAX_FILTER_TEXT)

    job: str | None = Field(None, description="catalogue job name", json_schema_extra={"enum": list(JOBS)})
    status: RunStatusName | None = None
    trigger: Literal["scheduled", "manual", "retry"] | None = None
    since: datetime | None = Field(None, description="enqueued at or after (ISO 8601; no zone: UTC)")
    until: datetime | None = Field(None, description="enqueued before (ISO 8601; no zone: UTC)")
    error: str | None = Field(None, max_length=MAX_FILTER_TEXT, description="the run's error contains (any case)")
    cursor: str | None = Field(None, max_length=200, description="next_cursor of the previous page")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)

    @field_validator("job")
    @classmethod
    def _known_job(cls, value: str | None) -> str | None:
        if value is not None and value not in JOBS:
            raise ValueError(f"unknown job; known: {', '.join(JOBS)}")
        return value

    @field_validator("since", "until")
    @classmethod
    def _naive_utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            try:
                value = value.astimezone(timezone.utc).replace(tzinfo=None)
            except OverflowError:
                raise ValueError("out of range once converted to UTC") from None
        return value

    @model_validator(mode="after")
    def _window(self) -> RunQuery:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self

    def filters(self) -> dict[str, str]:
        """The filters given, as query-string values (for links to other pages of the same list)."""
        out = {}
        for name in ("job", "status", "trigger", "error"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        for name in ("since", "until"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name).isoformat(timespec="seconds")
        return out


def _quoted(name: object) -> str:
    """A client-chosen name as a message may show it: short, non-printable characters escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(name)[:50])


def parse_query(pairs: Iterable[tuple[str, str]]) -> RunQuery:
    """The filters of a query string (key, value pairs); an empty value means "not filtered".

    `InvalidRunFilter` for an unknown or repeated parameter or a bad value, naming it.
    """
    data: dict[str, str] = {}
    for key, value in pairs:
        if key in data:
            raise InvalidRunFilter(f"{_quoted(key)}: given more than once")
        data[key] = value
    data = {key: value for key, value in data.items() if value.strip() != ""}
    try:
        return RunQuery.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False, include_input=False):
            where = ".".join(_quoted(p) for p in err["loc"]) or "filters"
            parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise InvalidRunFilter("; ".join(parts)) from None


# --- the list -------------------------------------------------------------------------------------


@dataclass
class RunPage:
    runs: list[dict[str, Any]]
    next_cursor: str | None
    total: int  # matching runs, at most COUNT_CAP
    total_capped: bool  # more than COUNT_CAP match

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "next_cursor": self.next_cursor,
            "total": self.total,
            "total_capped": self.total_capped,
        }


def _conditions(query: RunQuery) -> list[peewee.Expression]:
    conditions = []
    if query.status:
        conditions.append(JobRun.status == query.status)
    if query.trigger:
        conditions.append(JobRun.trigger == query.trigger)
    if query.since is not None:
        conditions.append(JobRun.enqueued_at >= query.since)
    if query.until is not None:
        conditions.append(JobRun.enqueued_at < query.until)
    if query.error:
        conditions.append(JobRun.error.contains(query.error))  # LIKE wildcards in the text are literal
    return conditions


def run_row(run: JobRun, error_preview: int | None = None) -> dict[str, Any]:
    error = run.error
    if error and error_preview is not None and len(error) > error_preview:
        error = error[:error_preview] + "…"
    return {
        "job_id": run.id,
        "job_name": run.job_name,
        "status": run.status,
        "trigger": run.trigger,
        "queue": run.queue,
        "slot": iso(run.slot),
        "enqueued_at": iso(run.enqueued_at),
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        # stored when the run ends; rows written around the model (old imports) have times only
        "duration_s": run.duration_s if run.duration_s is not None else run_duration(run.started_at, run.ended_at),
        "attempts": run.attempts,
        "error": error,
        "active": run.status not in TERMINAL_VALUES,
        "retry_of": run.retry_of,
    }


def list_runs(query: RunQuery, error_preview: int | None = None) -> RunPage:
    """A page of runs matching `query`, newest first; `InvalidRunFilter` for a bad cursor.

    `error_preview`: shorten each run's error to that many characters (the dashboard's list).
    """
    try:
        after = decode_cursor(query.cursor, str) if query.cursor else None
    except InvalidInput:
        raise InvalidRunFilter("cursor: not a cursor this list gave") from None
    conditions = _conditions(query)
    names = [query.job] if query.job else list(JOBS)
    found: list[JobRun] = []
    with db_session():
        for name in names:
            select = JobRun.select().where(JobRun.job_name == name, *conditions)
            if after is not None:
                at, row_id = after
                select = select.where((JobRun.enqueued_at <= at) & ((JobRun.enqueued_at < at) | (JobRun.id < row_id)))
            found += list(select.order_by(JobRun.enqueued_at.desc(), JobRun.id.desc()).limit(query.limit + 1))
        found.sort(key=lambda r: (r.enqueued_at, r.id), reverse=True)
        if after is None and len(found) <= query.limit:
            counted = len(found)  # the first page holds every match: no second scan (a rare error text)
        else:
            counted = (
                JobRun.select(JobRun.id).where(JobRun.job_name.in_(names), *conditions).limit(COUNT_CAP + 1).count()
            )
    page = found[: query.limit]
    next_cursor = encode_cursor(page[-1].enqueued_at, page[-1].id) if len(found) > query.limit else None
    return RunPage(
        runs=[run_row(r, error_preview) for r in page],
        next_cursor=next_cursor,
        total=min(counted, COUNT_CAP),
        total_capped=counted > COUNT_CAP,
    )


# --- one run ----------------------------------------------------------------------------------------


@dataclass
class ChunkProgress:
    """A fanned-out run's chunks as Redis holds them (`available` False: why in `reason`)."""

    available: bool
    reason: str | None = None
    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    gather_status: str | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.by_status.get(JobStatus.FINISHED.value, 0)

    def as_json(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "reason": self.reason,
            "total": self.total,
            "done": self.done,
            "by_status": self.by_status,
            "gather_status": self.gather_status,
            "chunks": self.chunks,
        }


def _job_time(value: datetime | None) -> str | None:
    if value is not None and value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return iso(value)


def chunk_progress(connection: Redis | None, run: JobRun) -> ChunkProgress | None:
    """The chunks of a fanned-out forecast run (None: this run did not fan out, as far as is known)."""
    if run.job_name != fanout.JOB_NAME:
        return None
    fanned = isinstance(run.result, dict) and isinstance(run.result.get("fanout"), dict)
    planned = int(run.result["fanout"].get("chunks") or 0) if fanned else 0  # what the result records
    unreadable = ChunkProgress(False, "Redis is unreachable: chunk progress cannot be read now", total=planned)
    if connection is None:
        return ChunkProgress(False, "Redis is not configured", total=planned) if fanned else None
    try:
        gather = Job.fetch(fanout.gather_job_id(run.id), connection=connection)
    except redis.exceptions.RedisError as exc:
        log.warning("run page: chunks of %s unreadable: %s", run.id, type(exc).__name__)
        if not fanned and run.status in TERMINAL_VALUES:
            return None  # ended without fanning out: there are no chunks to read
        return unreadable
    except Exception:  # NoSuchJobError, or a job record this release cannot read
        return ChunkProgress(False, "the chunk jobs have expired from Redis", total=planned) if fanned else None
    try:
        chunk_ids = list((gather.kwargs or {}).get("chunk_ids") or [])
        jobs = Job.fetch_many(chunk_ids, connection=connection)
        progress = ChunkProgress(True, total=len(chunk_ids), gather_status=gather.get_status(refresh=False).value)
        for index, (chunk_id, job) in enumerate(zip(chunk_ids, jobs)):
            status = job.get_status(refresh=False).value if job is not None else "expired"
            progress.by_status[status] = progress.by_status.get(status, 0) + 1
            failure = fanout.chunk_failure(chunk_id, job) if status in ("failed", "stopped", "canceled") else None
            progress.chunks.append(
                {
                    "id": chunk_id,
                    "index": index,
                    "status": status,
                    "worker": job.worker_name if job is not None else None,
                    "attempt": fanout.attempt_of(job) if job is not None else None,
                    "started_at": _job_time(job.started_at) if job is not None else None,
                    "ended_at": _job_time(job.ended_at) if job is not None else None,
                    "error": failure,
                }
            )
        return progress
    except redis.exceptions.RedisError as exc:
        log.warning("run page: chunks of %s unreadable: %s", run.id, type(exc).__name__)
        return unreadable
    except Exception:  # a job record this release cannot read must not take the page down
        log.exception("run page: chunks of %s unreadable", run.id)
        return ChunkProgress(False, "the chunk jobs' records could not be read", total=planned)


# Audit actions that create a run; the audit entry's target ends with the created run (app/request_audit.py).
CREATING_ACTIONS = ("run.trigger", "run.retry", "run.retry_failed", "schedule.run", "rq.requeue", "rq.requeue_all")


def triggered_by(run: JobRun) -> str:
    """Who asked for the run: the scheduler, or the actor of the audit entry that created it
    (API token or dashboard user, and from where); else the kind of trigger."""
    if run.trigger == "scheduled":
        return "scheduler"
    suffix = f"run:{run.id}"
    entries: Any = (
        AuditEntry.select(AuditEntry.actor, AuditEntry.source, AuditEntry.target)
        .where(
            AuditEntry.action.in_(CREATING_ACTIONS)
            & (AuditEntry.outcome == "ok")
            & AuditEntry.target.contains(suffix)
            & (AuditEntry.at >= run.enqueued_at - timedelta(minutes=5))
        )
        .order_by(AuditEntry.at.desc())
        .limit(10)
        .tuples()
    )
    for actor, source, target in entries:
        if target.endswith(suffix):  # the created run, not the one a retry named in its URL
            return f"{actor} ({source})"
    return f"{run.trigger} (who is not recorded)"


def notifications(run_id: str) -> list[dict[str, Any]]:
    """The operational events about this run (failed for good, stopped, abandoned) and their
    webhook deliveries: whether anyone was told, when, after how many tries."""
    events = list(OpsEvent.select().where(OpsEvent.run_id == run_id).order_by(OpsEvent.created_at).limit(20))
    deliveries: dict[int, list[dict[str, Any]]] = {}
    if events:
        query = WebhookDelivery.select().where(WebhookDelivery.event.in_([e.id for e in events]))
        for d in query:
            deliveries.setdefault(d.event_id, []).append(
                {
                    "status": d.status,
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                    "delivered_at": iso(d.delivered_at),
                    "target": d.target,
                }
            )
    return [
        {"kind": e.kind, "message": e.message, "created_at": iso(e.created_at), "deliveries": deliveries.get(e.id, [])}
        for e in events
    ]


def attempts_of(run: JobRun) -> tuple[list[dict[str, Any]], bool]:
    """The run's attempts, oldest first, and whether they are recorded one by one.

    A run from before attempts were recorded (or whose records were lost) shows its row's last
    attempt only, and says so.
    """
    rows = list(RunAttempt.select().where(RunAttempt.run == run.id).order_by(RunAttempt.number))
    if rows:
        return [
            {
                "number": a.number,
                "worker": a.worker,
                "status": a.status,
                "started_at": iso(a.started_at),
                "ended_at": iso(a.ended_at),
                "duration_s": run_duration(a.started_at, a.ended_at),
                "error": a.error,
                "traceback": a.traceback,
                "next_retry_at": iso(a.next_retry_at),
            }
            for a in rows
        ], True
    if run.attempts < 1 and run.started_at is None:
        return [], True
    last = {
        "number": max(run.attempts, 1),
        "worker": None,
        "status": run.status,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "duration_s": run_duration(run.started_at, run.ended_at),
        "error": run.error,
        "traceback": None,
        "next_retry_at": None,
    }
    return [last], False


def actions_for(run: JobRun) -> list[RunAction]:
    if run.status == "started":
        return [RunAction.STOP]
    if run.status not in TERMINAL_VALUES:
        return [RunAction.CANCEL]
    if run.status in RETRYABLE_VALUES:
        return [RunAction.RETRY]
    return []


def run_detail(run_id: str, connection: Redis | None = None) -> dict[str, Any]:
    """Everything known about one run; `InvalidRunId` or `RunMissing` when there is none.

    `connection`: Redis, for a fanned-out run's chunk progress (optional; reads only).
    """
    run_id = valid_run_id(run_id)
    with db_session():
        run = JobRun.get_or_none(JobRun.id == run_id)
        if run is None:
            raise RunMissing(run_id)
        attempts, recorded = attempts_of(run)
        alerts = Alert.select().where(Alert.job_id == run_id)
        alert_total = alerts.count()
        retried_by = [
            r.id
            for r in JobRun.select(JobRun.id)
            .where(JobRun.retry_of == run_id)
            .order_by(JobRun.enqueued_at, JobRun.id)
            .limit(MAX_RETRIES_LISTED)
        ]
        alert_rows = list(alerts.order_by(Alert.created_at.desc(), peewee.SQL('"id" DESC')).limit(MAX_ALERTS))
    chunks = chunk_progress(connection, run)
    waiting = run.status == "scheduled" and attempts and attempts[-1]["next_retry_at"]
    return {
        "run": {
            **run_row(run),
            "result": run.result,
            "triggered_by": triggered_by(run),
            "retried_by": retried_by,
            # waiting for RQ's retry after a failed attempt: when, and which attempt comes next
            "next_retry_at": attempts[-1]["next_retry_at"] if waiting else None,
            "next_attempt": attempts[-1]["number"] + 1 if waiting else None,
        },
        "attempts": attempts,
        "attempts_recorded": recorded,
        "alerts": [
            {
                "id": a.get_id(),  # type: ignore[no-untyped-call]
                "type": a.type,
                "severity": a.severity,
                "title": a.title,
                "subject": a.subject,
                "message": a.message,
                "occurrences": a.occurrences,
                "resolved": a.resolved,
                "created_at": iso(a.created_at),
            }
            for a in alert_rows
        ],
        "alerts_total": alert_total,
        "chunks": chunks.as_json() if chunks is not None else None,
        "actions": [a.value for a in actions_for(run)],
        "notifications": notifications(run.id),
    }
