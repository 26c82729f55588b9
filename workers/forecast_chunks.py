"""The built-in forecast run, fanned out over the workers when it is large.

A run with more series than FORECAST_FANOUT_THRESHOLD is planned by the run's own job
(`run_scheduled_forecast`), which enqueues one chunk job per FORECAST_CHUNK_SIZE series on the
forecast queue and a gather job that depends on all of them, then returns: the run's worker is
free to take a chunk. A chunk loads its series, forecasts them and applies the per-series rule
(demand_spike); the gather adds up the chunks' line loads for the line-level capacity rule,
stores the alerts and writes the outcome on the run's history row. The run keeps one id, one
row and one result. A chunk that fails is retried alone (same Retry policy as runs); a chunk
that fails for good fails the run, named in its error.

Chunk and gather jobs are not catalogue jobs and keep out of `@tracked`: no history rows of
their own. Their ids derive from the run's (`<run>-c003`, `<run>-gather`), so their log lines
name the run.

Overlap: the run's RQ job has ended while its chunks run, and `app.runs` counts a lock whose
holder has ended as stale. The fan-out therefore gives the lock a lease (a TTL, which `runs`
reads as "still being set up"), renewed by each chunk and freed by the gather, so that a
trigger meanwhile gets 409 and a scheduled firing is skipped. A run that starts while another
run's chunks still run (a forced trigger) fans out behind them: its chunks wait for the other
run's gather.

Fencing: the gather finishes the attempt that fanned the run out. That attempt's number
travels in the chunk and gather jobs' meta (`attempt`), and the gather stores alerts and ends
the row only while it is still the run's current attempt (`runs.check_attempt`,
`runs.end_attempt`). A repeated attempt of a run already fanned out hands the fan-out to
itself by updating the gather's meta.
"""
from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

from redis import Redis
from rq import Queue, Retry, get_current_job
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Dependency, Job, JobStatus

from app import notify, runs
from app.alert_store import StoreOutcome, store_alerts
from app.config import Settings, get_settings
from app.connections import database, db_session
from app.forecast import pipeline
from app.models import JobRun, utcnow
from workers.tracking import FinishedLater, bind_database_if_unbound

log = logging.getLogger(__name__)

JOB_NAME = "forecast"
QUEUE = "forecast"
BUILTIN = pipeline.BUILTIN
FANOUT_KEY = "forecast-service:fanout:forecast"  # the run whose fan-out is the latest one
ENDED = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED}

# Renew the lease of the run's lock and fan-out marker, where the run still holds them.
_HOLD = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('EXPIRE', key, ARGV[2]) end
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ChunkFault(RuntimeError):
    """The planned failure of the FORECAST_CHUNK_FAULT test hook."""


def chunk_job_id(run_id: str, index: int) -> str:
    return f"{run_id}-c{index:03d}"


def gather_job_id(run_id: str) -> str:
    return f"{run_id}-gather"


def lease_seconds(settings: Settings) -> int:
    """Long enough for a chunk's time limit plus its retries; renewed by every chunk."""
    return settings.job_timeout + settings.job_max_retries * settings.job_retry_delay + 60


def run_result(outcome: StoreOutcome, **extra: Any) -> dict[str, Any]:
    """The run's result (SPEC section 4) plus `extra`."""
    return {
        "status": "completed",
        "alerts_generated": outcome.new + outcome.updated,
        "new_alerts": outcome.new,
        "updated_alerts": outcome.updated,
        "summary": {f"{sev}_severity": n for sev, n in outcome.by_severity.items()},
        **extra,
    }


