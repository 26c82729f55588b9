"""A run's life with real workers, Redis and databases: cancel races, killed and shut-down workers,
deleted RQ jobs, attempt fences, the RQ command line.

Each test reproduces a defect of issue 11 (points 2, 3, 5, 6 and 8; point 9, shutdown, is in
tests/test_faults_worker.py) and failed before its fix.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import peewee
import pytest
from playhouse.migrate import SchemaMigrator
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue
from rq.job import Job, JobStatus
from rq.worker.base import BaseWorker

from app import runs
from app.alert_store import store_alerts
from app.connections import database, db_session
from app.core.catalog import get_job
from app.forecast.demo import seed_demo
from app.migrations import MIGRATIONS_DIR, MigrationContext, Step
from app.models import Alert, JobRun, utcnow
from app.runs.fanout import chunk_job_id, gather_job_id
from app.runs.keys import active_key
from tests.test_job_policies import use, wait_for
from tests.test_jobs_api import trigger
from tests.test_worker_modes import _children
from workers.worker import ServiceWorker, build_worker

RQ_CLI = [str(Path(sys.executable).parent / "rq")]
FAST_FAULTS = {
    "worker_heartbeat_interval": 1,
    "worker_abandoned_after": 2,
    "worker_maintenance_interval": 2,
    "log_level": "INFO",
}


def run_of(run_id: str) -> JobRun:
    with db_session():
        return JobRun.get_by_id(run_id)


def alerts_of(run_id: str) -> int:
    with db_session():
        return Alert.select().where(Alert.job_id == run_id).count()


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- point 2: cancel right after trigger ------------------------------------------------------


class TestCancelRace:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return use(settings_overrides, forecast_pipeline="tests.pipelines:two_alerts", worker_heartbeat_interval=1)

    def test_a_run_canceled_while_a_worker_takes_it_never_executes(self, app, client, auth, redis):
        """The worker has dequeued the run (RQ: not yet started) when the cancel lands: 200, and
        the run's body never executes (before: the row went canceled -> started -> finished)."""
        run_id = trigger(client, auth).get_json()["job_id"]
        worker = build_worker(app.config["SETTINGS"], redis, ["forecast"])
        job, queue = Queue.dequeue_any([Queue("forecast", connection=redis)], None, connection=redis)
        assert job.id == run_id

        response = client.post(f"/api/jobs/forecast/{run_id}/cancel", headers=auth)
        assert response.status_code == 200 and response.get_json()["status"] == "canceled"
        assert trigger(client, auth, json={}).status_code == 202  # the lock is free: the run cannot execute

        worker.execute_job(job, queue)  # the worker goes on with what it dequeued (a forked work-horse)
        run = run_of(run_id)
        assert (run.status, run.attempts, run.started_at) == ("canceled", 0, None)
        assert alerts_of(run_id) == 0

    def test_cancel_after_the_worker_took_the_run_is_202_and_stops_it(
        self, app, client, auth, redis, start_process, settings_overrides
    ):
        """Once an attempt has taken the run, cancel answers 202 "stopping" and the run ends stopped."""
        settings_overrides["forecast_pipeline"] = "tests.pipelines:sleepy"
        run_id = trigger(client, auth).get_json()["job_id"]
        start_process("-m", "workers", "forecast", env_extra={"FORECAST_PIPELINE": "tests.pipelines:sleepy"})
        wait_for(lambda: run_of(run_id).status == "started")
        response = client.post(f"/api/jobs/forecast/{run_id}/cancel", headers=auth)
        assert response.status_code == 202 and response.get_json()["status"] == "stopping"
        again = trigger(client, auth)  # the lock is held until the run can no longer execute:
        if again.status_code == 202:  # the worker stopped it already (a 1 s heartbeat can be that quick)
            assert run_of(run_id).status == "stopped"
            return
        assert again.status_code == 409
        wait_for(lambda: run_of(run_id).status == "stopped")
        assert trigger(client, auth).status_code == 202

    def test_a_stop_outlives_the_worker_that_should_have_carried_it_out(self, app, client, auth, redis, run_worker):
        """202 "stopping", but the run's worker died before it could stop it: when the run is found
        abandoned and retried, the retry stops at once instead of executing."""
        run_id = trigger(client, auth).get_json()["job_id"]
        queue = Queue("forecast", connection=redis)
        job = Job.fetch(run_id, connection=redis)
        queue.remove(job)  # as a killed worker leaves it: taken, started, its worker gone
        job.worker_name = "killed-worker"
        job.save()
        job.set_status(JobStatus.STARTED)
        with db_session():
            JobRun.update(status="started", attempts=1, started_at=utcnow()).where(JobRun.id == run_id).execute()
        response = client.post(f"/api/jobs/forecast/{run_id}/cancel", headers=auth)
        assert response.status_code == 202
        queue.enqueue_job(job)  # what RQ's abandoned-job handling does with a run that has retries left
        run_worker(["forecast"])
        run = run_of(run_id)
        assert (run.status, run.attempts, run.error) == ("stopped", 2, "stopped by request")
        assert alerts_of(run_id) == 0
        assert trigger(client, auth).status_code == 202

    def test_trigger_then_cancel_at_once_with_two_workers(self, client, auth, redis, start_process):
        """The outside test's rounds: trigger, cancel within milliseconds, trigger again, two workers.
        A 200 "canceled" run never starts; runs never overlap."""
        for _ in range(2):
            start_process("-m", "workers", "forecast")
        wait_for(lambda: len(redis.smembers("rq:workers")) == 2)
        canceled, other = [], []
        for _ in range(12):
            # A previous round's run that was stopping holds the job until it has ended.
            response = wait_for(lambda: (r := trigger(client, auth)).status_code == 202 and r, timeout=20)
            run_id = response.get_json()["job_id"]
            cancel = client.post(f"/api/jobs/forecast/{run_id}/cancel", headers=auth)
            (canceled if cancel.status_code == 200 else other).append(run_id)
            time.sleep(0.05)
        wait_for(lambda: all(run_of(r).status in runs.TERMINAL_VALUES for r in canceled + other), timeout=30)
        time.sleep(1.0)  # any late execution of a canceled run would show now
        assert canceled
        for run_id in canceled:
            run = run_of(run_id)
            assert (run.status, run.attempts, run.started_at) == ("canceled", 0, None), run_id
            assert alerts_of(run_id) == 0
        with db_session():
            spans = sorted((r.started_at, r.ended_at) for r in JobRun.select() if r.started_at)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end is not None and end <= start  # one run at a time


