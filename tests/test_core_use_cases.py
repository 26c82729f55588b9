"""Service layer, fast tier (no servers): the use cases that need no Redis, on a SQLite file.

Names and ids are validated before anything reaches SQL or Redis; a run is looked up per job;
the daily report is stored once per day (a re-run replaces it) and paged by day; the cleanup
keeps what is inside retention; a missed slot is recorded once; every domain error has an
answer in each adapter's table.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from app.config import Settings
from app.connections import make_database, using_database
from app.core import jobs, maintenance, reports, scheduled, schedules
from app.core.catalog import JOBS
from app.core.errors import (
    InvalidCursor,
    InvalidRunId,
    ReportMissing,
    RunMissing,
    ServiceError,
    UnknownJobName,
    UnknownSchedule,
)
from app.models import Alert, DailySummary, JobRun, create_tables, utcnow


@pytest.fixture
def db(tmp_path):
    database = make_database(f"sqlite:///{tmp_path / 'core.db'}")
    with using_database(database):
        create_tables()
        yield database
        database.close()


@pytest.fixture
def settings(tmp_path):
    return Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'core.db'}", summary_webhook_url="")


def test_job_names_and_run_ids_are_checked_before_any_lookup():
    assert jobs.job_name("forecast") == "forecast"
    with pytest.raises(UnknownJobName) as unknown:
        jobs.job_name("nope" * 30)
    assert len(unknown.value.message) < 200 and "forecast" in unknown.value.message
    for bad in ("", "a" * 65, "a b", "a/b", "é", "x\x00"):
        with pytest.raises(InvalidRunId):
            jobs.run_id(bad)
    assert jobs.run_id("A-z_0" * 12) == "A-z_0" * 12
    with pytest.raises(UnknownSchedule):
        schedules.schedule_name("nope")


def test_the_job_list_is_the_catalogue_with_the_settings_crons(settings):
    listed = jobs.list_jobs(settings)
    assert [j["name"] for j in listed] == list(JOBS)
    assert all(j["cron"] == JOBS[j["name"]].cron(settings) and j["queue"] == JOBS[j["name"]].queue for j in listed)


def test_a_run_is_found_only_under_its_own_job(db):
    JobRun.create(id="r1", job_name="forecast", queue="forecast", trigger="manual", status="queued")
    assert jobs.get_run("forecast", "r1").id == "r1"
    with pytest.raises(RunMissing):
        jobs.get_run("cleanup", "r1")
    with pytest.raises(InvalidRunId):
        jobs.get_run("forecast", "bad id")


def test_the_daily_report_is_stored_once_per_day_and_paged(db, settings):
    slot = datetime(2026, 3, 2, 6, 0)
    JobRun.create(
        id="ds-1", job_name="daily-summary", queue="reports", trigger="scheduled", status="started", slot=slot
    )
    Alert.create(
        type="demand_spike", severity="high", title="t", message="m", subject="s", fingerprint="f",
        created_at=datetime(2026, 3, 1, 10), last_seen_at=datetime(2026, 3, 1, 10),
    )  # fmt: skip
    first = reports.generate_daily_report("ds-1", settings)
    assert first["date"] == "2026-03-01" and first["alerts"]["total"] == 1 and first["delivered"] is False
    again = reports.generate_daily_report("ds-1", settings)  # a retry replaces the same day
    assert again["date"] == first["date"] and DailySummary.select().count() == 1
    assert reports.daily_report(date(2026, 3, 1)).report["alerts"]["by_type"] == {"demand_spike": 1}
    assert reports.daily_report(None).day == date(2026, 3, 1)
    with pytest.raises(ReportMissing):
        reports.daily_report(date(2026, 2, 1))
    for day in (date(2026, 3, 3), date(2026, 3, 2)):
        DailySummary.create(day=day, report={}, created_at=utcnow())
    page, cursor = reports.list_reports(2, None)
    assert [r.day for r in page] == [date(2026, 3, 3), date(2026, 3, 2)] and cursor
    rest, end = reports.list_reports(2, cursor)
    assert [r.day for r in rest] == [date(2026, 3, 1)] and end is None
    with pytest.raises(InvalidCursor):
        reports.list_reports(2, "not-a-day")


def test_cleanup_deletes_only_what_outlived_its_retention(db, settings):
    now = utcnow()
    old, recent = now - timedelta(days=settings.alert_retention_days + 1), now - timedelta(days=1)
    for i, seen in enumerate([old, old, recent]):
        Alert.create(
            type="t", severity="low", title="t", message="m", subject=f"s{i}", fingerprint=f"f{i}",
            created_at=old, last_seen_at=seen,
        )  # fmt: skip
    ancient = now - timedelta(days=settings.history_retention_days + 1)
    JobRun.create(
        id="old-done", job_name="forecast", queue="forecast", trigger="manual", status="finished", enqueued_at=ancient
    )
    JobRun.create(
        id="old-live", job_name="forecast", queue="forecast", trigger="manual", status="started", enqueued_at=ancient
    )
    from app.models import OpsEvent, WebhookDelivery

    for key, at in (("old", ancient), ("new", recent)):
        event = OpsEvent.create(kind="run_failed", dedup_key=key, subject=key, message="m", created_at=at)
        WebhookDelivery.create(event=event, target="https://h", created_at=at)
    deleted = maintenance.cleanup(settings.model_copy(update={"cleanup_batch_size": 1}))
    assert (deleted["deleted_alerts"], deleted["deleted_runs"], deleted["deleted_ops_events"]) == (2, 1, 1)
    assert [e.dedup_key for e in OpsEvent.select()] == ["new"] and WebhookDelivery.select().count() == 1
    assert [a.subject for a in Alert.select()] == ["s2"]
    assert [r.id for r in JobRun.select()] == ["old-live"]  # an unfinished run is never deleted


def test_a_missed_slot_is_recorded_once_as_skipped(db):
    slot = datetime(2026, 3, 1, 6, 0)
    run_id = scheduled.record_missed_slot("forecast", slot, "missed: outage")
    assert run_id is not None
    row = JobRun.get_by_id(run_id)
    assert (row.status, row.trigger, row.slot, row.error) == ("skipped", "scheduled", slot, "missed: outage")
    assert scheduled.record_missed_slot("forecast", slot, "missed again") is None
    assert JobRun.select().count() == 1


def _subclasses(cls: type) -> list[type]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def test_every_domain_error_has_an_answer_in_each_adapters_table():
    from app.cli_ops import DOMAIN_ERRORS as CLI_ERRORS
    from app.errors import DOMAIN_ERRORS as API_ERRORS

    for error in _subclasses(ServiceError)[1:]:
        for table in (API_ERRORS, CLI_ERRORS):
            assert any(cls in table for cls in error.__mro__), (error, table)
