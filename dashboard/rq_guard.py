"""Every rq-dashboard URL checked before its view runs, and the views that fail upstream replaced.

Upstream trusts its path segments: an unknown queue name was rendered into the page (issue 11,
point 1), an unknown registry or a zero page size raised (500), an unknown job id answered a raw
JSON 404 where a page was linked. So before dispatch (`check_rq_request`, called by the
dashboard's guard for the `rq_dashboard` blueprint) each segment must name something real:

- queue: one of this service's queues (`app.core.catalog.QUEUES`) or a queue RQ has in Redis,
  and in both cases a plain name (`QUEUE_NAME`); registry: one of RQ's registries;
- page size 1..`MAX_PER_PAGE`, page 1..`MAX_PAGE`, order `asc` or `dsc`;
- job id: RQ's id syntax and a job that exists in Redis; the job *page* of a missing job is an
  HTML page that says why (skipped runs never had one, finished ones expire), not raw JSON;
- any segment this module does not know (a future upstream route) is refused: fail closed.

Replaced views (per app, through `app.view_functions`; the installed package is not patched):
`job_info` (rq 2.x returns dependency ids as str, upstream calls `.decode()` on them: 500 for
every run queued with `force`), `list_workers` (one worker whose current job expired made the
whole list a 404, so the workers page stayed empty), `requeue_job_view` (409 instead of 500 for a job that is not in
the failed registry) and `compact_queue` (an empty queue has no list to compact: upstream 500).

Requeue of a run this service tracks (a `job_runs` row) goes through the service's retry
(`app.core.jobs.retry`): a new run linked to the failed one, which keeps its status, error
and attempts. Upstream's requeue ran the failed RQ job again under the same id, and the run
it belonged to became `finished` with no error (issue 14). The failed RQ job then leaves the
failed registry (its record expires as RQ's failure TTL says). "Requeue all" retries the
newest failed run of each job (one run answers for a job's failures: `retry_failed`'s rule);
RQ jobs the service does not track keep upstream's behaviour.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from flask import Flask, Response, current_app, jsonify, make_response, render_template, request
from redis import Redis
from rq import Queue, Worker, requeue_job
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq_dashboard import web as rq_web

from app.connections import db_session
from app.core import jobs
from app.core.catalog import QUEUES
from app.core.errors import Conflict, NotFound, ServiceError
from app.errors import error_response
from app.models import JobRun
from app.runs.status import RETRYABLE_VALUES, TERMINAL_VALUES

REGISTRIES = frozenset({"queued", "scheduled", "deferred", "started", "finished", "failed", "canceled"})
ORDERS = frozenset({"asc", "dsc"})
MAX_PER_PAGE = 200  # the limit of rq-dashboard's own page-size field
MAX_PAGE = 1_000_000
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # RQ's JOB_ID_PATTERN, bounded
_POSITIVE = re.compile(r"[1-9][0-9]{0,8}")
_UNCHECKED = frozenset({"instance_number", "filename"})  # checked by the guard / by send_from_directory


class RqPathError(Exception):
    """A path segment names nothing real."""


def _redis() -> Redis:
    return current_app.extensions["redis"]


def known_queues(redis: Redis) -> set[str]:
    names = set(QUEUES) | {q.name for q in Queue.all(connection=redis)}
    return {name for name in names if QUEUE_NAME.fullmatch(name)}


def _queue(value: Any) -> None:
    if value is None:  # /view/jobs without a queue: rq-dashboard shows RQ's "default" queue
        return
    if not isinstance(value, str) or not QUEUE_NAME.fullmatch(value) or value not in known_queues(_redis()):
        raise RqPathError("no such queue")


def _registry(value: Any) -> None:
    if value not in REGISTRIES:
        raise RqPathError("no such registry")


def _bounded(limit: int, what: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        text = str(value)
        if not _POSITIVE.fullmatch(text) or int(text) > limit:
            raise RqPathError(f"{what} must be a whole number from 1 to {limit}")

    return check


def _order(value: Any) -> None:
    if value not in ORDERS:
        raise RqPathError("order must be asc or dsc")


def _job(value: Any) -> None:
    if not isinstance(value, str) or not JOB_ID.fullmatch(value) or not Job.exists(value, connection=_redis()):
        raise RqPathError("no such job")


CHECKS: dict[str, Callable[[Any], None]] = {
    "queue_name": _queue,
    "registry_name": _registry,
    "per_page": _bounded(MAX_PER_PAGE, "per_page"),
    "page": _bounded(MAX_PAGE, "page"),
    "order": _order,
    "job_id": _job,
}


def check_rq_request() -> Response | None:
    """None when every segment of this rq-dashboard URL names something real, else the 404."""
    for name, value in (request.view_args or {}).items():
        if name in _UNCHECKED:
            continue
        check = CHECKS.get(name)
        try:
            if check is None:
                raise RqPathError("unknown path segment")
            check(value)
        except RqPathError as exc:
            if request.endpoint == "rq_dashboard.job_view" and name == "job_id":
                return missing_job_page(value)
            return error_response(404, "not_found", str(exc))
    return None


def missing_job_page(job_id: str) -> Response:
    """The page an "rq →" link opens when RQ has no such job: it says why, with the run's record."""
    well_formed = isinstance(job_id, str) and JOB_ID.fullmatch(job_id) is not None
    run = None
    if well_formed:
        with db_session():
            run = JobRun.get_or_none(JobRun.id == job_id)
    page = render_template("dashboard/rq_missing_job.html", job_id=job_id if well_formed else None, run=run)
    response = make_response(page, 404)
    response.headers["Cache-Control"] = "no-store"
    return response


