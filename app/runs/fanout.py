"""Fan-out of a large forecast run over the workers: its jobs, ids, lease and ending.

A run with more series than FORECAST_FANOUT_THRESHOLD is planned by the run's own job, which
enqueues chunk jobs on the forecast queue and a gather job that depends on all of them, then
returns: the run's worker is free to take a chunk. How many chunks (`chunk_count`): one per
live worker listening on the forecast queue, and more only where a chunk would exceed
FORECAST_CHUNK_SIZE series (its memory bound). When a single worker listens and the run fits
one chunk it is not fanned out at all: its chunks would run one after another on that worker,
each loading its own part, which costs about a third more time than the run in one piece. The
gather finishes the run (`end_run`). The run keeps one id, one row and one result; chunk and
gather jobs are no catalogue jobs and have no rows of their own. Their ids derive from the
run's (`<run>-c003`, `<run>-gather`), so their log lines name the run. What the chunk and
gather jobs compute lives in `workers.forecast_chunks` (enqueued by that dotted path).

Overlap: the run's RQ job has ended while its chunks run, and the lock counts a holder that
has ended as stale. The fan-out therefore gives the lock a lease (a TTL, which `lock` reads
as "still being set up"), renewed by each chunk and freed by the gather, so that a trigger
meanwhile gets 409 and a scheduled firing is skipped. A run that starts while another run's
chunks still run (a forced trigger) fans out behind them: its chunks wait for the other
run's gather.

Fencing: the gather finishes the attempt that fanned the run out. That attempt's number
travels in the chunk and gather jobs' meta (`attempt`), and the gather stores alerts and ends
the row only while it is still the run's current attempt (`lifecycle.check_attempt`,
`lifecycle.end_attempt`). A repeated attempt of a run already fanned out hands the fan-out to
itself by updating the gather's meta.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from redis import Redis
from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Dependency, Job, JobStatus
from rq.worker import Worker

from app.config import Settings
from app.connections import db_session
from app.core.catalog import JOBS
from app.models import JobRun
from app.runs.keys import FANOUT_KEY, active_key, release_if_owner
from app.runs.lifecycle import end_attempt, end_if, taken_attempt
from app.runs.lock import hold, release_slot
from app.runs.status import RQ_ENDED, RunStatus
from app.runs.tracking import FinishedLater

if TYPE_CHECKING:
    from app.forecast.pipeline import Plan

log = logging.getLogger(__name__)

JOB_NAME = "forecast"  # the catalogue job whose runs fan out
QUEUE = JOBS[JOB_NAME].queue
# The chunk and gather job functions, enqueued by dotted path (jobs already queued name them).
CHUNK_FUNC = "workers.forecast_chunks.run_chunk"
GATHER_FUNC = "workers.forecast_chunks.gather"


def chunk_job_id(run_id: str, index: int) -> str:
    return f"{run_id}-c{index:03d}"


def gather_job_id(run_id: str) -> str:
    return f"{run_id}-gather"


def lease_seconds(settings: Settings) -> int:
    """Long enough for a chunk's time limit plus its retries; renewed by every chunk."""
    return settings.job_timeout + settings.job_max_retries * settings.job_retry_delay + 60


def hold_run(connection: Redis, run_id: str, settings: Settings) -> None:
    """Renew the lease of the run's lock and fan-out marker, where the run still holds them."""
    hold(connection, run_id, lease_seconds(settings), active_key(JOB_NAME), FANOUT_KEY)


def _job_status(connection: Redis, job_id: str) -> JobStatus | None:
    try:
        return Job.fetch(job_id, connection=connection).get_status(refresh=False)
    except NoSuchJobError:
        return None


def running_gather(connection: Redis, run_id: str) -> str | None:
    """The gather job of another run's fan-out that has not ended yet, if any."""
    holder = connection.get(FANOUT_KEY)
    if not holder or holder.decode() == run_id:
        return None
    gather_id = gather_job_id(holder.decode())
    status = _job_status(connection, gather_id)
    return gather_id if status is not None and status not in RQ_ENDED else None


