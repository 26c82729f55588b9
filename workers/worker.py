"""The worker class and its start-up (`python -m workers`).

`ServiceWorker` is RQ's forking worker with a choice per queue:
- jobs of the fork queues (`WORKER_FORK_QUEUES`, default `forecast`) run in a fresh forked
  work-horse, so one run's memory never outlives it; no database connection crosses the fork
  (the work-horse opens its own). The work-horse is forked ahead, while the worker is idle,
  and waits for its run on a pipe (`WORKER_STANDBY_HORSE`): no fork between trigger and start;
- jobs of the other queues (reports, maintenance, default: small, short) run in the worker
  process itself, as RQ's `SimpleWorker` runs them, on a database connection the worker keeps:
  a fork and a connect per job were most of a short job's cost (bench/README.md). A thread
  keeps their heartbeats fresh, so a killed worker's run is found abandoned as quickly, and a
  stop request interrupts them with `RunStopped`.
After RQ has handled a failure (exception, hard time limit, killed or stopped run) the worker
records the outcome on the run's history row.

A work-horse never outlives its worker (Linux `PR_SET_PDEATHSIG`: an OOM kill or SIGKILL of
the worker kills its horse too, so a retried run never executes twice at once), and every
outcome it writes is fenced by its attempt (`app.runs`).

Shutdown (SIGTERM; Heroku sends SIGKILL 30 s later) follows RQ's `HerokuWorker`: work-horses
ignore SIGTERM and the worker interrupts the run of a forked horse at once (SIGRTMIN), and
puts it back at the front of its queue, same run id, the attempt counted, no retry used; the
worker then exits. A run executing in the worker process (short jobs) is given
WORKER_SHUTDOWN_GRACE seconds to finish (warm shutdown), then is interrupted and requeued the
same way. The database is bound in the worker's own start-up, so `rq worker -w
workers.worker.ServiceWorker` works as `python -m workers` does.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import threading
import time

import peewee
import redis.exceptions
from redis import Redis
from rq import Queue, Worker
from rq.exceptions import ShutDownImminentException
from rq.executions import Execution
from rq.job import Job
from rq.worker import WorkerStatus
from rq.worker.base import SHUTDOWN_SIGNAL

from app import runs
from app.config import Settings, get_settings
from app.connections import bind_database, database, redis_connection
from app.core.catalog import QUEUES
from app.logging_setup import logging_for_job, set_job_context, setup_logging
from app.models import utcnow
from app.runs import fanout
from app.runs.tracking import bind_database_if_unbound
from app.worker_resources import publish_worker_resources

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
SHUTDOWN_REQUEUE_SIGNAL = signal.SIGRTMIN  # what RQ's HerokuWorker sends its work-horse


class RunStopped(Exception):
    """Raised inside a run executing in the worker process when a stop was requested for it."""


def die_with_parent(parent_pid: int) -> None:
    """In a work-horse: be SIGKILLed when the worker dies; exit now if it died already.

    Linux only (prctl); the check of the parent afterwards closes the race where the worker
    died between the fork and the prctl.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())
    if os.getppid() != parent_pid:
        os._exit(1)


def _in_job_code(frame) -> bool:
    """Is `frame` (a signal handler's) inside the job's own code, not RQ's bookkeeping around it?"""
    while frame is not None:
        if frame.f_code is Job.perform.__code__:
            return True
        frame = frame.f_back
    return False


class JobContextQueue(Queue):
    """RQ's queue, whose dequeue makes the job current for log lines at once.

    RQ logs the dequeue line of a run before handing the job to the worker; from here on,
    until the worker has handled the run's outcome, every line carries the run's id.
    """

    @classmethod
    def dequeue_any(cls, *args, **kwargs):
        result = super().dequeue_any(*args, **kwargs)
        if result is not None:
            set_job_context(result[0])
        return result


def _with_job_context(queue_class: type[Queue]) -> type[Queue]:
    if issubclass(queue_class, JobContextQueue):
        return queue_class
    return type(f"JobContext{queue_class.__name__}", (JobContextQueue, queue_class), {})


