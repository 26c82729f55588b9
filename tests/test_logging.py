"""Logs: job id and name on every line of a run (RQ's own lines too), JSON for every process,
no secret in any line."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest
from rq.job import Job

from app.config import Settings
from app.logging_setup import JobContextFilter, JSONFormatter, Redactor, TextFormatter, logging_for_job, setup_logging
from tests.test_jobs_api import trigger

pytestmark = pytest.mark.postgres_only  # what the log lines carry is the processes', not the database's

TOKEN = "tok-abcdef-0123456789"
PASSWORD = "pw-s3cret-xyz"


def _run_worker_process(start_process, **env) -> str:
    proc = start_process("-m", "workers", "--burst", env_extra={"LOG_LEVEL": "INFO", **env})
    proc.wait(120)
    with open(proc.log_path) as fh:
        return fh.read()


def _json_lines(output: str) -> list[dict]:
    records = []
    for line in output.splitlines():
        if line.strip():
            records.append(json.loads(line))  # every line is one JSON object
    return records


class TestRunLines:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "forecast_pipeline": "tests.pipelines:two_alerts"}

    def test_json_worker_lines_of_a_run_carry_its_id_and_name(self, client, auth, start_process):
        run_id = trigger(client, auth).get_json()["job_id"]
        records = _json_lines(_run_worker_process(start_process, LOG_FORMAT="json"))
        assert {r["process"] for r in records} == {"worker"}
        run_lines = [r for r in records if run_id in json.dumps(r)]
        messages = " | ".join(r["message"] for r in run_lines)
        for expected in (
            "started forecast",
            "alert created: capacity_warning high",
            "completed forecast",
            "Successfully completed",
            "Job OK",
        ):
            assert expected in messages
        assert {r["logger"] for r in run_lines} >= {"rq.worker", "app.runs.tracking", "app.alert_store"}
        for record in run_lines:
            assert (record.get("job_id"), record.get("job_name")) == (run_id, "forecast"), record
        # The worker's own lines outside a run name no job.
        assert any(r["message"].startswith("*** Listening") and "job_id" not in r for r in records)

    def test_text_worker_lines_of_a_run_carry_its_id_and_name(self, client, auth, start_process):
        run_id = trigger(client, auth).get_json()["job_id"]
        output = _run_worker_process(start_process, LOG_FORMAT="text")
        run_lines = [line for line in output.splitlines() if run_id in line]
        assert len(run_lines) >= 5
        assert all(f"[forecast {run_id}]" in line for line in run_lines), run_lines

    def test_lines_of_a_run_served_by_the_standby_work_horse_carry_it(self, client, auth, start_process):
        """A standby work-horse is forked before its run is known: it takes the run's context itself."""
        import signal

        from tests.test_job_policies import wait_for
        from tests.test_worker_modes import _children

        proc = start_process("-m", "workers", "forecast", env_extra={"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"})
        wait_for(lambda: _children(proc.pid))  # the standby, forked while the worker is idle
        run_id = trigger(client, auth).get_json()["job_id"]
        wait_for(lambda: client.get(f"/api/jobs/forecast/{run_id}", headers=auth).get_json()["status"] == "finished")
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        with open(proc.log_path) as fh:
            records = _json_lines(fh.read())
        run_lines = [r for r in records if run_id in json.dumps(r)]
        messages = " | ".join(r["message"] for r in run_lines)
        assert "started forecast" in messages and "Job OK" in messages
        for record in run_lines:
            assert (record.get("job_id"), record.get("job_name")) == (run_id, "forecast"), record


class TestFailureLines:
    @pytest.fixture
    def settings_overrides(self, settings_overrides):
        return {**settings_overrides, "forecast_pipeline": "tests.pipelines:always_fail", "job_max_retries": 1}

    def test_failure_and_retry_lines_carry_the_run(self, client, auth, start_process):
        run_id = trigger(client, auth).get_json()["job_id"]
        records = _json_lines(_run_worker_process(start_process, LOG_FORMAT="json"))
        run_lines = [r for r in records if run_id in json.dumps(r)]
        assert any("planned failure" in json.dumps(r) for r in run_lines)
        assert any(r["logger"] == "workers.worker" for r in run_lines)
        for record in run_lines:
            assert (record.get("job_id"), record.get("job_name")) == (run_id, "forecast"), record


