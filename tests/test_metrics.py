"""/metrics: Prometheus text read from Redis and the database at scrape time."""

from __future__ import annotations

import concurrent.futures
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.models import JobRun, utcnow
from tests.conftest import settings_env
from tests.servers import free_port


@pytest.fixture
def settings_overrides(settings_overrides):
    return {**settings_overrides, "forecast_pipeline": "tests.pipelines:two_alerts"}


def scrape(client, **kwargs) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return samples(response.get_data(as_text=True))


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics, name, **labels):
    return metrics.get((name, tuple(sorted(labels.items()))))


def test_metrics_after_a_real_run(client, auth, run_worker):
    job_id = client.post("/api/jobs/forecast/trigger", headers=auth).get_json()["job_id"]
    run_worker()
    metrics = scrape(client)
    assert value(metrics, "forecast_job_runs", job="forecast", status="finished") == 1
    assert value(metrics, "forecast_job_run_duration_seconds_count", job="forecast") == 1
    assert value(metrics, "forecast_job_run_duration_seconds_bucket", job="forecast", le="+Inf") == 1
    assert value(metrics, "forecast_job_run_duration_seconds_bucket", job="forecast", le="3600.0") == 1
    assert 0 <= value(metrics, "forecast_job_run_duration_seconds_sum", job="forecast") < 60
    assert value(metrics, "forecast_queue_jobs", queue="forecast", registry="finished") == 1
    for queue in ("forecast", "reports", "maintenance", "default"):
        assert value(metrics, "forecast_queue_jobs", queue=queue, registry="queued") == 0
    assert value(metrics, "forecast_workers", state="busy") == 0  # the burst worker has ended
    assert value(metrics, "forecast_workers", state="idle") == 0
    ended = JobRun.get_by_id(job_id).ended_at.replace(tzinfo=timezone.utc).timestamp()
    assert value(metrics, "forecast_schedule_last_success_timestamp_seconds", schedule="forecast") == pytest.approx(
        ended, abs=1
    )
    assert value(metrics, "forecast_schedule_last_success_timestamp_seconds", schedule="cleanup") is None
    assert value(metrics, "forecast_up", source="redis") == 1 and value(metrics, "forecast_up", source="database") == 1


def test_duration_histogram_buckets_and_run_counts(client):
    now = utcnow()
    for i, seconds in enumerate([0.2, 3, 3, 45, 5000]):
        JobRun.create(
            id=f"r{i}",
            job_name="forecast",
            queue="forecast",
            trigger="manual",
            status="finished",
            enqueued_at=now,
            started_at=now - timedelta(seconds=seconds),
            ended_at=now,
            attempts=1,
        )
    JobRun.create(
        id="f1",
        job_name="forecast",
        queue="forecast",
        trigger="scheduled",
        status="failed",
        enqueued_at=now,
        started_at=now,
        ended_at=now,
        attempts=3,
    )
    metrics = scrape(client)
    bucket = lambda le: value(metrics, "forecast_job_run_duration_seconds_bucket", job="forecast", le=le)  # noqa: E731
    assert (bucket("0.5"), bucket("2.5"), bucket("5.0"), bucket("60.0"), bucket("3600.0"), bucket("+Inf")) == (
        1,
        1,
        3,
        4,
        4,
        5,
    )
    assert value(metrics, "forecast_job_run_duration_seconds_sum", job="forecast") == pytest.approx(5051.2, abs=0.1)
    assert value(metrics, "forecast_job_runs", job="forecast", status="failed") == 1
    assert value(metrics, "forecast_job_runs", job="forecast", status="finished") == 5