class TestOpenAlertGuard:
    def _candidate(self, subject="line:L1"):
        return {
            "type": "capacity_warning",
            "severity": "high",
            "title": "t",
            "message": "m",
            "subject": subject,
            "figures": {},
            "fingerprint": f"capacity_warning|{subject}|w1",
        }

    def test_the_database_refuses_a_second_open_alert_for_a_fingerprint(self, app):
        with db_session():
            store_alerts([self._candidate()], job_id="a")
            with pytest.raises(peewee.IntegrityError) as refused:
                with database.atomic():
                    Alert.create(
                        type="capacity_warning",
                        severity="high",
                        title="t",
                        message="m",
                        subject="line:L1",
                        fingerprint="capacity_warning|line:L1|w1",
                    )
            assert "unique" in str(refused.value).lower()
            Alert.update(resolved=True).execute()
            store_alerts([self._candidate()], job_id="b")  # a resolved one does not block a new one
            assert Alert.select().count() == 2

    @pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
    def test_two_overlapping_stores_never_insert_duplicate_open_alerts(self, app):
        """Two stores at once (PostgreSQL, read committed): each read "no open alert"; before the
        guard both inserted one. Now the second waits on the index, then refreshes the first's row."""
        first_stored, outcomes = threading.Event(), {}

        def store(name, release=None):
            with db_session(), database.atomic():
                outcomes[name] = store_alerts([self._candidate()], job_id=name)
                if release is not None:
                    first_stored.set()
                    release.wait(10)

        release = threading.Event()
        first = threading.Thread(target=store, args=("first", release))
        first.start()
        assert first_stored.wait(10)
        second = threading.Thread(target=store, args=("second",))
        second.start()
        time.sleep(0.5)  # the second store has read (nothing committed) and waits on its insert
        release.set()
        first.join(10), second.join(10)
        with db_session():
            assert [(a.job_id, a.occurrences) for a in Alert.select()] == [("first", 2)]
        assert (outcomes["first"].new, outcomes["second"].updated) == (1, 1)

    def test_migration_resolves_open_duplicates_and_adds_the_guard(self, app, database_url):
        with db_session() as db:
            db.execute_sql('DROP INDEX IF EXISTS "alerts_open_fingerprint"')
            for job_id in ("a", "b"):
                Alert.create(
                    type="t", severity="low", title="t", message="m", subject="s", fingerprint="f", job_id=job_id
                )
            step = Step("0003", "0003_open_alert_unique", MIGRATIONS_DIR / "0003_open_alert_unique.py")
            with db.atomic():
                step.load().upgrade(MigrationContext(db=db, migrator=SchemaMigrator.from_database(db.obj)))
            assert [(a.job_id, a.resolved) for a in Alert.select().order_by(Alert.id)] == [("a", False), ("b", True)]
            assert "alerts_open_fingerprint" in {i.name for i in db.get_indexes("alerts")}