def test_scheduler_logs_json(start_process, app):
    proc = start_process("scheduler.py", "--burst", env_extra={"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"})
    proc.wait(60)
    with open(proc.log_path) as fh:
        records = _json_lines(fh.read())
    assert records and {r["process"] for r in records} == {"scheduler"}
    assert any("schedule forecast registered" in r["message"] for r in records)


def test_web_logs_json(settings_overrides, capsys):
    from app import create_app
    from app.config import configure

    root = logging.getLogger()
    level = root.level
    try:
        app = create_app({**settings_overrides, "log_format": "json", "log_level": "INFO"})
        logging.getLogger("app.test").info("hello from web")
    finally:
        configure(None)
        for handler in [h for h in root.handlers if getattr(h, "_forecast_service", False)]:
            root.removeHandler(handler)  # it writes to capsys's stream, closed after this test
        root.setLevel(level)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any(r["message"] == "hello from web" and r["process"] == "web" for r in records)
    assert app is not None


# -- redaction ---------------------------------------------------------------------------------
@pytest.fixture
def secret_settings() -> Settings:
    return Settings(
        _env_file=None,
        api_token=TOKEN,
        dashboard_password=PASSWORD,
        redis_url="rediss://:redis%2Fpw-123@redis.example:6380/0",
        database_url="postgres://app:db-pw-456@db.example:5432/forecast",
        summary_webhook_url="https://hooks.slack.com/services/T1/B2/webhook-secret-789",
    )