def test_workers_and_schedules(client, auth, app, redis):
    from scheduler import ServiceScheduler
    from workers.worker import build_worker

    worker = build_worker(app.config["SETTINGS"], redis, name="metrics-worker")
    worker.register_birth()
    worker.set_state("busy")
    worker.heartbeat()
    ServiceScheduler(app.config["SETTINGS"], redis).register_schedules()
    client.post("/api/schedules/cleanup/pause", headers=auth)
    metrics = scrape(client)
    assert (
        value(metrics, "forecast_workers", state="busy") == 1 and value(metrics, "forecast_workers", state="idle") == 0
    )
    assert value(metrics, "forecast_worker_rss_bytes", worker="metrics-worker") > 10 * 2**20
    assert value(metrics, "forecast_worker_cpu_percent", worker="metrics-worker") >= 0
    assert (
        time.time() - value(metrics, "forecast_worker_last_heartbeat_timestamp_seconds", worker="metrics-worker") < 60
    )
    assert value(metrics, "forecast_schedule_paused", schedule="cleanup") == 1
    assert value(metrics, "forecast_schedule_paused", schedule="forecast") == 0
    next_run = value(metrics, "forecast_schedule_next_run_timestamp_seconds", schedule="daily-summary")
    assert datetime.fromtimestamp(next_run, timezone.utc).hour == 8


def test_every_app_instance_answers_the_same(app, settings_overrides, client, auth, run_worker):
    """Two app instances stand in for two gunicorn workers: no figure lives in one process."""
    from app import create_app

    client.post("/api/jobs/forecast/trigger", headers=auth)
    run_worker()
    other = create_app(settings_overrides).test_client()
    first = client.get("/metrics").get_data(as_text=True)
    assert other.get("/metrics").get_data(as_text=True) == first
    client.post("/api/jobs/forecast/trigger", headers=auth)  # state changed through one instance...
    assert value(scrape(other), "forecast_queue_jobs", queue="forecast", registry="queued") == 1  # ...seen by the other


class TestReadAuth:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "api_read_auth": True}

    def test_metrics_need_the_token(self, client, auth):
        response = client.get("/metrics")
        assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
        scrape(client, headers=auth)


def test_metrics_are_open_by_default_and_not_under_dashboard_auth(client):
    assert client.get("/metrics").status_code == 200
    assert "Content-Security-Policy" not in client.get("/metrics").headers


def test_redis_down_reports_up_zero_not_500(settings_overrides):
    from app import create_app
    from app.connections import db_session
    from app.models import create_tables

    app = create_app({**settings_overrides, "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with db_session():
        create_tables()
    metrics = scrape(app.test_client())
    assert value(metrics, "forecast_up", source="redis") == 0
    assert value(metrics, "forecast_up", source="database") == 1


def test_database_down_reports_up_zero_not_500(settings_overrides):
    from app import create_app

    app = create_app({**settings_overrides, "database_url": f"postgresql://nobody@127.0.0.1:{free_port()}/none"})
    metrics = scrape(app.test_client())
    assert value(metrics, "forecast_up", source="database") == 0
    assert value(metrics, "forecast_up", source="redis") == 1
    assert value(metrics, "forecast_queue_jobs", queue="forecast", registry="queued") == 0


@pytest.mark.slow
def test_gunicorn_with_several_workers_answers_the_same(settings_overrides, client, auth, run_worker, tmp_path):
    """The real web command with 2 gunicorn workers: concurrent scrapes all read the same state."""
    import os
    import subprocess
    import sys

    client.post("/api/jobs/forecast/trigger", headers=auth)
    run_worker()
    client.post("/api/jobs/daily-summary/trigger", headers=auth)
    port = free_port()
    env = settings_env(settings_overrides)
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen(
        [gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", "2", "app:create_app()"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((tmp_path / "gunicorn.log").read_text()[-3000:]) from None
                time.sleep(0.2)

        def fetch(_):
            return urllib.request.urlopen(url, timeout=10).read().decode()

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            bodies = list(pool.map(fetch, range(12)))
        assert len(set(bodies)) == 1
        metrics = samples(bodies[0])
        assert value(metrics, "forecast_job_runs", job="forecast", status="finished") == 1
        assert value(metrics, "forecast_queue_jobs", queue="reports", registry="queued") == 1
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_openmetrics_when_the_scraper_asks(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.content_type.startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")