# -- point 3: SIGKILL of the worker parent only ---------------------------------------------------


class TestWorkerKilled:
    @pytest.fixture(params=["standby", "fork"])
    def settings_overrides(self, request, settings_overrides):
        return use(
            settings_overrides,
            forecast_pipeline="tests.pipelines:slow_first_attempt",
            worker_standby_horse=request.param == "standby",
            **FAST_FAULTS,
        )

    def test_sigkill_of_the_worker_kills_its_work_horse_and_the_run_executes_once(
        self, app, client, auth, start_process
    ):
        """Before: the work-horse survived its worker (an OOM kill) and ran on while the retry ran."""
        seed_demo()
        run_id = trigger(client, auth).get_json()["job_id"]
        first = start_process("-m", "workers", "forecast", env_extra={"TEST_PIPELINE_SLEEP": "8"})
        wait_for(lambda: run_of(run_id).status == "started")
        horses = _children(first.pid)
        assert horses
        os.kill(first.pid, signal.SIGKILL)  # the worker only, as the OOM killer does
        first.wait()
        wait_for(lambda: not any(alive(pid) for pid in horses), timeout=3)
        start_process("-m", "workers", "forecast")
        run = wait_for(lambda: (r := run_of(run_id)).status == "finished" and r, timeout=30)
        assert run.attempts == 2
        with db_session():
            assert {a.occurrences for a in Alert.select()} == {1}
            assert {a.job_id for a in Alert.select()} == {run_id}


class TestAttemptFence:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return use(settings_overrides, forecast_pipeline="tests.pipelines:slow_first_attempt")

    def test_a_replaced_attempt_stores_no_alert_and_does_not_end_the_row(self, app, client, auth, redis, start_process):
        """A newer attempt took the run while the first still ran: the first's outcome is not written."""
        seed_demo()
        run_id = trigger(client, auth).get_json()["job_id"]
        start_process("-m", "workers", "forecast", env_extra={"TEST_PIPELINE_SLEEP": "2"})
        wait_for(lambda: run_of(run_id).status == "started")
        with db_session():  # what a retry's mark_started does
            JobRun.update(attempts=JobRun.attempts + 1).where(JobRun.id == run_id).execute()
        job = Job.fetch(run_id, connection=redis)
        wait_for(lambda: job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED), timeout=30)
        run = run_of(run_id)
        assert (run.status, run.attempts, run.ended_at) == ("started", 2, None)
        assert alerts_of(run_id) == 0
        assert runs.active_run_id(redis, "forecast") == run_id  # still the live attempt's

    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
    def test_a_replaced_attempt_cannot_gather_a_fanned_out_run(self, app, client, auth, redis):
        """The fanned-out attempt's gather is fenced too."""
        from app.config import configure

        settings = app.config["SETTINGS"].model_copy(
            update={
                "forecast_fanout_threshold": 20,
                "forecast_chunk_size": 16,
                "forecast_pipeline": "app.forecast.pipeline:run_pipeline",
            }
        )
        configure(settings)
        seed_demo(items=60, days=120, seed=3)
        run_id = trigger(client, auth).get_json()["job_id"]
        build_worker(settings, redis).work(burst=True, with_scheduler=False, max_jobs=1)  # fans out
        assert Job.fetch(gather_job_id(run_id), connection=redis).meta["attempt"] == 1
        with db_session():
            JobRun.update(attempts=JobRun.attempts + 1).where(JobRun.id == run_id).execute()
        build_worker(settings, redis).work(burst=True, with_scheduler=False)
        assert Job.fetch(chunk_job_id(run_id, 0), connection=redis).get_status() == JobStatus.FINISHED
        assert Job.fetch(gather_job_id(run_id), connection=redis).get_status() == JobStatus.FINISHED
        run = run_of(run_id)
        assert (run.status, run.attempts) == ("started", 2)
        assert alerts_of(run_id) == 0


# -- point 5: the RQ job deleted from rq-dashboard --------------------------------------------------