def run_forecast(run_id: str, settings: Settings, job: Job | None) -> dict[str, Any] | FinishedLater:
    """The body of a built-in forecast run: in this job, or fanned out (then FinishedLater)."""
    began = time.perf_counter()
    plan = pipeline.plan()
    planned = time.perf_counter() - began
    if job is not None and plan is not None:
        waits_for = _running_gather(job.connection, run_id)
        if len(plan.keys) > settings.forecast_fanout_threshold or waits_for:
            return _fan_out(run_id, plan, settings, job.connection, waits_for, planned)
    stats: dict[str, Any] = {}
    alerts = pipeline.run_builtin(settings, plan, stats, run_id=run_id) if plan is not None else []
    stored_from = time.perf_counter()
    with database.atomic():
        attempt = runs.taken_attempt(run_id)
        if attempt is not None:
            runs.check_attempt(run_id, attempt)  # a replaced attempt stores nothing
        outcome = store_alerts(alerts, job_id=run_id)
    notify.notify_high_alerts(settings, outcome.created)  # after the commit, as for any pipeline
    timings = {"plan": round(planned, 4), **stats.get("timings", {}),
               "store": round(time.perf_counter() - stored_from, 4)}
    return run_result(outcome, series=stats.get("series", 0), timings=timings,
                      peak_rss_mb=stats.get("peak_rss_mb"), **stats.get("result", {}))


def _hold(connection: Redis, run_id: str, settings: Settings) -> None:
    connection.eval(_HOLD, 2, runs.ACTIVE_KEY.format(job_name=JOB_NAME), FANOUT_KEY, run_id,
                    lease_seconds(settings))


def _job_status(connection: Redis, job_id: str) -> JobStatus | None:
    try:
        return Job.fetch(job_id, connection=connection).get_status(refresh=False)
    except NoSuchJobError:
        return None


def _running_gather(connection: Redis, run_id: str) -> str | None:
    """The gather job of another run's fan-out that has not ended yet, if any."""
    holder = connection.get(FANOUT_KEY)
    if not holder or holder.decode() == run_id:
        return None
    gather_id = gather_job_id(holder.decode())
    status = _job_status(connection, gather_id)
    return gather_id if status is not None and status not in ENDED else None


def _fan_out(run_id: str, plan: pipeline.Plan, settings: Settings, connection: Redis,
             waits_for: str | None, planned: float) -> FinishedLater:
    """Enqueue the chunk jobs and the gather job; the run's row and lock pass to the gather."""
    gather_id = gather_job_id(run_id)
    size = settings.forecast_chunk_size
    slices = [plan.keys[i:i + size] for i in range(0, len(plan.keys), size)]
    info = {"status": "fanned_out", "series": len(plan.keys), "chunks": len(slices), "gather_job": gather_id,
            "waits_for": waits_for, "plan_seconds": round(planned, 4)}
    attempt = runs.taken_attempt(run_id)
    status = _job_status(connection, gather_id)
    if status is not None and status not in ENDED:  # a repeated attempt of a run already fanned out
        log.warning("forecast run %s: fan-out already under way (gather %s)", run_id, status.value)
        if attempt is not None:  # the gather now finishes this attempt
            gather_job = Job.fetch(gather_id, connection=connection)
            gather_job.meta["attempt"] = attempt
            gather_job.save_meta()
        return FinishedLater(info)

    lease = lease_seconds(settings)
    connection.set(FANOUT_KEY, run_id, ex=lease)
    _hold(connection, run_id, settings)
    queue = Queue(QUEUE, connection=connection)
    retry = Retry(max=settings.job_max_retries, interval=settings.job_retry_delay) if settings.job_max_retries else None
    common = {"retry": retry, "timeout": settings.job_timeout, "failure_ttl": max(lease, 24 * 3600),
              "meta": {"job_name": JOB_NAME, "run_id": run_id, "max_retries": settings.job_max_retries,
                       "attempt": attempt}}
    chunk_ids: list[str] = []
    try:
        for index, keys in enumerate(slices):
            chunk_ids.append(chunk_job_id(run_id, index))
            queue.enqueue_call(
                "workers.forecast_chunks.run_chunk",
                kwargs={"run_id": run_id, "index": index, "start": plan.start.isoformat(),
                        "end": plan.end.isoformat(), "keys": keys},
                job_id=chunk_ids[-1],
                result_ttl=lease,  # the gather reads it
                depends_on=Dependency(jobs=[waits_for], allow_failure=True) if waits_for else None,
                description=f"forecast chunk {index + 1}/{len(slices)} of run {run_id}",
                **common,
            )
        queue.enqueue_call(
            "workers.forecast_chunks.gather",
            kwargs={"run_id": run_id, "chunk_ids": chunk_ids, "horizon_start": plan.horizon_start.isoformat(),
                    "plan_seconds": round(planned, 4)},
            job_id=gather_id,
            result_ttl=settings.result_ttl,
            depends_on=Dependency(jobs=chunk_ids, allow_failure=True, enqueue_at_front=True),
            description=f"forecast gather of run {run_id}",
            **common,
        )
    except BaseException:
        _discard(connection, chunk_ids + [gather_id])  # a retry of the run starts clean
        raise
    log.info("forecast run %s: %d series fanned out in %d chunk(s) of %d%s", run_id, len(plan.keys),
             len(slices), size, f", after {waits_for}" if waits_for else "")
    return FinishedLater(info)