# --- replaced views ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-safe: anything json cannot encode is shown by its repr instead of raising (500)."""
    return json.loads(json.dumps(value, default=repr))


def _as_text(value: Any) -> str:
    """bytes (rq 1.x), str (rq 2.x) or a str Enum such as JobStatus, as plain text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(getattr(value, "value", value))


def job_info(instance_number: int, job_id: str):
    """rq-dashboard's job data, for rq 2.x (dependency ids are str) and any result or meta."""
    redis = current_app.redis_conn
    job = Job.fetch(job_id, serializer=rq_web.config.serializer, connection=redis)
    latest = job.latest_result()
    encoder = current_app.config.get("RQ_DASHBOARD_JSON_ENCODER", json.JSONEncoder)
    try:
        result = job.return_value()
    except Exception as exc:  # a result RQ cannot unpickle here (a class only the worker has)
        result = f"(result not readable here: {type(exc).__name__})"
    info = {
        "id": job.id,
        "created_at": rq_web.serialize_date(job.created_at),
        "enqueued_at": rq_web.serialize_date(job.enqueued_at),
        "started_at": rq_web.serialize_date(job.started_at),
        "ended_at": rq_web.serialize_date(job.ended_at),
        "origin": job.origin,
        "status": _as_text(job.get_status()),
        "result": _plain(result),
        "exc_info": latest.exc_string if latest else None,
        "description": rq_web.format_job_description(job),
        "metadata": json.dumps(job.get_meta(), cls=encoder, default=repr),
    }
    dependency_ids = [_as_text(d).split(":")[-1].strip() for d in job.dependency_ids]
    if dependency_ids:
        info["depends_on"] = dependency_ids
        info["depends_on_status"] = ["active" if Job.exists(d, connection=redis) else "expired" for d in dependency_ids]
    return jsonify(info), {"Cache-Control": "no-store"}


def _tracked_runs(job_ids: list[str]) -> dict[str, JobRun]:
    """The runs this service tracks among these RQ job ids (fan-out chunks and untracked jobs have none)."""
    if not job_ids:
        return {}
    with db_session():
        return {run.id: run for run in JobRun.select().where(JobRun.id.in_(job_ids))}


def _actor() -> str:
    auth = request.authorization
    return f"rq-dashboard:{auth.username if auth and auth.username else 'unknown'}"


def _leave_failed_registry(redis: Redis, run: JobRun) -> None:
    """The retried run's RQ job leaves the failed registry (its hash expires on its own)."""
    Queue(run.queue, connection=redis).failed_job_registry.remove(run.id, delete_job=False)


def _retry_tracked(redis: Redis, run: JobRun) -> Response:
    try:
        outcome = jobs.retry(redis, current_app.config["SETTINGS"], run.job_name, run.id, actor=_actor())
    except ServiceError as exc:
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
        code = {404: "not_found", 409: "conflict", 400: "bad_request"}[status]
        return error_response(status, code, exc.message, **exc.details)
    _leave_failed_registry(redis, run)
    body = {"status": "OK", "job_id": outcome.run_id, "retry_of": run.id, "message": f"retried as run {outcome.run_id}"}
    return jsonify(body), {"Cache-Control": "no-store"}


def requeue_job_view(job_id: str):
    run = _tracked_runs([job_id]).get(job_id)
    if run is not None:
        return _retry_tracked(current_app.extensions["redis"], run)
    try:
        requeue_job(job_id, connection=current_app.redis_conn)
    except InvalidJobOperation:
        return error_response(409, "conflict", "only a failed job can be requeued")
    except NoSuchJobError:
        return error_response(404, "not_found", "no such job")
    return jsonify(status="OK"), {"Cache-Control": "no-store"}


