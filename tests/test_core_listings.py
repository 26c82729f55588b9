"""Service layer, fast tier (no servers): the read use cases of app.core.listings on a SQLite file.

Pages walk every row once, newest first, with their filters; a missing run, a bad cursor or a
value no column holds are domain errors (what each adapter maps to its own answer), never HTTP.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import peewee
import pytest

from app.connections import make_database, using_database
from app.core import listings
from app.core.errors import InvalidCursor, RunMissing, ValueOutOfRange
from app.core.pagination import encode_cursor
from app.models import Alert, JobRun, create_tables

T0 = datetime(2026, 3, 1, 12, 0, 0)


@pytest.fixture
def db(tmp_path):
    database = make_database(f"sqlite:///{tmp_path / 'core.db'}")
    with using_database(database):
        create_tables()
        yield database
        database.close()


def _run(i: int, **fields) -> JobRun:
    at = T0 + timedelta(minutes=i // 2)  # pairs share a time: the id breaks the tie
    values = dict(
        id=f"run-{i:02d}",
        job_name="forecast",
        queue="forecast",
        trigger="scheduled" if i % 3 else "manual",
        status="finished" if i % 2 else "failed",
        enqueued_at=at,
        attempts=1,
        result={"n": i},
    )
    values.update(fields)
    return JobRun.create(**values)


def _alert(i: int) -> Alert:
    return Alert.create(
        type="capacity_warning",
        severity=("high", "low")[i % 2],
        title=f"t{i}",
        message="m",
        source="scheduled_job" if i % 3 else "manual",
        subject=f"s{i}",
        fingerprint=f"fp{i}",
        figures={"load": i + 0.5},
        created_at=T0 + timedelta(minutes=i),
        last_seen_at=T0 + timedelta(minutes=i),
    )


def test_run_status_is_the_models_json_and_missing_runs_are_a_domain_error(db):
    run = _run(3)
    assert listings.run_status("forecast", run.id) == listings.run_json(JobRun.get_by_id(run.id))
    with pytest.raises(RunMissing) as missing:
        listings.run_status("daily-summary", run.id)  # right id, other job
    assert missing.value.run_id == run.id and missing.value.job_name == "daily-summary"


def test_history_pages_walk_every_matching_run_once_newest_first(db):
    for i in range(11):
        _run(i)
    _run(99, job_name="cleanup", queue="maintenance")
    seen, cursor = [], None
    while True:
        page = listings.history_page("forecast", listings.RunFilter(limit=3, cursor=cursor, status="finished"))
        seen += [r["job_id"] for r in page["runs"]]
        assert all(r["status"] == "finished" and r["job_name"] == "forecast" for r in page["runs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = [r.id for r in JobRun.select().where((JobRun.job_name == "forecast") & (JobRun.status == "finished"))]
    expected.sort(key=lambda rid: (JobRun.get_by_id(rid).enqueued_at, rid), reverse=True)
    assert seen == expected


def test_alert_pages_filter_and_order_like_the_rows(db):
    for i in range(9):
        _alert(i)
    page = listings.alerts_page(listings.AlertFilter(limit=50, severity="high", source="scheduled_job"))
    got = [a["id"] for a in page["alerts"]]
    rows = Alert.select().where((Alert.severity == "high") & (Alert.source == "scheduled_job"))
    assert got == [a.id for a in sorted(rows, key=lambda a: (a.created_at, a.id), reverse=True)]
    assert page["alerts"][0] == listings.alert_json(Alert.get_by_id(got[0]))
    since = listings.alerts_page(listings.AlertFilter(since=T0 + timedelta(minutes=6)))
    assert [a["subject"] for a in since["alerts"]] == ["s8", "s7", "s6"]


@pytest.mark.parametrize(
    "cursor",
    ["not-a-cursor", "x" * 201, encode_cursor(T0, 2**70), encode_cursor(T0, "a\x00b"), "WyIyMDI2IiwgMV0"],
)
def test_bad_cursors_are_invalid_input(db, cursor):
    with pytest.raises((InvalidCursor, ValueOutOfRange)):
        listings.history_page("forecast", listings.RunFilter(cursor=cursor))
    with pytest.raises((InvalidCursor, ValueOutOfRange)):
        listings.alerts_page(listings.AlertFilter(cursor=cursor))


def test_a_cursor_of_the_wrong_id_type_is_invalid(db):
    with pytest.raises(InvalidCursor):
        listings.alerts_page(listings.AlertFilter(cursor=encode_cursor(T0, "run-1")))  # alerts: integer ids


def test_a_value_no_column_holds_never_reaches_sql(db):
    with pytest.raises(ValueOutOfRange):
        listings.history_page("forecast", listings.RunFilter(status="bad\x00"))


def test_json_columns_read_as_the_field_reads_them(db):
    """The listings' JSON reader (the C scanner) agrees with JSONField.python_value, odd text included."""
    from app.core.pagination import _load_json
    from app.models import JSONField

    field = JSONField()
    for text in ['{"a": 1, "b": [1.5, null, "\\u00e9"]}', " [1] ", "3", '"x"', "1e400", "NaN"]:
        assert repr(_load_json(text)) == repr(field.python_value(text))
    for bad in ["{", "[1] x", ""]:
        with pytest.raises(ValueError):
            _load_json(bad)
    _run(1, result={"k": [1, {"z": None}]})
    page = listings.history_page("forecast", listings.RunFilter())
    assert page["runs"][0]["result"] == {"k": [1, {"z": None}]}


def test_listings_raise_no_http_error(db):
    """What an adapter catches is a ServiceError, never werkzeug's or the API's own errors."""
    from app.core.errors import ServiceError

    for call in (
        lambda: listings.run_status("forecast", "nope"),
        lambda: listings.history_page("forecast", listings.RunFilter(cursor="%%%")),
    ):
        with pytest.raises(ServiceError):
            call()
    assert not issubclass(RunMissing, peewee.PeeweeException)
