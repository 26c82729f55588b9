"""The catalogue is the one source of the jobs, their queues and default crons; settings only override a cron."""

from __future__ import annotations

from app.config import Settings
from app.core.catalog import JOBS, QUEUES


def test_every_job_has_a_queue_and_a_cron_setting_defaulting_to_the_catalogue():
    settings = Settings(_env_file=None)
    assert set(settings.schedules) == set(JOBS)
    for name, spec in JOBS.items():
        assert spec.queue in QUEUES
        assert spec.cron_setting in Settings.model_fields
        assert settings.schedules[name] == spec.default_cron == spec.cron(settings)


def test_a_cron_setting_overrides_only_its_own_job():
    settings = Settings(_env_file=None, daily_summary_cron="30 6 * * *")
    assert JOBS["daily-summary"].cron(settings) == "30 6 * * *"
    assert JOBS["forecast"].cron(settings) == JOBS["forecast"].default_cron