class TestDeletedJob:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return use(settings_overrides, scheduler_interval=1)

    def test_trigger_after_delete_job_is_accepted_and_the_run_is_canceled(self, client, auth, redis):
        """rq-dashboard's "delete job" on a queued run: the next trigger is not refused for ~31 minutes."""
        run_id = trigger(client, auth).get_json()["job_id"]
        Job.fetch(run_id, connection=redis).delete()
        response = trigger(client, auth)
        assert response.status_code == 202
        run = run_of(run_id)
        assert run.status == "canceled" and "deleted" in run.error

    def test_empty_queue_cancels_the_run_within_seconds(self, client, auth, redis, start_process):
        """rq-dashboard's "empty queue": the scheduler's reconcile ends the run and frees its lock."""
        run_id = trigger(client, auth).get_json()["job_id"]
        Queue("forecast", connection=redis).empty()
        emptied = time.monotonic()
        start_process("scheduler.py")
        wait_for(lambda: run_of(run_id).status == "canceled", timeout=10)
        assert time.monotonic() - emptied < 10
        assert "deleted" in run_of(run_id).error
        assert runs.active_run_id(redis, "forecast") is None

    def test_a_run_in_its_enqueue_window_is_left_alone(self, app, redis):
        """The row exists before its job reaches Redis: reconcile must not take it for deleted."""
        settings = app.config["SETTINGS"]
        spec = get_job("forecast")
        run_id = "enqueue-window"
        assert runs.take_slot(redis, spec.name, run_id, force=False) is None  # pending lock, as enqueue_run
        with db_session():
            runs._create_row(run_id, spec, "manual", None, runs.RunStatus.QUEUED)
            JobRun.update(enqueued_at=utcnow() - timedelta(seconds=30)).execute()
            assert runs.reconcile(redis, settings) == 0
        assert run_of(run_id).status == "queued"

    def test_a_started_run_whose_job_vanished_keeps_the_lock(self, app, client, auth, redis):
        """Redis data loss under a running work-horse: not taken for a deleted queued job."""
        run_id = trigger(client, auth).get_json()["job_id"]
        with db_session():
            JobRun.update(status="started", attempts=1).where(JobRun.id == run_id).execute()
        Job.fetch(run_id, connection=redis).delete()
        assert trigger(client, auth).status_code == 409
        with db_session():
            runs.reconcile(redis, app.config["SETTINGS"])
        assert run_of(run_id).status == "started"


# -- point 6: the Redis-outage guard of the heartbeat -------------------------------------------------


def test_a_redis_error_in_the_post_job_heartbeat_does_not_stop_the_worker(app, redis, monkeypatch):
    """RQ calls `heartbeat()` after every job outside any guard; a Redis blip there ended the worker."""
    real = BaseWorker.heartbeat
    blips = []

    def heartbeat(self, timeout=None, pipeline=None):
        if pipeline is None and getattr(self, "_just_ran", False):
            self._just_ran = False
            blips.append(1)
            raise RedisConnectionError("Connection refused (a Redis blip)")
        return real(self, timeout, pipeline)

    class Worker(ServiceWorker):
        def execute_job(self, job, queue):
            super().execute_job(job, queue)
            self._just_ran = True

    monkeypatch.setattr(BaseWorker, "heartbeat", heartbeat)
    queue = Queue("default", connection=redis)
    jobs = [queue.enqueue("tests.jobs.mark", i) for i in range(2)]
    worker = Worker([queue], connection=redis)
    worker.work(burst=True, with_scheduler=False)
    assert len(blips) == 2
    assert [job.get_status(refresh=True) for job in jobs] == [JobStatus.FINISHED, JobStatus.FINISHED]


# -- point 8: the RQ command line -------------------------------------------------------------------


