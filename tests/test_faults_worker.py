"""Worker failures with real processes: SIGKILL and SIGTERM in the middle of a forecast run.

Each run must end exactly once: retried under the same id when its worker dies, never lost,
never storing an alert twice.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from app.forecast.demo import seed_demo
from app.models import Alert, JobRun
from tests.test_job_policies import wait_for
from tests.test_jobs_api import trigger
from tests.test_worker_modes import _children as children

pytestmark = pytest.mark.slow


@pytest.fixture
def settings_overrides(settings_overrides):
    return {
        **settings_overrides,
        "forecast_pipeline": "tests.pipelines:slow_first_attempt",
        "worker_heartbeat_interval": 1,
        "worker_abandoned_after": 2,
        "worker_maintenance_interval": 2,
        "log_level": "INFO",
    }


def kill_tree(pid: int, sig=signal.SIGKILL) -> None:
    """Kill a worker and every process it started (work-horse, RQ scheduler): a dyno or machine dying."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                children.append(int(entry))
    for child in children:
        kill_tree(child, sig)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def status(client, job_id):
    return client.get(f"/api/jobs/forecast/{job_id}").get_json()


@pytest.fixture
def seeded(app):
    seed_demo()


def test_sigkill_mid_run_is_detected_retried_and_finishes_once(client, auth, start_process, seeded):
    job_id = trigger(client, auth).get_json()["job_id"]
    first = start_process("-m", "workers", env_extra={"TEST_PIPELINE_SLEEP": "30"})
    wait_for(lambda: status(client, job_id)["status"] == "started")
    kill_tree(first.pid)
    killed_at = time.monotonic()
    first.wait()
    start_process("-m", "workers", env_extra={"TEST_PIPELINE_SLEEP": "30"})
    body = wait_for(lambda: (b := status(client, job_id))["status"] == "finished" and b, timeout=60)
    print(f"SIGKILL: run finished {time.monotonic() - killed_at:.1f}s after the kill, attempts={body['attempts']}")
    assert body["attempts"] == 2
    assert body["result"]["alerts_generated"] >= 2
    assert Alert.select().count() == body["result"]["new_alerts"]
    assert {a.occurrences for a in Alert.select()} == {1}
    assert JobRun.select().count() == 1


# Shutdown (SIGTERM; Heroku sends SIGKILL 30 s later), as RQ's HerokuWorker: a forked run (the
# forecast) is interrupted at once and requeued, same id, attempt counted, no retry used; a run
# in the worker process (short jobs) finishes if it can within WORKER_SHUTDOWN_GRACE, else it is
# requeued the same way. A run the platform kills first is recovered as after a SIGKILL.


def test_sigterm_requeues_a_forked_run_at_once(client, auth, redis, start_process, seeded):
    job_id = trigger(client, auth).get_json()["job_id"]
    worker = start_process("-m", "workers", env_extra={"TEST_PIPELINE_SLEEP": "60", "JOB_RETRY_DELAY": "300"})
    wait_for(lambda: status(client, job_id)["status"] == "started")
    for pid in {worker.pid, *children(worker.pid)}:  # the platform signals every process of the dyno
        os.kill(pid, signal.SIGTERM)
    assert worker.wait(10) == 0
    body = status(client, job_id)
    assert (body["status"], body["attempts"]) == ("queued", 1) and "shut down" in body["error"]
    assert Queue("forecast", connection=redis).job_ids == [job_id]  # at once: not after a retry delay
    assert job_id not in ScheduledJobRegistry("forecast", connection=redis).get_job_ids()
    assert Job.fetch(job_id, connection=redis).retries_left == 3  # not counted as a failure of the run
    start_process("-m", "workers")
    body = wait_for(lambda: (b := status(client, job_id))["status"] == "finished" and b, timeout=30)
    assert body["attempts"] == 2
    assert {a.occurrences for a in Alert.select()} == {1}


def test_sigterm_lets_a_short_in_process_run_finish(client, auth, start_process, seeded):
    job_id = trigger(client, auth).get_json()["job_id"]
    worker = start_process(
        "-m", "workers", env_extra={"TEST_PIPELINE_SLEEP": "2", "WORKER_FORK_QUEUES": "", "WORKER_SHUTDOWN_GRACE": "10"}
    )
    wait_for(lambda: status(client, job_id)["status"] == "started")
    worker.send_signal(signal.SIGTERM)  # warm shutdown: finish the current run, take no new one
    assert worker.wait(20) == 0
    body = status(client, job_id)
    assert body["status"] == "finished" and body["attempts"] == 1


def test_sigterm_requeues_an_in_process_run_past_the_grace(client, auth, redis, start_process, seeded):
    job_id = trigger(client, auth).get_json()["job_id"]
    worker = start_process(
        "-m", "workers", env_extra={"TEST_PIPELINE_SLEEP": "60", "WORKER_FORK_QUEUES": "", "WORKER_SHUTDOWN_GRACE": "1"}
    )
    wait_for(lambda: status(client, job_id)["status"] == "started")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    body = status(client, job_id)
    assert (body["status"], body["attempts"]) == ("queued", 1)
    assert Queue("forecast", connection=redis).job_ids == [job_id]


def test_sigterm_then_kill_before_the_grace_ends_retries_the_run(client, auth, start_process, seeded):
    job_id = trigger(client, auth).get_json()["job_id"]
    worker = start_process(
        "-m",
        "workers",
        env_extra={"TEST_PIPELINE_SLEEP": "30", "WORKER_FORK_QUEUES": "", "WORKER_SHUTDOWN_GRACE": "25"},
    )
    wait_for(lambda: status(client, job_id)["status"] == "started")
    worker.send_signal(signal.SIGTERM)
    time.sleep(2)  # the platform's grace period runs out first, then SIGKILL
    assert worker.poll() is None, "a run in the worker process is given its grace"
    kill_tree(worker.pid)
    worker.wait()
    start_process("-m", "workers")
    body = wait_for(lambda: (b := status(client, job_id))["status"] == "finished" and b, timeout=60)
    assert body["attempts"] == 2
    assert {a.occurrences for a in Alert.select()} == {1}
