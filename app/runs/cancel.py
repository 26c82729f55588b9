"""Cancelling a run that has not started, or stopping one that has (API 200 canceled / 202 stopping).

`canceled` means the run never executes: the row goes from waiting to canceled with one
compare-and-set, and an attempt takes a run with a conditional UPDATE that refuses a canceled
row, so whichever comes first wins. A fanned-out run is canceled with its chunks (`fanout`).
"""

from __future__ import annotations

import logging

from redis import Redis
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from app.connections import db_session
from app.runs.fanout import cancel_fanout, gather_job_id, stop_gather
from app.runs.keys import ATTEMPT_KEY_TTL, stop_key
from app.runs.lifecycle import end_if, get_run
from app.runs.lock import release_slot
from app.runs.status import RQ_ENDED, TERMINAL_VALUES, RunAlreadyEnded, RunStatus

log = logging.getLogger(__name__)


def cancel_run(job_name: str, run_id: str, *, redis: Redis) -> RunStatus:
    """Cancel a run that has not started, or stop one that has.

    `canceled` means the run never executes: the row goes from waiting to canceled with one
    compare-and-set, and an attempt takes a run with a conditional UPDATE that refuses a
    canceled row, so whichever comes first wins. Only then is the overlap lock released.
    `started` (the API's 202 "stopping") means an attempt had taken the run: its worker is
    asked to stop it and records `stopped`, and releases the lock then.
    """
    for _ in range(5):
        with db_session():
            run = get_run(job_name, run_id)
        if run.status in TERMINAL_VALUES:
            raise RunAlreadyEnded(run)
        try:
            job = Job.fetch(run_id, connection=redis)
            rq_status = job.get_status(refresh=False)
        except NoSuchJobError:
            job, rq_status = None, None

        if run.status == RunStatus.STARTED.value and rq_status == JobStatus.STARTED:
            try:
                redis.set(stop_key(run_id), 1, ex=ATTEMPT_KEY_TTL)
                send_stop_job_command(redis, run_id)
                log.info("%s run %s: stop requested", job_name, run_id, extra={"job_id": run_id, "job_name": job_name})
                return RunStatus.STARTED
            except (InvalidJobOperation, NoSuchJobError):
                redis.delete(stop_key(run_id))
                continue  # it ended meanwhile: look again
        if run.status == RunStatus.STARTED.value and rq_status == JobStatus.FINISHED:
            # The run's own job is done but its row is open: a fanned-out forecast in its chunks.
            if cancel_fanout(redis, run_id):
                log.info(
                    "%s run %s canceled with its chunks",
                    job_name,
                    run_id,
                    extra={"job_id": run_id, "job_name": job_name},
                )
                return RunStatus.CANCELED
            if stop_gather(redis, run_id):
                return RunStatus.STARTED
            if redis.exists(Job.key_for(gather_job_id(run_id))):
                continue  # its gather is ending the run right now: look again
        # Waiting (queued, deferred, retry-waiting), or a started row whose attempt is not
        # executing (its worker died): no attempt holds it now, so it can be canceled.
        with db_session():
            canceled = end_if(run_id, run.status, run.attempts, RunStatus.CANCELED, error="canceled by request")
        if not canceled:
            continue  # an attempt took it (or it ended) meanwhile: look again
        if job is not None and rq_status not in RQ_ENDED and rq_status != JobStatus.STARTED:
            try:
                job.cancel(enqueue_dependents=True)
            except (InvalidJobOperation, NoSuchJobError):
                pass
        release_slot(redis, job_name, run_id)
        log.info("%s run %s canceled", job_name, run_id, extra={"job_id": run_id, "job_name": job_name})
        return RunStatus.CANCELED
    with db_session():
        run = get_run(job_name, run_id)
    if run.status in TERMINAL_VALUES:
        raise RunAlreadyEnded(run)
    return RunStatus.STARTED
