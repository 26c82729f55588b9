"""A fanned-out forecast run with real workers: one id, one row, one result; chunks retried alone.

Demo data of 60 series with a threshold of 20 and chunks of 16 make four chunk jobs per run.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from app import runs
from app.config import configure, get_settings
from app.connections import db_session
from app.forecast import demo, pipeline, rules
from app.models import Alert, JobRun
from app.runs.fanout import FANOUT_KEY, attempt_of, cancel_fanout, chunk_job_id, gather_job_id
from tests.test_jobs_api import trigger
from workers.worker import build_worker

ITEMS = 60
CHUNKS = 4
ALERT_FIELDS = ("type", "severity", "title", "message", "subject", "figures", "fingerprint")


@pytest.fixture
def settings_overrides(settings_overrides):
    settings_overrides.update(forecast_fanout_threshold=20, forecast_chunk_size=16, job_max_retries=2)
    return settings_overrides


@pytest.fixture
def settings(app):
    return app.config["SETTINGS"]


def use_settings(settings, **changes) -> None:
    """Settings for the work-horses this test process forks (they read `get_settings()`)."""
    configure(settings.model_copy(update=changes))


def seed() -> list[dict]:
    """Seed the demo data; return what the pipeline makes of it in this process (unfanned)."""
    demo.seed_demo(items=ITEMS, days=120, seed=3)
    return pipeline.run_builtin(get_settings())


def stored_alerts() -> list[dict]:
    with db_session():
        rows = list(Alert.select())
    return rules.sort_alerts([{f: getattr(a, f) for f in ALERT_FIELDS} for a in rows])


def wait_for_end(client, run_id: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/api/jobs/forecast/{run_id}").get_json()
        if run["status"] in runs.TERMINAL_VALUES:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end within {timeout}s: {run}")


def work(app, max_jobs: int | None = None) -> None:
    """Drain the queues in this process with the service's forking worker (as `run_worker`)."""
    worker = build_worker(app.config["SETTINGS"], app.extensions["redis"])
    worker.work(burst=True, with_scheduler=False, max_jobs=max_jobs)


def test_fanned_out_run_matches_in_line_run(app, client, auth, redis, settings, start_process):
    expected = seed()
    assert {a["type"] for a in expected} == {"capacity_warning", "demand_spike"}

    # The same data through an unfanned run of the job, for reference.
    use_settings(settings, forecast_fanout_threshold=10_000)
    first = trigger(client, auth).get_json()["job_id"]
    work(app)
    use_settings(settings)
    in_line = wait_for_end(client, first)
    assert in_line["status"] == "finished" and "fanout" not in in_line["result"]
    assert in_line["result"]["new_alerts"] == len(expected)
    assert stored_alerts() == expected

    start_process("-m", "workers")
    start_process("-m", "workers")
    run_id = trigger(client, auth).get_json()["job_id"]
    run = wait_for_end(client, run_id)

    assert run["status"] == "finished" and run["error"] is None and run["attempts"] == 1
    result = run["result"]
    assert result["status"] == "completed" and result["series"] == ITEMS
    assert result["fanout"]["chunks"] == CHUNKS and result["fanout"]["retried_chunks"] == []
    assert (result["new_alerts"], result["updated_alerts"]) == (0, len(expected))  # same fingerprints
    assert result["alerts_generated"] == len(expected)
    assert result["summary"] == in_line["result"]["summary"]
    assert set(result["timings"]) == {"plan", "load", "fit", "rules", "store"}
    assert set(result["cpu_seconds"]) == set(result["timings"])  # CPU seconds of the same phases
    assert result["cpu_seconds"]["fit"] > 0 and set(in_line["result"]["cpu_seconds"]) == set(result["timings"])
    assert stored_alerts() == expected  # same title, message and figures: nothing changed
    with db_session():
        assert {a.occurrences for a in Alert.select()} == {2}
        # One row per run: chunk and gather jobs have none of their own.
        assert sorted(r.id for r in JobRun.select()) == sorted([first, run_id])
    history = client.get("/api/jobs/forecast/history").get_json()["runs"]
    assert [r["job_id"] for r in history] == [run_id, first]

    chunk_jobs = Job.fetch_many([chunk_job_id(run_id, i) for i in range(CHUNKS)], connection=redis)
    assert all(job is not None and job.get_status() == JobStatus.FINISHED for job in chunk_jobs)
    assert Job.fetch(gather_job_id(run_id), connection=redis).get_status() == JobStatus.FINISHED
    with pytest.raises(NoSuchJobError):
        Job.fetch(chunk_job_id(run_id, CHUNKS), connection=redis)
    # The run's own RQ job only planned and enqueued: its RQ result is the fan-out, the row's is the run's.
    parent = Job.fetch(run_id, connection=redis).return_value()
    assert parent["status"] == "fanned_out" and parent["chunks"] == CHUNKS
    # The lock is free again.
    assert runs.active_run_id(redis, "forecast") is None and redis.get(FANOUT_KEY) is None