def _discard(connection: Redis, job_ids: list[str]) -> None:
    for job_id in job_ids:
        try:
            Job.fetch(job_id, connection=connection).delete()
        except Exception:  # best effort: Redis may be what failed
            pass


def attempt_of(job: Job) -> int:
    """Which execution of a chunk or gather job this is (RQ counts retries down in `retries_left`)."""
    max_retries = int((job.meta or {}).get("max_retries") or 0)
    return max_retries - (job.retries_left or 0) + 1 if max_retries else 1


def _planned_fault(settings: Settings, job: Job | None, index: int) -> None:
    if not settings.forecast_chunk_fault or job is None:
        return
    target, failures = (int(part) for part in settings.forecast_chunk_fault.split(":"))
    attempt = attempt_of(job)
    if index == target and attempt <= failures:
        raise ChunkFault(f"planned failure of chunk {index}, attempt {attempt} (FORECAST_CHUNK_FAULT)")


def run_chunk(run_id: str, index: int, start: str, end: str, keys: list[tuple[str, int]]) -> dict[str, Any]:
    """Forecast one slice of a run's series; return its spikes and line loads to the gather."""
    job = get_current_job()
    settings = get_settings()
    bind_database_if_unbound(settings)
    _planned_fault(settings, job, index)
    if job is not None:
        _hold(job.connection, run_id, settings)
    began = time.perf_counter()
    plan = pipeline.Plan(date.fromisoformat(start), date.fromisoformat(end), [(k[0], int(k[1])) for k in keys])
    history = pipeline.load_history(plan_=plan)
    part = pipeline.forecast_part(history, settings, load_seconds=time.perf_counter() - began)
    log.info("forecast chunk %d of run %s: %d series, %d spike(s) in %.2fs", index, run_id, part.series,
             len(part.spikes), time.perf_counter() - began)
    return part.as_dict()


def gather(run_id: str, chunk_ids: list[str], horizon_start: str, plan_seconds: float = 0.0) -> dict[str, Any]:
    """Finish a fanned-out run: capacity rule on the summed loads, store, record, release."""
    job = get_current_job()
    connection = job.connection
    settings = get_settings()
    bind_database_if_unbound(settings)
    attempt = _attempt_of_run(job)
    _hold(connection, run_id, settings)
    try:
        return _gather(run_id, chunk_ids, date.fromisoformat(horizon_start), plan_seconds, connection, settings,
                       attempt)
    except runs.StaleAttempt:
        log.warning("forecast gather of run %s: attempt %s was replaced; nothing stored", run_id, attempt)
        return {"status": "stale", "attempt": attempt}
    except Exception as exc:
        if not job.retries_left:  # the last attempt: the run fails with it
            _end_run(connection, run_id, runs.RunStatus.FAILED, attempt,
                     error=f"gather failed: {type(exc).__name__}: {exc}")
        raise


