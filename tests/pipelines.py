"""Pipelines for tests, selected with FORECAST_PIPELINE=tests.pipelines:<name>.

They exercise the job machinery (retries, time limits, stop) around a pipeline; the built-in
pipeline's own computation is tested in test_forecast_*.
"""

from __future__ import annotations

import time

from rq import get_current_job

from app.models import JobRun


def _alert(type_, severity, subject):
    return {
        "type": type_,
        "severity": severity,
        "title": f"{type_} {subject}",
        "message": "test",
        "subject": subject,
        "figures": {"value": 1},
        "fingerprint": f"{type_}|{subject}|w1",
    }


def two_alerts(settings):
    return [_alert("capacity_warning", "high", "line:L1"), _alert("demand_spike", "medium", "item:A@L1")]


def fail_twice(settings):
    """Fails on the first two attempts of a run, succeeds on the third."""
    attempts = JobRun.get_by_id(get_current_job().id).attempts
    if attempts < 3:
        raise RuntimeError(f"planned failure on attempt {attempts}")
    return two_alerts(settings)


def always_fail(settings):
    raise RuntimeError("planned failure")


def sleepy(settings):
    time.sleep(30)
    return []


def slow_first_attempt(settings):
    """The built-in pipeline, after a pause on the first attempt only (a window to kill the worker)."""
    import os

    from app.forecast.pipeline import run_pipeline

    if JobRun.get_by_id(get_current_job().id).attempts == 1:
        time.sleep(float(os.environ.get("TEST_PIPELINE_SLEEP", "30")))
    return run_pipeline(settings)


def fail_unless_retry(settings):
    """Fails every attempt of a run, except in a run that retries another (trigger `retry`)."""
    run = JobRun.get_by_id(get_current_job().id)
    if run.trigger != "retry":
        raise RuntimeError(f"planned failure on attempt {run.attempts}")
    return two_alerts(settings)