def test_failed_chunk_is_retried_alone(app, client, auth, redis, start_process):
    expected = seed()
    start_process("-m", "workers", env_extra={"FORECAST_CHUNK_FAULT": "1:1"})
    start_process("-m", "workers", env_extra={"FORECAST_CHUNK_FAULT": "1:1"})
    run_id = trigger(client, auth).get_json()["job_id"]
    run = wait_for_end(client, run_id)

    assert run["status"] == "finished" and run["attempts"] == 1
    assert run["result"]["fanout"]["retried_chunks"] == [chunk_job_id(run_id, 1)]
    attempts = {i: attempt_of(Job.fetch(chunk_job_id(run_id, i), connection=redis)) for i in range(CHUNKS)}
    assert attempts == {0: 1, 1: 2, 2: 1, 3: 1}
    assert run["result"]["new_alerts"] == len(expected)
    assert stored_alerts() == expected


def test_chunk_failing_for_good_fails_the_run(app, client, auth, redis, settings):
    seed()
    use_settings(settings, forecast_chunk_fault="2:99", job_max_retries=1)
    run_id = trigger(client, auth).get_json()["job_id"]
    work(app)

    run = client.get(f"/api/jobs/forecast/{run_id}").get_json()
    assert run["status"] == "failed" and run["attempts"] == 1 and run["ended_at"]
    assert chunk_job_id(run_id, 2) in run["error"] and "planned failure of chunk 2" in run["error"]
    assert chunk_job_id(run_id, 1) not in run["error"]
    assert attempt_of(Job.fetch(chunk_job_id(run_id, 2), connection=redis)) == 2  # retried, then failed
    assert stored_alerts() == []  # all or nothing
    assert runs.active_run_id(redis, "forecast") is None
    assert trigger(client, auth).status_code == 202  # the lock was released