def _attempt_of_run(job: Job) -> int | None:
    """The run attempt a chunk or gather job belongs to (None: enqueued by an older release)."""
    value = (job.get_meta(refresh=True) or {}).get("attempt")
    return int(value) if value is not None else None


def _chunk_failure(chunk_id: str, chunk: Job | None) -> str | None:
    """Why a chunk gave no result (None: it finished)."""
    if chunk is None:
        return f"chunk {chunk_id} vanished from Redis"
    status = chunk.get_status(refresh=False)
    if status == JobStatus.FINISHED:
        return None if chunk.return_value() is not None else f"chunk {chunk_id} result expired"
    latest = chunk.latest_result()
    lines = [line for line in (getattr(latest, "exc_string", None) or "").splitlines() if line.strip()]
    return f"chunk {chunk_id} {status.value}" + (f": {lines[-1].strip()}" if lines else "")


def _gather(run_id: str, chunk_ids: list[str], horizon_start: date, plan_seconds: float,
            connection: Redis, settings: Settings, attempt: int | None) -> dict[str, Any]:
    chunks = Job.fetch_many(chunk_ids, connection=connection)
    failures = [reason for cid, chunk in zip(chunk_ids, chunks) if (reason := _chunk_failure(cid, chunk))]
    if failures:
        error = "; ".join(failures)
        _end_run(connection, run_id, runs.RunStatus.FAILED, attempt, error=error)
        return {"status": "failed", "error": error}

    merged = pipeline.merge_parts([pipeline.Part.from_dict(chunk.return_value()) for chunk in chunks])
    began = time.perf_counter()
    with db_session():
        capacities, names = pipeline.load_lines()
        alerts = pipeline.finish(merged, horizon_start, capacities, names, settings, run_id=run_id)
        ruled = time.perf_counter()
        with database.atomic():
            if attempt is not None:
                runs.check_attempt(run_id, attempt)  # a replaced attempt stores nothing
            outcome = store_alerts(alerts, job_id=run_id)
        stored = time.perf_counter()
        run = JobRun.get_or_none(JobRun.id == run_id)
        duration = (utcnow() - run.started_at).total_seconds() if run is not None and run.started_at else None
        timings = {"plan": plan_seconds, **merged.timings, "store": round(stored - ruled, 4)}
        timings["rules"] = round(timings.get("rules", 0.0) + ruled - began, 4)
        result = run_result(
            outcome, series=merged.series, timings=timings, peak_rss_mb=merged.peak_rss_mb,
            fanout={"chunks": len(chunk_ids), "chunk_size": settings.forecast_chunk_size,
                    "retried_chunks": [c.id for c in chunks if attempt_of(c) > 1],
                    "workers": sorted({c.worker_name for c in chunks if c.worker_name})},
            duration_seconds=round(duration, 3) if duration is not None else None,
            **pipeline.run_summary(merged),
        )
    if not _end_run(connection, run_id, runs.RunStatus.FINISHED, attempt, result=result):
        return {"status": "stale", "attempt": attempt}
    notify.notify_high_alerts(settings, outcome.created)
    log.info("completed forecast run %s: %d series in %d chunks, %d alert(s) (%d new)", run_id, merged.series,
             len(chunk_ids), result["alerts_generated"], outcome.new)
    return result