class ServiceWorker(Worker):
    #: seconds a run's heartbeat may be late before RQ's maintenance treats it as abandoned
    abandoned_after = 30
    #: queues whose jobs run in a forked work-horse; the others run in this process
    fork_queues: frozenset[str] = frozenset({"forecast"})
    #: a kept database connection idle longer than this is closed before the next run, not reused
    db_idle_reconnect = 30.0

    #: fork the next work-horse ahead of time (see `_start_standby`)
    standby_horse = True

    #: seconds a run executing in this process may take to finish after SIGTERM before it is requeued
    shutdown_grace = 20.0

    _in_process_job_id: str | None = None
    _db_used_at = 0.0
    _standby: tuple[int, int] | None = None  # (pid, write end of its pipe)
    _burst = False
    _requeue_for_shutdown = False  # the current run is interrupted by shutdown: requeue it

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Set after RQ checked the queues' type: `rq worker -w ...` may pass its own queue class.
        self.queue_class = _with_job_context(self.queue_class)
        self._worker_pid = os.getpid()  # a work-horse's parent, checked after its prctl
        bind_database_if_unbound()  # `rq worker -w workers.worker.ServiceWorker` binds nothing itself

    def execute_job(self, job, queue):
        set_job_context(job)  # the work-horse inherits it across the fork
        try:
            if job.origin in self.fork_queues:
                super().execute_job(job, queue)
            else:
                self._execute_in_process(job, queue)
        finally:
            set_job_context(None)  # the worker's own lines after a run name no job
        if job.origin in self.fork_queues:
            self._start_standby()  # for the next run, while this worker is idle

    def _execute_in_process(self, job, queue):
        """RQ's `SimpleWorker.execute_job`, with heartbeats kept and the database connection reused."""
        self.prepare_execution(job)
        self._reuse_database()
        done = threading.Event()
        beat = threading.Thread(
            target=self._beat_while_running, args=(job, done), daemon=True, name=f"heartbeat-{job.id}"
        )
        self._in_process_job_id = job.id
        beat.start()
        try:
            finished = self.perform_job(job, queue)
        finally:
            self._in_process_job_id = None
            done.set()
            beat.join()
        if not finished:
            _close_database()  # after a failure, start the next run on a fresh connection
        self._db_used_at = time.monotonic()
        self.set_state(WorkerStatus.IDLE)

    def _reuse_database(self) -> None:
        """Open (or keep) the connection the run's `db_session()` will find open and leave open."""
        if time.monotonic() - self._db_used_at > self.db_idle_reconnect:
            _close_database()  # idle a while: the server or a proxy may have dropped it
        if database.is_closed():
            try:
                database.connect()
            except peewee.DatabaseError as exc:  # the run's own session retries and fails visibly
                log.warning("database unavailable before run (%s)", type(exc).__name__)

    def _beat_while_running(self, job, done: threading.Event) -> None:
        began = time.monotonic()
        while not done.wait(self.job_monitoring_interval):
            try:
                self.set_current_job_working_time(time.monotonic() - began)
                self.maintain_heartbeats(job)
            except Exception as exc:  # the run may be finishing under us; the next beat retries
                log.debug("heartbeat of run %s skipped: %r", job.id, exc)

    def _raise_if_stopped(self, signum, frame):
        """SIGUSR1 handler: interrupt the run's own code (never RQ's bookkeeping around it)."""
        if self._in_process_job_id is None or self._stopped_job_id != self._in_process_job_id:
            return
        if _in_job_code(frame):
            raise RunStopped(f"run {self._in_process_job_id} stopped by request")

    # -- shutdown (SIGTERM) ------------------------------------------------------------------
    def setup_work_horse_signals(self):
        """As RQ's HerokuWorker: the platform signals every process; the worker decides for its horse."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(SHUTDOWN_REQUEUE_SIGNAL, self._interrupt_for_shutdown)

    def _interrupt_for_shutdown(self, signum, frame):
        """SIGRTMIN handler: the worker shuts down; interrupt the run's own code so it is requeued.

        Outside the run's code (RQ's bookkeeping before or after it) nothing is interrupted: the
        signal comes back in a moment, until the run's code is reached or the run has ended.
        """
        self._requeue_for_shutdown = True
        if _in_job_code(frame):
            raise ShutDownImminentException("worker shutting down (SIGTERM): run requeued", {})
        if self._is_horse or self._in_process_job_id is not None:
            timer = threading.Timer(0.1, os.kill, args=(os.getpid(), SHUTDOWN_REQUEUE_SIGNAL))
            timer.daemon = True
            timer.start()

    def handle_warm_shutdown_request(self):
        """SIGTERM: interrupt a forked run at once; give one in this process the grace period."""
        # Remember the stop before RQ raises StopRequested from this handler (it does when idle):
        # raised inside an at-fork callback (a SIGTERM during the standby's fork), Python swallows
        # the exception and the stop was lost, the worker then blocking in its dequeue. The loop
        # checks this flag before every dequeue.
        self._stop_requested = True
        super().handle_warm_shutdown_request()
        if self.horse_pid:
            log.info("shutdown: interrupting the run of work-horse %s to requeue it", self.horse_pid)
            try:
                os.kill(self.horse_pid, SHUTDOWN_REQUEUE_SIGNAL)
            except ProcessLookupError:
                pass
        elif self._in_process_job_id is not None:
            job_id = self._in_process_job_id
            log.info("shutdown: run %s may finish within %gs, else it is requeued", job_id, self.shutdown_grace)
            timer = threading.Timer(self.shutdown_grace, self._grace_over, args=(job_id,))
            timer.daemon = True
            timer.start()

    def perform_job(self, job, queue) -> bool:
        if self._requeue_for_shutdown:  # the shutdown came while the run was being handed over
            self._requeue(job, queue, "")
            return False
        return super().perform_job(job, queue)

    def _grace_over(self, job_id: str) -> None:
        if self._in_process_job_id == job_id:
            self._requeue_for_shutdown = True
            signal.pthread_kill(threading.main_thread().ident, SHUTDOWN_REQUEUE_SIGNAL)

    def _requeue(self, job, queue, exc_string: str) -> None:
        """Put a run interrupted by shutdown back at the front of its queue: same id, no retry used."""
        self._requeue_for_shutdown = False
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe)
            queue._enqueue_job(job, pipeline=pipe, at_front=True)  # what RQ's own immediate retry does
            pipe.execute()
        attempt = runs.taken_attempt(job.id) or runs.reported_attempt(self.connection, job.id, self.name)
        if attempt is not None:
            from app.connections import db_session

            with db_session():
                runs.end_attempt(
                    job.id,
                    attempt,
                    runs.RunStatus.QUEUED,
                    error="interrupted: its worker shut down (SIGTERM); requeued",
                    traceback=exc_string or None,
                    attempt_status=runs.AttemptStatus.INTERRUPTED,
                    next_retry_at=utcnow(),
                )
        log.warning("run %s requeued: its worker is shutting down", job.id)

    def kill_horse(self, sig=SHUTDOWN_SIGNAL):
        """Stop the current run: kill its work-horse, or interrupt it when it runs in this process.

        (RQ's version would signal this worker's own process group when there is no work-horse.)
        """
        if self.horse_pid:
            super().kill_horse(sig)
        elif self._in_process_job_id is not None and self._stopped_job_id == self._in_process_job_id:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    def get_heartbeat_ttl(self, job) -> int:
        """RQ adds a fixed 60 s; a configurable margin bounds how long a killed worker's run waits."""
        if job.timeout and job.timeout > 0:
            remaining = job.timeout - self.current_job_working_time
            return int(min(remaining, self.job_monitoring_interval)) + self.abandoned_after
        return self.job_monitoring_interval + self.abandoned_after

    @property
    def dequeue_timeout(self) -> int:
        """Wake from an empty queue often enough to run maintenance (abandoned-run detection) on time."""
        return max(1, min(self.worker_ttl - 15, self.maintenance_interval))

    # RQ lets a Redis error in its monitoring loop end the worker while the work-horse runs
    # on (an orphan). These bookkeeping writes may fail during an outage; the run goes on.
    def maintain_heartbeats(self, job):
        try:
            super().maintain_heartbeats(job)
        except redis.exceptions.ConnectionError as exc:
            log.warning("heartbeat for run %s failed (%s); Redis unavailable", job.id, type(exc).__name__)

    def heartbeat(self, timeout=None, pipeline=None):
        """RQ's heartbeat, plus this worker's CPU% and RSS for the dashboard and /metrics.

        A Redis outage makes it fail (RQ calls it after every job, outside any guard of its
        own): the worker logs it and goes on; the next heartbeat catches up.
        """
        try:
            super().heartbeat(timeout, pipeline=pipeline)
            publish_worker_resources(self, pipeline)
        except redis.exceptions.ConnectionError as exc:
            log.warning("worker heartbeat failed (%s); Redis unavailable", type(exc).__name__)

    def set_current_job_working_time(self, *args, **kwargs):
        try:
            super().set_current_job_working_time(*args, **kwargs)
        except redis.exceptions.ConnectionError:
            pass

    # -- the standby work-horse ------------------------------------------------------------
    # Forking when a run arrives puts the fork (and its copy-on-write page faults) between
    # trigger and start. Instead the next work-horse is forked while the worker is idle and
    # waits on a pipe; a run hands it the job id. It still serves exactly one run.

    def _start_standby(self) -> None:
        if (
            not self.standby_horse
            or self._burst
            or self._stop_requested
            or self._standby is not None
            or not self.fork_queues & set(self.queue_names())
        ):
            return
        _close_database()  # the work-horse opens its own; a shared socket would corrupt both
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(write_fd)
            os.setpgrp()
            self._standby_main(read_fd)
        os.close(read_fd)
        self._standby = (pid, write_fd)

    def _standby_main(self, read_fd: int) -> None:
        """The standby's life: wait for a run (EOF: the worker is gone or done), serve it, exit."""
        try:
            die_with_parent(self._worker_pid)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(SHUTDOWN_REQUEUE_SIGNAL, self._interrupt_for_shutdown)  # a shutdown during the hand-off
            handoff = b""
            while not handoff.endswith(b"\n"):
                chunk = os.read(read_fd, 512)
                if not chunk:
                    os._exit(0)
                handoff += chunk
            job_id, queue_name, execution_id = handoff.decode().split()
            job = self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
            queue = self.queue_class(queue_name, connection=self.connection, serializer=self.serializer)
            self.execution = Execution.fetch(execution_id, job_id, connection=self.connection)
            os.environ["RQ_WORKER_ID"], os.environ["RQ_JOB_ID"] = self.name, job_id
            self.main_work_horse(job, queue)  # exits
        except BaseException:
            log.exception("standby work-horse could not take its run")
        os._exit(1)

    def _stop_standby(self) -> None:
        if self._standby is not None:
            _release_standby(*self._standby)
            self._standby = None

    def fork_work_horse(self, job, queue):
        if self._standby is not None:
            pid, write_fd = self._standby
            self._standby = None
            try:
                os.write(write_fd, f"{job.id} {queue.name} {self.execution.id}\n".encode())
                os.close(write_fd)
                self._horse_pid = pid
                self.procline(f"Handed {job.id} to standby {pid} at {time.time()}")
                return
            except OSError as exc:  # it died while waiting: reap it and fork as usual
                log.warning("standby work-horse %s unavailable (%s); forking", pid, exc)
                _release_standby(pid, write_fd)
        _close_database()  # the work-horse opens its own; a shared socket would corrupt both
        super().fork_work_horse(job, queue)

    def main_work_horse(self, job, queue):
        die_with_parent(self._worker_pid)  # both paths: RQ's fork, and the standby's hand-off
        set_job_context(job)  # a standby horse was forked before its run was known
        super().main_work_horse(job, queue)

    def work(self, burst: bool = False, *args, **kwargs) -> bool:
        self._burst = burst  # a burst worker (tests, one-off drains) forks on demand
        return super().work(burst, *args, **kwargs)

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        signal.signal(signal.SIGUSR1, self._raise_if_stopped)  # stops of in-process runs (`kill_horse`)
        signal.signal(SHUTDOWN_REQUEUE_SIGNAL, self._interrupt_for_shutdown)  # in-process runs past the grace
        self._start_standby()

    def teardown(self):
        # RQ's stop raises StopRequested wherever SIGTERM lands: between a pipeline's send and
        # the read of its replies, it left the connection with replies on their way, which the
        # next pipeline (register_death's) read as its own. The pool's idle connections are
        # closed, so the last writes use fresh ones (the pubsub listener's, in use, is left open).
        self.connection.connection_pool.disconnect(inuse_connections=False)
        self._stop_standby()
        _close_database()
        super().teardown()

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string=""):
        with logging_for_job(job):  # also when RQ's maintenance finds a run abandoned
            self._handle_job_failure(job, queue, started_job_registry, exc_string)

    def _handle_job_failure(self, job, queue, started_job_registry, exc_string: str) -> None:
        if self._requeue_for_shutdown and self._stopped_job_id != job.id:
            try:
                self._requeue(job, queue, exc_string)
                return
            except Exception:  # fall back to RQ's failure handling (retry policy)
                log.exception("could not requeue run %s at shutdown", job.id)
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)
        try:
            status = runs.record_failure(
                job, self.connection, _last_line(exc_string), worker_name=self.name, traceback=exc_string or None
            )
            log.info("run %s failed attempt recorded as %s", job.id, status.value)
            if status == runs.RunStatus.STOPPED and job.func_name in (fanout.CHUNK_FUNC, fanout.GATHER_FUNC):
                fanout.end_stopped_job(self.connection, job)
        except Exception:  # the row catches up on the next attempt; never crash the worker
            log.exception("could not record failure of run %s", job.id)