def test_lock_is_held_while_chunks_run_and_a_forced_run_waits(app, client, auth, redis, settings):
    expected = seed()
    first = trigger(client, auth).get_json()["job_id"]
    work(app, max_jobs=1)  # the run's own job: it plans, enqueues and returns

    assert Job.fetch(first, connection=redis).get_status() == JobStatus.FINISHED
    assert client.get(f"/api/jobs/forecast/{first}").get_json()["status"] == "started"
    queue = Queue("forecast", connection=redis)
    assert queue.job_ids == [chunk_job_id(first, i) for i in range(CHUNKS)]
    assert Job.fetch(gather_job_id(first), connection=redis).get_status() == JobStatus.DEFERRED

    conflict = trigger(client, auth)
    assert conflict.status_code == 409 and conflict.get_json()["error"]["active_job_id"] == first
    skipped = runs.enqueue_run(
        "forecast", redis=redis, settings=settings, trigger="scheduled", slot=datetime(2030, 1, 1)
    )
    assert skipped.status == runs.RunStatus.SKIPPED and skipped.waits_for == first

    forced = trigger(client, auth, json={"force": True}).get_json()["job_id"]
    # Let the forced run's job start before the first run's chunks, as a second worker would.
    queue.remove(forced)
    queue.push_job_id(forced, at_front=True)
    work(app, max_jobs=1)
    waiting = Job.fetch(forced, connection=redis).return_value()
    assert waiting["status"] == "fanned_out" and waiting["waits_for"] == gather_job_id(first)
    assert Job.fetch(chunk_job_id(forced, 0), connection=redis).get_status() == JobStatus.DEFERRED

    work(app)
    a, b = (client.get(f"/api/jobs/forecast/{r}").get_json() for r in (first, forced))
    assert a["status"] == b["status"] == "finished"
    assert (a["result"]["new_alerts"], b["result"]["updated_alerts"]) == (len(expected), len(expected))
    gather_ended = Job.fetch(gather_job_id(first), connection=redis).ended_at
    assert all(Job.fetch(chunk_job_id(forced, i), connection=redis).started_at >= gather_ended for i in range(CHUNKS))
    assert a["ended_at"] <= b["ended_at"]
    assert runs.active_run_id(redis, "forecast") is None
    assert trigger(client, auth).status_code == 202


def test_small_runs_stay_in_line(app, client, auth, redis, settings):
    seed()
    use_settings(settings, forecast_fanout_threshold=ITEMS)  # not above the threshold
    run_id = trigger(client, auth).get_json()["job_id"]
    work(app)
    run = client.get(f"/api/jobs/forecast/{run_id}").get_json()
    assert run["status"] == "finished" and "fanout" not in run["result"]
    assert run["result"]["series"] == ITEMS
    with pytest.raises(NoSuchJobError):
        Job.fetch(chunk_job_id(run_id, 0), connection=redis)


def test_cancel_fanout_cancels_pending_chunks_and_lets_a_waiting_run_go(app, client, auth, redis):
    expected = seed()
    run_id = trigger(client, auth).get_json()["job_id"]
    work(app, max_jobs=1)  # fanned out; chunks queued
    forced = trigger(client, auth, json={"force": True}).get_json()["job_id"]
    queue = Queue("forecast", connection=redis)
    queue.remove(forced)
    queue.push_job_id(forced, at_front=True)
    work(app, max_jobs=1)  # the forced run fans out behind the first one's gather
    assert Job.fetch(chunk_job_id(forced, 0), connection=redis).get_status() == JobStatus.DEFERRED

    assert cancel_fanout(redis, run_id) is True
    run = client.get(f"/api/jobs/forecast/{run_id}").get_json()
    assert run["status"] == "canceled" and run["error"] == "canceled by request"
    assert Job.fetch(gather_job_id(run_id), connection=redis).get_status() == JobStatus.CANCELED
    assert all(
        Job.fetch(chunk_job_id(run_id, i), connection=redis).get_status() == JobStatus.CANCELED for i in range(CHUNKS)
    )
    assert sorted(queue.job_ids) == [chunk_job_id(forced, i) for i in range(CHUNKS)]  # no longer waiting
    assert cancel_fanout(redis, run_id) is False  # nothing left to cancel

    work(app)
    assert client.get(f"/api/jobs/forecast/{forced}").get_json()["status"] == "finished"
    assert stored_alerts() == expected
    assert runs.active_run_id(redis, "forecast") is None


def test_cancel_through_the_api_reaches_a_fanned_out_run(app, client, auth, redis):
    seed()
    run_id = trigger(client, auth).get_json()["job_id"]
    work(app, max_jobs=1)  # fanned out; its own job finished, chunks queued
    response = client.post(f"/api/jobs/forecast/{run_id}/cancel", headers=auth)
    assert response.status_code == 200 and response.get_json()["status"] == "canceled"
    assert Job.fetch(gather_job_id(run_id), connection=redis).get_status() == JobStatus.CANCELED
    assert trigger(client, auth).status_code == 202