class TestForcedTriggersBackToBack:
    """A forced trigger queues behind the run before it. RQ counts a dependency missing from
    Redis as met, so a forced run must not chain on a run whose enqueuer has taken the lock but
    not yet put its job in Redis: it would start at once, beside the active run."""

    def test_a_forced_run_waits_for_a_run_still_in_its_enqueue_window(self, app, redis, monkeypatch):
        settings = app.config["SETTINGS"]
        holder = "active-run"
        Job.create("bench.noop_job.noop", id=holder, connection=redis, status=JobStatus.DEFERRED).save()
        redis.set(active_key("forecast"), holder)  # a confirmed, running run
        real_create_row = runs.enqueue._create_row
        in_window, leave_window = threading.Event(), threading.Event()

        def slow_create_row(run_id, *args, **kwargs):
            if not in_window.is_set():  # the first forced run stops between lock and enqueue
                in_window.set()
                assert leave_window.wait(10)
            return real_create_row(run_id, *args, **kwargs)

        monkeypatch.setattr(runs.enqueue, "_create_row", slow_create_row)
        outcomes: dict[str, runs.EnqueueOutcome] = {}

        def force(name: str) -> None:
            with app.app_context():
                outcomes[name] = runs.enqueue_run("forecast", redis=redis, settings=settings, force=True)

        first = threading.Thread(target=force, args=("first",))
        first.start()
        assert in_window.wait(10)
        second = threading.Thread(target=force, args=("second",))
        second.start()
        time.sleep(0.3)  # the second is now taking the lock, or waiting to
        leave_window.set()
        first.join(10)
        second.join(10)
        assert outcomes["first"].waits_for == holder
        assert outcomes["second"].waits_for == outcomes["first"].run_id
        for name in ("first", "second"):
            assert Job.fetch(outcomes[name].run_id, connection=redis).get_status() == JobStatus.DEFERRED
        assert Queue("forecast", connection=redis).count == 0  # nothing may start beside the active run

    def test_forced_triggers_at_once_all_queue_in_one_line_behind_the_active_run(self, app, redis):
        settings = app.config["SETTINGS"]
        holder = "active-run"
        Job.create("bench.noop_job.noop", id=holder, connection=redis, status=JobStatus.DEFERRED).save()
        redis.set(active_key("forecast"), holder)
        outcomes: list[runs.EnqueueOutcome] = []
        start = threading.Barrier(8)

        def force() -> None:
            with app.app_context():
                start.wait(10)
                for _ in range(3):
                    outcomes.append(runs.enqueue_run("forecast", redis=redis, settings=settings, force=True))

        threads = [threading.Thread(target=force) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(outcomes) == 24  # none refused: a forced trigger queues behind
        waited_on = [outcome.waits_for for outcome in outcomes]
        # One line: each run waits for a different one, starting from the active run.
        assert len(set(waited_on)) == 24 and holder in waited_on
        assert set(waited_on) - {holder} <= {outcome.run_id for outcome in outcomes}
        for outcome in outcomes:
            assert Job.fetch(outcome.run_id, connection=redis).get_status() == JobStatus.DEFERRED
        assert Queue("forecast", connection=redis).count == 0

    def test_a_forced_run_behind_an_enqueuer_that_died_is_refused(self, app, redis, monkeypatch):
        """The dead enqueuer's pending lock frees itself after PENDING_TTL; meanwhile a forced
        trigger is refused with the holder's id instead of starting at once."""
        monkeypatch.setattr(runs.lock, "FORCE_WAIT_SECONDS", 0.2)
        assert runs.take_slot(redis, "forecast", "died-enqueuing", force=False) is None
        with pytest.raises(runs.RunConflict) as refused:
            runs.take_slot(redis, "forecast", "forced", force=True)
        assert refused.value.active_id == "died-enqueuing"


class TestRqCommandLine:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return use(settings_overrides, forecast_pipeline="tests.pipelines:two_alerts", job_max_retries=1)

    @pytest.mark.parametrize("worker_class", ["workers.worker.ServiceWorker", "rq.Worker"])
    def test_rq_worker_runs_a_forecast(self, client, auth, redis_url, start_process, worker_class):
        """`rq worker` binds no database: every run failed with "Cannot use uninitialized Proxy"."""
        run_id = trigger(client, auth).get_json()["job_id"]
        proc = start_process(*RQ_CLI, "worker", "--burst", "-u", redis_url, "-w", worker_class, "forecast")
        assert proc.wait(60) == 0
        run = run_of(run_id)
        assert run.status == "finished" and run.attempts == 1, run.error
        assert alerts_of(run_id) == 2

    def test_a_run_that_cannot_start_ends_failed_with_the_reason(
        self, app, client, auth, redis, redis_url, start_process
    ):
        """A worker that cannot reach the database: the run ends failed (reason given), the job is free."""
        run_id = trigger(client, auth).get_json()["job_id"]
        proc = start_process(
            *RQ_CLI,
            "worker",
            "--burst",
            "-u",
            redis_url,
            "forecast",
            env_extra={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        )
        assert proc.wait(60) == 0
        assert Job.fetch(run_id, connection=redis).get_status() == JobStatus.FAILED
        with db_session():
            runs.reconcile(redis, app.config["SETTINGS"])  # the scheduler process's loop
        run = run_of(run_id)
        assert run.status == "failed" and "OperationalError" in run.error
        assert trigger(client, auth).status_code == 202


# Point 9 (Heroku shutdown): tests/test_faults_worker.py, test_sigterm_*.