def cancel_fanout(connection: Redis, run_id: str, run_status: runs.RunStatus = runs.RunStatus.CANCELED,
                  error: str = "canceled by request", attempt: int | None = None) -> bool:
    """Cancel a fanned-out run whose chunks are still pending or running (False: none is).

    For `runs.cancel_run`, which sees the run's own RQ job ended: the gather is canceled first
    so that it cannot finish the run, then queued chunks are canceled and running ones stopped.
    The row is ended with the fence of the fanned-out attempt (`attempt`, or the row's current
    one): False if it ended or was taken by a newer attempt meanwhile.
    """
    from rq.command import send_stop_job_command

    try:
        gather_job = Job.fetch(gather_job_id(run_id), connection=connection)
    except NoSuchJobError:
        return False
    if gather_job.get_status() in ENDED or gather_job.get_status() == JobStatus.STARTED:
        return False  # ended, or finishing the run right now
    if attempt is None:
        with db_session():
            row = JobRun.get_or_none(JobRun.id == run_id)
        if row is None or row.status != runs.RunStatus.STARTED.value:
            return False
        attempt = row.attempts
    gather_job.cancel(enqueue_dependents=True)  # a run queued behind this one goes ahead
    for chunk in Job.fetch_many(gather_job.kwargs.get("chunk_ids", []), connection=connection):
        status = chunk.get_status() if chunk is not None else None
        if status == JobStatus.STARTED:
            try:
                send_stop_job_command(connection, chunk.id)
            except InvalidJobOperation:  # it ended meanwhile
                pass
        elif status is not None and status not in ENDED:
            chunk.cancel()
    return _end_run(connection, run_id, run_status, attempt, error=error)


def stop_gather(connection: Redis, run_id: str) -> bool:
    """Ask the worker of a running gather job to stop it (True: asked); it then stops the run."""
    from rq.command import send_stop_job_command

    gather_id = gather_job_id(run_id)
    if _job_status(connection, gather_id) != JobStatus.STARTED:
        return False
    try:
        send_stop_job_command(connection, gather_id)
    except (InvalidJobOperation, NoSuchJobError):
        return False
    return True


def end_stopped_job(connection: Redis, job: Job) -> bool:
    """A chunk or gather stopped from outside the service (API cancel, rq-dashboard's stop): stop its run.

    RQ never counts a stopped job as a met dependency, so the gather would never run and the
    run would hold the overlap lock until its lease ran out.
    """
    run_id = (job.kwargs or {}).get("run_id") or (job.args[0] if job.args else None)
    if not run_id:
        return False
    attempt = (job.meta or {}).get("attempt")
    attempt = int(attempt) if attempt is not None else None
    error = f"{'gather' if job.id == gather_job_id(run_id) else 'chunk'} {job.id} stopped by request"
    if job.id == gather_job_id(run_id):
        if attempt is None:
            with db_session():
                row = JobRun.get_or_none(JobRun.id == run_id)
            attempt = row.attempts if row is not None else None
        return attempt is not None and _end_run(connection, run_id, runs.RunStatus.STOPPED, attempt, error=error)
    return cancel_fanout(connection, run_id, runs.RunStatus.STOPPED, error=error, attempt=attempt)


def _end_run(connection: Redis, run_id: str, status: runs.RunStatus, attempt: int | None,
             result: dict | None = None, error: str | None = None) -> bool:
    """Record the fanned-out attempt's outcome on its row, then free the job for new runs.

    False (nothing written, nothing freed): a newer attempt took the run, or it ended.
    """
    error = error[-4000:] if error else None
    with db_session():
        if attempt is not None:
            ended = runs.end_attempt(run_id, attempt, status, result=result, error=error)
        else:  # jobs enqueued by an older release carry no attempt
            row = JobRun.get_or_none(JobRun.id == run_id)
            ended = row is not None and runs.end_if(run_id, runs.RunStatus.STARTED.value, row.attempts, status,
                                                    result=result, error=error)
    if not ended:
        log.warning("forecast run %s: attempt %s no longer current; %s not recorded", run_id, attempt, status.value)
        return False
    runs.release_slot(connection, JOB_NAME, run_id)
    connection.eval(_RELEASE, 1, FANOUT_KEY, run_id)
    if status == runs.RunStatus.FAILED:
        log.error("forecast run %s failed: %s", run_id, error)
    elif status != runs.RunStatus.FINISHED:
        log.info("forecast run %s %s: %s", run_id, status.value, error)
    return True