def test_a_chunk_stopped_from_outside_stops_its_run(app, client, auth, redis, settings):
    seed()
    use_settings(settings, forecast_chunk_fault="0:1")
    run_id = trigger(client, auth).get_json()["job_id"]
    work(app, max_jobs=1)  # fanned out; chunks queued
    worker = build_worker(app.config["SETTINGS"], app.extensions["redis"])
    worker._stopped_job_id = chunk_job_id(run_id, 0)  # as after rq-dashboard's stop: its work-horse ends
    worker.work(burst=True, with_scheduler=False, max_jobs=1)
    assert Job.fetch(chunk_job_id(run_id, 0), connection=redis).get_status() == JobStatus.STOPPED
    run = client.get(f"/api/jobs/forecast/{run_id}").get_json()
    assert run["status"] == "stopped" and chunk_job_id(run_id, 0) in run["error"]
    assert Job.fetch(gather_job_id(run_id), connection=redis).get_status() == JobStatus.CANCELED
    assert runs.active_run_id(redis, "forecast") is None
    assert trigger(client, auth).status_code == 202  # not held until the lease runs out


@pytest.mark.parametrize(
    ("series", "workers", "chunks"),
    [
        (60, 1, 1),  # one worker, fits one chunk: in one piece
        (60, 2, 2),  # one chunk per live worker
        (60, 3, 3),
        (20, 2, 1),  # not above the threshold
        (250, 1, 3),  # chunks never exceed FORECAST_CHUNK_SIZE, whatever the workers
        (250, 2, 3),
        (250, 5, 5),
        (21, 40, 21),  # never more chunks than series
    ],
)
def test_chunk_count_follows_live_workers_within_the_chunk_size(settings, series, workers, chunks):
    from app.runs.fanout import chunk_count

    config = settings.model_copy(update={"forecast_fanout_threshold": 20, "forecast_chunk_size": 100})
    assert chunk_count(series, config, workers) == chunks


def wait_for_workers(redis, count: int, timeout: float = 30) -> None:
    from rq import Worker

    deadline = time.monotonic() + timeout
    while len(Worker.all(queue=Queue("forecast", connection=redis))) < count:
        assert time.monotonic() < deadline, f"fewer than {count} workers registered within {timeout}s"
        time.sleep(0.1)


def test_one_worker_runs_in_one_piece_and_two_workers_get_one_chunk_each(
    app, client, auth, redis, settings, start_process
):
    """The fast path (no fan-out: one worker listens) and the fanned-out path store the same alerts."""
    expected = seed()
    use_settings(settings, forecast_chunk_size=100)  # the 60 series fit one chunk

    first = trigger(client, auth).get_json()["job_id"]
    work(app)  # this test process's worker is the only one listening
    in_line = wait_for_end(client, first)
    assert in_line["status"] == "finished" and "fanout" not in in_line["result"]
    with pytest.raises(NoSuchJobError):
        Job.fetch(chunk_job_id(first, 0), connection=redis)
    assert in_line["result"]["new_alerts"] == len(expected)
    assert stored_alerts() == expected

    for _ in range(2):
        start_process("-m", "workers", env_extra={"FORECAST_CHUNK_SIZE": "100"})
    wait_for_workers(redis, 2)
    run_id = trigger(client, auth).get_json()["job_id"]
    fanned = wait_for_end(client, run_id)
    assert fanned["status"] == "finished"
    assert fanned["result"]["fanout"]["chunks"] == 2 and fanned["result"]["fanout"]["chunk_size"] == ITEMS // 2
    assert (fanned["result"]["new_alerts"], fanned["result"]["updated_alerts"]) == (0, len(expected))
    assert fanned["result"]["summary"] == in_line["result"]["summary"]
    for key in ("horizon_start", "stale_series", "stale_lines"):
        assert fanned["result"]["forecast"][key] == in_line["result"]["forecast"][key]
    assert stored_alerts() == expected  # same titles, messages and figures
