"""Where runs execute: forked work-horses for the fork queues, the worker process for the others.

In-process runs must keep what the work-horse gave: fresh heartbeats while they run (so they
are not taken for abandoned), a working stop, and a worker that survives both. Delayed retries
are moved back to their queues by the scheduler process, not by a scheduler child per worker.
"""

from __future__ import annotations

import os
import time

import pytest
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from tests.test_job_policies import use, wait_for
from tests.test_jobs_api import trigger

pytestmark = pytest.mark.postgres_only  # where a run executes is RQ's and the worker's, not the database's


def test_fork_queues_fork_and_the_others_run_in_the_worker(app, redis, run_worker):
    short = Queue("default", connection=redis).enqueue("tests.jobs.pid")
    forecast = Queue("forecast", connection=redis).enqueue("tests.jobs.pid")
    run_worker(["forecast", "default"])
    assert Job.fetch(short.id, connection=redis).return_value() == os.getpid()
    assert Job.fetch(forecast.id, connection=redis).return_value() not in (None, os.getpid())


class TestLongInProcessRun:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return use(
            settings_overrides, worker_heartbeat_interval=1, worker_abandoned_after=1, worker_maintenance_interval=1
        )

    def test_heartbeats_keep_it_from_being_taken_for_abandoned(self, redis, start_process):
        job = Queue("default", connection=redis).enqueue("tests.jobs.sleep_for", 5, retry=Retry(2))
        start_process("-m", "workers", "default")
        wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED)
        time.sleep(3.5)  # past heartbeat interval + abandoned-after: expired without the beat thread
        StartedJobRegistry("default", connection=redis).cleanup()
        assert wait_for(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, timeout=15)
        assert job.return_value(refresh=True) == "slept"
        assert Job.fetch(job.id, connection=redis).retries_left == 2  # never taken for abandoned and retried


class TestStopInProcessRun:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        # No fork queue: the forecast run executes inside the worker process. A short shutdown
        # grace: at teardown the second run is requeued at once instead of being waited for.
        return use(
            settings_overrides,
            forecast_pipeline="tests.pipelines:sleepy",
            worker_fork_queues="",
            worker_shutdown_grace=0.5,
        )

    def test_stop_interrupts_the_run_and_the_worker_goes_on(self, client, auth, start_process):
        job_id = trigger(client, auth).get_json()["job_id"]
        worker = start_process("-m", "workers")
        wait_for(lambda: client.get(f"/api/jobs/forecast/{job_id}").get_json()["status"] == "started")
        response = client.post(f"/api/jobs/forecast/{job_id}/cancel", headers=auth)
        assert response.status_code == 202
        body = wait_for(
            lambda: (b := client.get(f"/api/jobs/forecast/{job_id}").get_json())["status"] == "stopped" and b
        )
        assert body["attempts"] == 1 and "stopped" in (body["error"] or "")
        assert worker.poll() is None  # RQ's kill_horse would have signalled the worker's own group
        second = trigger(client, auth).get_json()["job_id"]
        wait_for(lambda: client.get(f"/api/jobs/forecast/{second}").get_json()["status"] == "started")
        assert worker.poll() is None


class TestDelayedRetry:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return use(settings_overrides, scheduler_interval=1)

    def test_scheduler_moves_a_due_retry_back_to_its_queue(self, app, redis, run_worker):
        from scheduler import ServiceScheduler

        queue = Queue("default", connection=redis)
        job = queue.enqueue("tests.jobs.fail_first", "retry-test:attempts", retry=Retry(1, interval=1))
        run_worker(["default"])  # first attempt fails: the retry waits in the scheduled registry
        assert job.id in ScheduledJobRegistry("default", connection=redis).get_job_ids()
        scheduler = ServiceScheduler(app.config["SETTINGS"], redis)
        time.sleep(1.1)
        scheduler.tick()
        assert job.id in queue.get_job_ids()
        run_worker(["default"])
        assert job.get_status(refresh=True) == JobStatus.FINISHED
        assert job.return_value(refresh=True) == "second attempt"
        scheduler.retries.release_locks()


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.add(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found


def test_standby_work_horse_is_forked_ahead_and_serves_one_run(redis, start_process):
    import signal

    worker = start_process("-m", "workers", "forecast")
    queue = Queue("forecast", connection=redis)
    standby = wait_for(lambda: _children(worker.pid))
    assert len(standby) == 1  # forked while idle, before any run arrived
    first = queue.enqueue("tests.jobs.pid")
    first_pid = wait_for(lambda: first.return_value(refresh=True))
    assert {first_pid} == standby  # the run went to the waiting work-horse
    next_standby = wait_for(lambda: _children(worker.pid) - standby)  # a fresh one for the next run
    second = queue.enqueue("tests.jobs.pid")
    assert {wait_for(lambda: second.return_value(refresh=True))} == next_standby
    assert worker.pid not in (first_pid, *next_standby)
    last = wait_for(lambda: _children(worker.pid) - standby - next_standby)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert not any(os.path.exists(f"/proc/{pid}") for pid in last)  # the unused standby left with its worker