def _capture(settings: Settings, log_format: str, emit) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(JobContextFilter())
    redactor = Redactor.from_settings(settings)
    handler.setFormatter(
        JSONFormatter(redactor)
        if log_format == "json"
        else TextFormatter("%(levelname)s %(name)s :: %(message)s", redactor)
    )
    logger = logging.getLogger(f"test.redaction.{log_format}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_never_appear(secret_settings, log_format):
    def emit(logger):
        logger.warning("token %s password %s", TOKEN, PASSWORD)
        logger.warning("connecting to %s and %s", secret_settings.redis_url, secret_settings.database_url)
        logger.warning("posting to %s", secret_settings.summary_webhook_url)
        logger.warning("header Authorization: Bearer %s", "some-other-token-value")
        logger.warning('any url: https://user:hunter2@example.com/x and quoted "%s"', PASSWORD)
        try:
            raise RuntimeError(f"failed with {TOKEN} at {secret_settings.database_url}")
        except RuntimeError:
            logger.exception("boom")

    output = _capture(secret_settings, log_format, emit)
    for secret in (
        TOKEN,
        PASSWORD,
        "redis%2Fpw-123",
        "redis/pw-123",
        "db-pw-456",
        "webhook-secret-789",
        "some-other-token-value",
        "hunter2",
    ):
        assert secret not in output, (secret, output)
    assert "***" in output and "db.example" in output  # what is not secret stays readable
    if log_format == "json":
        assert all(json.loads(line) for line in output.splitlines())


def test_short_or_empty_secrets_do_not_redact_words():
    redactor = Redactor(["", "ab"])
    assert redactor("a tab and a cab") == "a tab and a cab"


# -- job context outside job.perform() ---------------------------------------------------------
def test_lines_logged_while_a_job_is_current_carry_it(redis):
    """RQ logs a run's dequeue, success and failure lines outside `job.perform()`: the worker makes
    the job current (a context variable) from its dequeue until its outcome is handled."""
    job = Job.create(
        "workers.jobs.run_scheduled_forecast", connection=redis, id="run-123", meta={"job_name": "forecast"}
    )
    record = logging.LogRecord("rq.worker", logging.INFO, __file__, 1, "Job OK (%s)", ("run-123",), None)
    with logging_for_job(job):
        JobContextFilter().filter(record)
    assert (record.job_id, record.job_name) == ("run-123", "forecast")


def test_a_job_is_not_taken_for_lines_after_it(redis):
    job = Job.create("workers.jobs.run_scheduled_forecast", connection=redis, id="run-456")
    with logging_for_job(job):
        pass
    record = logging.LogRecord("rq.worker", logging.INFO, __file__, 1, "unsubscribing", (), None)
    JobContextFilter().filter(record)
    assert record.job_id == ""


def test_the_worker_dequeue_makes_the_job_current_and_its_end_clears_it(app, redis):
    """The dequeue line is logged by RQ before the worker sees the job: the queue class sets it."""
    from rq import Queue

    from app.logging_setup import set_job_context
    from workers.worker import build_worker

    worker = build_worker(app.config["SETTINGS"], redis, ["default"])
    Queue("default", connection=redis).enqueue("tests.jobs.pid", job_id="run-789", meta={"job_name": "noop"})
    job, _queue = worker.queue_class.dequeue_any(worker.queues, None, connection=redis)
    record = logging.LogRecord("rq.worker", logging.INFO, __file__, 1, "default: run-789", (), None)
    JobContextFilter().filter(record)
    assert (job.id, record.job_id, record.job_name) == ("run-789", "run-789", "noop")
    set_job_context(None)
    later = logging.LogRecord("rq.worker", logging.INFO, __file__, 1, "listening", (), None)
    JobContextFilter().filter(later)
    assert later.job_id == ""


def test_lines_outside_any_job_name_none(redis):
    Job.create("workers.jobs.run_scheduled_forecast", connection=redis, id="run-790")
    record = logging.LogRecord("app.api", logging.INFO, __file__, 1, "x", (), None)
    JobContextFilter().filter(record)
    assert record.job_id == ""


def test_setup_logging_replaces_its_handler_only():
    root = logging.getLogger()
    before = [h for h in root.handlers if not getattr(h, "_forecast_service", False)]
    settings = Settings(_env_file=None, log_format="json")
    setup_logging(settings, process="web")
    setup_logging(settings, process="web")
    ours = [h for h in root.handlers if getattr(h, "_forecast_service", False)]
    assert len(ours) == 1 and isinstance(ours[0].formatter, JSONFormatter)
    assert [h for h in root.handlers if not getattr(h, "_forecast_service", False)] == before


def test_cli_errors_do_not_print_passwords(settings_overrides):
    """An unreachable database is named by host, never with its password."""
    from tests.conftest import settings_env
    from tests.servers import free_port

    env = settings_env({**settings_overrides, "database_url": f"postgresql://u:{PASSWORD}@127.0.0.1:{free_port()}/x"})
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "alerts"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "database at 127.0.0.1" in result.stderr and PASSWORD not in result.stdout + result.stderr


def test_an_exception_python_cannot_raise_is_a_json_line_too(settings_overrides):
    """Python prints what it cannot raise (a finalizer's error; RQ's stop when SIGTERM lands in an
    at-fork callback) straight to stderr: a worker's log then held a bare traceback among its
    JSON lines (seen in a fresh-clone CI). setup_logging routes it through the log."""
    from tests.conftest import settings_env

    code = (
        "from app.config import Settings\n"
        "from app.logging_setup import setup_logging\n"
        "setup_logging(Settings(), 'worker')\n"
        "class Finalized:\n"
        "    def __del__(self):\n"
        "        raise RuntimeError('boom in a finalizer')\n"
        "Finalized()\n"
    )
    env = {**settings_env(settings_overrides), "LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    records = _json_lines(done.stderr)
    assert [r["logger"] for r in records] == ["unraisable"]
    assert records[0]["level"] == "WARNING" and "boom in a finalizer" in records[0]["exc"]