def live_workers(connection: Redis) -> int:
    """Workers registered on the forecast queue whose RQ key has not expired (alive within its TTL)."""
    return len(Worker.all(queue=Queue(QUEUE, connection=connection)))


def chunk_count(series: int, settings: Settings, workers: int) -> int:
    """How many chunks a run of `series` series is split into (1: the run is not fanned out).

    At or below FORECAST_FANOUT_THRESHOLD: 1. Above it: one chunk per live worker, but never a
    chunk of more than FORECAST_CHUNK_SIZE series, so one worker alone runs a run that fits
    one chunk in one piece.
    """
    if series <= settings.forecast_fanout_threshold or series == 0:
        return 1
    by_memory = -(-series // settings.forecast_chunk_size)
    return max(by_memory, min(max(workers, 1), series))


def fan_out(
    run_id: str,
    plan: Plan,
    settings: Settings,
    connection: Redis,
    waits_for: str | None,
    planned: float,
    chunks: int | None = None,
    planned_cpu: float = 0.0,
) -> FinishedLater:
    """Enqueue `chunks` chunk jobs (default: `chunk_count` for the live workers) of nearly equal size
    and the gather job; the run's row and lock pass to the gather."""
    gather_id = gather_job_id(run_id)
    total = len(plan.keys)
    if chunks is None:
        chunks = chunk_count(total, settings, live_workers(connection))
    chunks = max(1, min(chunks, total))
    size = -(-total // chunks)
    slices = [plan.keys[i : i + size] for i in range(0, total, size)]
    info = {
        "status": "fanned_out",
        "series": len(plan.keys),
        "chunks": len(slices),
        "gather_job": gather_id,
        "waits_for": waits_for,
        "plan_seconds": round(planned, 4),
    }
    attempt = taken_attempt(run_id)
    status = _job_status(connection, gather_id)
    if status is not None and status not in RQ_ENDED:  # a repeated attempt of a run already fanned out
        log.warning("forecast run %s: fan-out already under way (gather %s)", run_id, status.value)
        if attempt is not None:  # the gather now finishes this attempt
            gather_job = Job.fetch(gather_id, connection=connection)
            gather_job.meta["attempt"] = attempt
            gather_job.save_meta()
        return FinishedLater(info)

    lease = lease_seconds(settings)
    connection.set(FANOUT_KEY, run_id, ex=lease)
    hold_run(connection, run_id, settings)
    queue = Queue(QUEUE, connection=connection)
    retry = Retry(max=settings.job_max_retries, interval=settings.job_retry_delay) if settings.job_max_retries else None
    common = {
        "retry": retry,
        "timeout": settings.job_timeout,
        "failure_ttl": max(lease, 24 * 3600),
        "meta": {"job_name": JOB_NAME, "run_id": run_id, "max_retries": settings.job_max_retries, "attempt": attempt},
    }
    chunk_ids: list[str] = []
    try:
        for index, keys in enumerate(slices):
            chunk_ids.append(chunk_job_id(run_id, index))
            queue.enqueue_call(
                CHUNK_FUNC,
                kwargs={
                    "run_id": run_id,
                    "index": index,
                    "start": plan.start.isoformat(),
                    "end": plan.end.isoformat(),
                    "keys": keys,
                },
                job_id=chunk_ids[-1],
                result_ttl=lease,  # the gather reads it
                depends_on=Dependency(jobs=[waits_for], allow_failure=True) if waits_for else None,
                description=f"forecast chunk {index + 1}/{len(slices)} of run {run_id}",
                **common,
            )
        queue.enqueue_call(
            GATHER_FUNC,
            kwargs={
                "run_id": run_id,
                "chunk_ids": chunk_ids,
                "horizon_start": plan.horizon_start.isoformat(),
                "plan_seconds": round(planned, 4),
            },
            job_id=gather_id,
            result_ttl=settings.result_ttl,
            depends_on=Dependency(jobs=chunk_ids, allow_failure=True, enqueue_at_front=True),
            description=f"forecast gather of run {run_id}",
            # the plan's CPU seconds ride in the meta: a gather function of an earlier release
            # (a worker not yet redeployed) would refuse an unknown keyword argument
            **{**common, "meta": {**common["meta"], "plan_cpu": round(planned_cpu, 4)}},
        )
    except BaseException:
        _discard(connection, chunk_ids + [gather_id])  # a retry of the run starts clean
        raise
    log.info(
        "forecast run %s: %d series fanned out in %d chunk(s) of %d%s",
        run_id,
        len(plan.keys),
        len(slices),
        size,
        f", after {waits_for}" if waits_for else "",
    )
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


def attempt_of_run(job: Job) -> int | None:
    """The run attempt a chunk or gather job belongs to (None: enqueued by an older release)."""
    value = (job.get_meta(refresh=True) or {}).get("attempt")
    return int(value) if value is not None else None


def chunk_failure(chunk_id: str, chunk: Job | None) -> str | None:
    """Why a chunk gave no result (None: it finished)."""
    if chunk is None:
        return f"chunk {chunk_id} vanished from Redis"
    status = chunk.get_status(refresh=False)
    if status == JobStatus.FINISHED:
        return None if chunk.return_value() is not None else f"chunk {chunk_id} result expired"
    latest = chunk.latest_result()
    lines = [line for line in (getattr(latest, "exc_string", None) or "").splitlines() if line.strip()]
    return f"chunk {chunk_id} {status.value}" + (f": {lines[-1].strip()}" if lines else "")


def cancel_fanout(
    connection: Redis,
    run_id: str,
    run_status: RunStatus = RunStatus.CANCELED,
    error: str = "canceled by request",
    attempt: int | None = None,
) -> bool:
    """Cancel a fanned-out run whose chunks are still pending or running (False: none is).

    For `cancel.cancel_run`, which sees the run's own RQ job ended: the gather is canceled first
    so that it cannot finish the run, then queued chunks are canceled and running ones stopped.
    The row is ended with the fence of the fanned-out attempt (`attempt`, or the row's current
    one): False if it ended or was taken by a newer attempt meanwhile.
    """
    try:
        gather_job = Job.fetch(gather_job_id(run_id), connection=connection)
    except NoSuchJobError:
        return False
    if gather_job.get_status() in RQ_ENDED or gather_job.get_status() == JobStatus.STARTED:
        return False  # ended, or finishing the run right now
    if attempt is None:
        with db_session():
            row = JobRun.get_or_none(JobRun.id == run_id)
        if row is None or row.status != RunStatus.STARTED.value:
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
        elif status is not None and status not in RQ_ENDED:
            chunk.cancel()
    return end_run(connection, run_id, run_status, attempt, error=error)


def stop_gather(connection: Redis, run_id: str) -> bool:
    """Ask the worker of a running gather job to stop it (True: asked); it then stops the run."""
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
        return attempt is not None and end_run(connection, run_id, RunStatus.STOPPED, attempt, error=error)
    return cancel_fanout(connection, run_id, RunStatus.STOPPED, error=error, attempt=attempt)


def end_run(
    connection: Redis,
    run_id: str,
    status: RunStatus,
    attempt: int | None,
    result: dict | None = None,
    error: str | None = None,
) -> bool:
    """Record the fanned-out attempt's outcome on its row, then free the job for new runs.

    False (nothing written, nothing freed): a newer attempt took the run, or it ended.
    """
    error = error[-4000:] if error else None
    with db_session():
        if attempt is not None:
            ended = end_attempt(run_id, attempt, status, result=result, error=error)
        else:  # jobs enqueued by an older release carry no attempt
            row = JobRun.get_or_none(JobRun.id == run_id)
            ended = row is not None and end_if(
                run_id, RunStatus.STARTED.value, row.attempts, status, result=result, error=error
            )
    if not ended:
        log.warning("forecast run %s: attempt %s no longer current; %s not recorded", run_id, attempt, status.value)
        return False
    release_slot(connection, JOB_NAME, run_id)
    release_if_owner(connection, FANOUT_KEY, run_id)
    if status == RunStatus.FAILED:
        log.error("forecast run %s failed: %s", run_id, error)
    elif status != RunStatus.FINISHED:
        log.info("forecast run %s %s: %s", run_id, status.value, error)
    return True