def _close_database() -> None:
    if not database.is_closed():
        database.close()


def _release_standby(pid: int, write_fd: int) -> None:
    """Close a standby work-horse's pipe (EOF: it exits, if still alive) and reap it."""
    os.close(write_fd)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _last_line(exc_string: str) -> str:
    return runs.exception_summary(exc_string) or "failed"


def preload() -> None:
    """Import job code before forking so each work-horse starts warm."""
    import numpy  # noqa: F401

    import workers.forecast_chunks  # noqa: F401
    import workers.jobs  # noqa: F401
    from app.forecast import pipeline  # noqa: F401


def build_worker(settings: Settings, connection: Redis, queues: list[str] | None = None, **kwargs) -> ServiceWorker:
    names = queues or list(QUEUES)
    worker = ServiceWorker(
        [Queue(name, connection=connection) for name in names],
        connection=connection,
        default_result_ttl=settings.result_ttl,
        job_monitoring_interval=settings.worker_heartbeat_interval,
        maintenance_interval=settings.worker_maintenance_interval,
        **kwargs,
    )
    worker.abandoned_after = settings.worker_abandoned_after
    worker.shutdown_grace = settings.worker_shutdown_grace
    worker.fork_queues = frozenset(filter(None, settings.worker_fork_queues.split(",")))
    worker.standby_horse = settings.worker_standby_horse
    return worker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="RQ worker for the forecast service")
    parser.add_argument("queues", nargs="*", help=f"queues in priority order (default: {' '.join(QUEUES)})")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)

    settings = get_settings()
    setup_logging(settings, process="worker")
    bind_database(settings)
    preload()
    connection = redis_connection(settings)
    worker = build_worker(settings, connection, args.queues, name=args.name)
    # Make every queue visible to `rq info` and rq-dashboard before its first job.
    connection.sadd(Queue.redis_queues_keys, *(q.key for q in worker.queues))
    log.info("worker %s listening on %s", worker.name, ", ".join(q.name for q in worker.queues))
    # Delayed retries wait in RQ's ScheduledJobRegistry: the scheduler process moves them back
    # (scheduler.py), or RQ's scheduler child of each worker with WORKER_RQ_SCHEDULER=1.
    worker.work(with_scheduler=settings.worker_rq_scheduler, burst=args.burst, logging_level=settings.log_level.upper())
    if not args.burst and worker._shutdown_requested_date is None:
        log.error("worker loop ended unexpectedly; exiting so the process manager restarts it")
        sys.exit(1)