def requeue_all(queue_name: str):
    """Upstream's "requeue all" of a queue's failed registry; tracked runs are retried instead.

    Per job, the newest tracked failed run in the registry is retried and the job's other
    failed runs there are covered by it (they leave the registry too); a job with a run queued
    or running keeps its failed runs in the registry (listed under `conflicts`).
    """
    redis = current_app.extensions["redis"]
    queue = Queue(queue_name, serializer=rq_web.config.serializer, connection=current_app.redis_conn)
    job_ids = queue.failed_job_registry.get_job_ids(cleanup=False)
    tracked = _tracked_runs(job_ids)
    count = 0
    for job_id in job_ids:
        if job_id not in tracked:
            try:
                requeue_job(job_id, connection=current_app.redis_conn)
                count += 1
            except (InvalidJobOperation, NoSuchJobError):  # left the registry meanwhile
                pass
    by_job: dict[str, list[JobRun]] = {}
    for run in sorted(tracked.values(), key=lambda r: (r.enqueued_at, r.id), reverse=True):
        by_job.setdefault(run.job_name, []).append(run)
    retried, conflicts = [], []
    for job_name, in_registry in by_job.items():
        failed = [r for r in in_registry if r.status in TERMINAL_VALUES]  # others: their row catches up first
        newest = next((r for r in failed if r.status in RETRYABLE_VALUES), None)
        if newest is None:
            conflicts.append(
                {"job_name": job_name, "runs": [r.id for r in in_registry], "message": "no ended, failed run"}
            )
            continue
        try:
            outcome = jobs.retry(redis, current_app.config["SETTINGS"], job_name, newest.id, actor=_actor())
        except ServiceError as exc:
            conflicts.append({"job_name": job_name, "runs": [r.id for r in in_registry], "message": exc.message})
            continue
        retried.append({"job_id": outcome.run_id, "retry_of": newest.id, "covers": [r.id for r in failed]})
        for run in failed:
            _leave_failed_registry(redis, run)
            count += 1
    body: dict[str, Any] = {"status": "OK", "count": count}  # upstream's answer, plus what the retries did
    if tracked:
        body.update(retried=retried, conflicts=conflicts)
    return jsonify(body), {"Cache-Control": "no-store"}


def compact_queue(queue_name: str):
    queue = Queue(queue_name, serializer=rq_web.config.serializer, connection=current_app.redis_conn)
    if current_app.redis_conn.exists(queue.key):  # RENAME of a missing key fails: nothing to compact
        queue.compact()
    return jsonify(status="OK"), {"Cache-Control": "no-store"}


def list_workers(instance_number: int):
    """rq-dashboard's worker list; upstream fetches each current job and a worker whose job has
    expired (or was deleted) turned the whole list into a 404, and the workers page stayed empty."""

    def current_job(worker) -> dict | str:
        job_id = worker.get_current_job_id()
        if not job_id:
            return "idle"
        try:
            return rq_web.serialize_current_job(
                Job.fetch(job_id, connection=worker.connection, serializer=rq_web.config.serializer)
            )
        except NoSuchJobError:
            return {
                "job_id": job_id,
                "description": "(job record expired)",
                "created_at": None,
                "call_string": "(job record expired)",
            }

    workers = [
        {
            "name": worker.name,
            "pid": worker.pid,
            "queues": [q.name for q in worker.queues],
            "state": _as_text(worker.get_state()),
            "current_job": current_job(worker),
            "last_heartbeat": worker.last_heartbeat,
            "birth_date": worker.birth_date,
            "successful_job_count": worker.successful_job_count,
            "failed_job_count": worker.failed_job_count,
            "total_working_time": worker.total_working_time,
            "version": getattr(worker, "version", ""),
            "python_version": getattr(worker, "python_version", ""),
        }
        for worker in Worker.all(connection=current_app.redis_conn)
    ]
    workers.sort(key=lambda w: (w["state"], w["queues"], w["name"]))
    return jsonify(workers=workers), {"Cache-Control": "no-store"}


REPLACED_VIEWS = {
    "rq_dashboard.list_workers": list_workers,
    "rq_dashboard.job_info": job_info,
    "rq_dashboard.requeue_job_view": requeue_job_view,
    "rq_dashboard.requeue_all": requeue_all,
    "rq_dashboard.compact_queue": compact_queue,
}


def replace_views(app: Flask) -> None:
    for endpoint, view in REPLACED_VIEWS.items():
        if endpoint not in app.view_functions:
            raise RuntimeError(f"rq-dashboard has no endpoint {endpoint}: check dashboard.rq_guard")
        app.view_functions[endpoint] = view
