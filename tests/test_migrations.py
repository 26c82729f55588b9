"""Schema migrations on SQLite and PostgreSQL: upgrade with data, idempotence, the lock, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date, datetime
from pathlib import Path

import peewee
import pytest

from app.config import Settings
from app.connections import bind_database, database, db_session
from app.migrations import MIGRATIONS_DIR, MigrationError, MigrationLockTimeout, applied, discover, migrate, status
from app.models import (
    ALL_MODELS,
    Alert,
    AlertOccurrence,
    DailySummary,
    DemandHistory,
    JobRun,
    ProductionLine,
    create_tables,
)
from tests.conftest import settings_env

ROOT = Path(__file__).resolve().parent.parent


def _reset(url: str) -> None:
    if url.startswith("sqlite"):
        Path(url[len("sqlite:///") :]).unlink(missing_ok=True)
        return
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    conn.close()


@pytest.fixture
def db(database_url):
    bind_database(Settings(_env_file=None, database_url=database_url))
    with db_session():
        yield database
    if not database.is_closed():
        database.close()


def snapshot(db) -> dict:
    """Tables, columns, indexes and foreign keys, as the database reports them."""
    out = {}
    for table in sorted(db.get_tables()):
        if table == "schema_migrations":
            continue
        columns = sorted((c.name, c.data_type.lower(), c.null, c.primary_key) for c in db.get_columns(table))
        indexes = sorted((i.name, tuple(i.columns), i.unique) for i in db.get_indexes(table))
        keys = sorted((f.column, f.dest_table, f.dest_column) for f in db.get_foreign_keys(table))
        out[table] = {"columns": columns, "indexes": indexes, "foreign_keys": keys}
    return out


def test_migrations_build_exactly_the_models_schema(db, database_url):
    """Every model change needs a migration: a migrated database equals one made from the models."""
    create_tables()
    from_models = snapshot(db)
    db.close()
    _reset(database_url)
    db.connect()
    migrate(db)
    assert snapshot(db) == from_models
    assert {m._meta.table_name for m in ALL_MODELS} <= set(db.get_tables())


def test_steps_are_numbered_and_start_with_the_initial_schema():
    steps = discover()
    assert steps[0].name == "0001_initial"
    assert [s.version for s in steps] == [f"{n:04d}" for n in range(1, len(steps) + 1)]


def test_upgrade_from_the_first_schema_keeps_data(db):
    first = discover()[0].version
    assert migrate(db, target=first) == ["0001_initial"]
    # Data written the way the first release wrote it (raw SQL: later models may differ).
    db.execute_sql("INSERT INTO production_lines (code, name, daily_capacity) VALUES ('L1', 'Line 1', 100)")
    line_id = db.execute_sql("SELECT id FROM production_lines WHERE code = 'L1'").fetchone()[0]
    db.execute_sql(
        "INSERT INTO demand_history (item, line_id, day, quantity) VALUES ('A', %s, '2024-05-01', 42)".replace(
            "%s", str(line_id)
        )
    )
    db.execute_sql(
        "INSERT INTO alerts (type, severity, title, message, source, job_id, subject, figures, fingerprint,"
        " occurrences, resolved, created_at, last_seen_at) VALUES ('capacity_warning', 'high', 't', 'm',"
        " 'scheduled_job', 'run1', 'line:L1', '{\"forecast\": 120}', 'fp', 1, false,"
        " '2024-05-01 10:00:00', '2024-05-01 10:00:00')"
    )
    db.execute_sql(
        "INSERT INTO job_runs (id, job_name, queue, trigger, status, enqueued_at, attempts, result)"
        " VALUES ('run1', 'forecast', 'forecast', 'manual', 'finished', '2024-05-01 10:00:00', 1, '{\"n\": 1}')"
    )
    db.execute_sql(
        "INSERT INTO daily_summaries (day, report, job_id, created_at)"
        " VALUES ('2024-04-30', '{\"date\": \"2024-04-30\"}', 'run0', '2024-05-01 08:00:00')"
    )

    migrate(db)
    assert set(applied(db)) == {s.version for s in discover()}
    assert ProductionLine.get(ProductionLine.code == "L1").daily_capacity == 100
    assert DemandHistory.get().line.code == "L1" and DemandHistory.get().day == date(2024, 5, 1)
    alert = Alert.get()
    assert alert.figures == {"forecast": 120} and alert.resolved is False
    assert alert.created_at == datetime(2024, 5, 1, 10)
    assert JobRun.get_by_id("run1").result == {"n": 1}
    assert DailySummary.get().report == {"date": "2024-04-30"}
    # The upgraded database takes writes through today's models.
    Alert.create(type="demand_spike", severity="medium", title="t", message="m", subject="item:A", fingerprint="fp2")
    assert Alert.select().count() == 2


def test_run_durations_are_backfilled(db):
    """0002 stores ended_at - started_at of the runs that ended before it (never negative, ms precision)."""
    migrate(db, target="0001")
    rows = [
        ("done", "'2024-05-01 10:00:01.250000'", "'2024-05-01 10:01:03.500000'"),  # 62.25 s
        ("skewed", "'2024-05-01 10:00:05'", "'2024-05-01 10:00:04'"),  # clocks disagreed
        ("never-started", "NULL", "'2024-05-01 10:00:00'"),
        ("running", "'2024-05-01 10:00:00'", "NULL"),
    ]
    for run_id, started, ended in rows:
        db.execute_sql(
            "INSERT INTO job_runs (id, job_name, queue, trigger, status, enqueued_at, started_at, ended_at,"
            f" attempts) VALUES ('{run_id}', 'forecast', 'forecast', 'manual', 'finished',"
            f" '2024-05-01 10:00:00', {started}, {ended}, 1)"
        )
    migrate(db)
    durations = {run.id: run.duration_s for run in JobRun.select()}
    assert durations == {"done": pytest.approx(62.25), "skewed": 0.0, "never-started": None, "running": None}


def test_run_attempts_are_backfilled_from_each_runs_last_attempt(db):
    """0006 keeps what the runs' rows knew: one attempt per run that ran, with its error and status."""
    migrate(db, target="0005")
    rows = [  # id, status, attempts, started, ended, error
        ("ok", "finished", 1, "'2024-05-01 10:00:01'", "'2024-05-01 10:00:09'", "NULL"),
        ("boom", "failed", 3, "'2024-05-01 11:00:00'", "'2024-05-01 11:00:02'", "'ValueError: bad row'"),
        ("dead", "failed", 1, "'2024-05-01 12:00:00'", "'2024-05-01 12:05:00'", "'abandoned: its worker died'"),
        ("waiting", "scheduled", 1, "'2024-05-01 13:00:00'", "NULL", "'KeyError: x'"),
        ("running", "started", 2, "'2024-05-01 14:00:00'", "NULL", "NULL"),
        ("never", "queued", 0, "NULL", "NULL", "NULL"),
        ("skipped", "skipped", 0, "NULL", "'2024-05-01 15:00:00'", "'skipped: run x still queued or running'"),
    ]
    for run_id, status_, attempts, started, ended, error in rows:
        db.execute_sql(
            "INSERT INTO job_runs (id, job_name, queue, trigger, status, enqueued_at, started_at, ended_at,"
            f" attempts, error) VALUES ('{run_id}', 'forecast', 'forecast', 'manual', '{status_}',"
            f" '2024-05-01 09:00:00', {started}, {ended}, {attempts}, {error})"
        )
    migrate(db)
    from app.models import RunAttempt

    got = {
        a.run_id: (a.number, a.status, a.error, a.ended_at is None)
        for a in RunAttempt.select().order_by(RunAttempt.run)
    }
    assert got == {
        "ok": (1, "finished", None, False),
        "boom": (3, "failed", "ValueError: bad row", False),
        "dead": (1, "abandoned", "abandoned: its worker died", False),
        "waiting": (1, "failed", "KeyError: x", False),
        "running": (2, "started", None, True),
    }
    assert {r.id: r.retry_of for r in JobRun.select()} == {r[0]: None for r in rows}
    # The runs' own rows are unchanged, and a run's attempts go with it (history retention).
    assert JobRun.get_by_id("boom").status == "failed" and JobRun.get_by_id("boom").error == "ValueError: bad row"
    JobRun.delete().where(JobRun.id == "boom").execute()
    assert not RunAttempt.select().where(RunAttempt.run == "boom").exists()


def test_sightings_keep_their_rows_and_ids_when_their_foreign_key_goes(db):
    """0010 drops alert_occurrences' key to alerts (PostgreSQL: the constraint; SQLite: a rebuilt table)."""
    migrate(db, target="0009")
    assert db.get_foreign_keys("alert_occurrences")
    db.execute_sql(
        "INSERT INTO alerts (type, severity, title, message, source, subject, figures, fingerprint, occurrences,"
        " resolved, created_at, last_seen_at, state) VALUES ('capacity_warning', 'high', 't', 'm', 'scheduled_job',"
        " 'line:L1', '{}', 'fp', 2, false, '2024-05-01 10:00:00', '2024-05-01 12:00:00', 'open')"
    )
    alert_id = db.execute_sql("SELECT id FROM alerts").fetchone()[0]
    for sighting_id, run, hour in ((7, "run1", 10), (9, "run2", 12)):
        db.execute_sql(
            "INSERT INTO alert_occurrences (id, alert_id, job_id, seen_at, severity)"
            f" VALUES ({sighting_id}, {alert_id}, '{run}', '2024-05-01 {hour}:00:00', 'high')"
        )

    migrate(db)
    assert db.get_foreign_keys("alert_occurrences") == []
    from app.core.alerts import occurrences

    assert [s["job_id"] for s in occurrences(alert_id)] == ["run2", "run1"]
    assert sorted(r.id for r in AlertOccurrence.select()) == [7, 9]
    AlertOccurrence.create(alert=alert_id, job_id="run3", severity="high")  # the table takes writes
    assert AlertOccurrence.select().count() == 3
    assert migrate(db) == []


def test_database_made_before_migrations_is_adopted(db):
    create_tables()  # what `init-db` did before migrations existed
    ProductionLine.create(code="L1", name="Line 1", daily_capacity=5)
    assert migrate(db) == [s.name for s in discover()]
    assert ProductionLine.select().count() == 1


def test_second_run_applies_nothing(db):
    assert migrate(db) != []
    before = {v: m.applied_at for v, m in applied(db).items()}
    assert migrate(db) == []
    assert {v: m.applied_at for v, m in applied(db).items()} == before
    assert all(applied_at is not None for _, applied_at in status(db))


# -- the runner's mechanics, with steps written for the test ---------------------------------
STEP_CREATE = """
import peewee

class Thing(peewee.Model):
    name = peewee.CharField()

    class Meta:
        table_name = "things"

def upgrade(ctx):
    with ctx.db.bind_ctx([Thing]):
        ctx.db.create_tables([Thing])
"""
STEP_ADD_COLUMN = """
import time
import peewee

def upgrade(ctx):
    time.sleep({sleep})
    ctx.run(ctx.migrator.add_column("things", "colour", peewee.CharField(default="blue")))
"""
STEP_ADD_INDEX = """
def upgrade(ctx):
    if not ctx.has_index("things", "things_colour"):
        ctx.run(ctx.migrator.add_index("things", ("colour",), False))
"""
STEP_FAILS = """
def upgrade(ctx):
    ctx.db.execute_sql("CREATE TABLE half_done (id integer)")
    raise RuntimeError("planned failure")
"""


def _steps(tmp_path: Path, sleep: float = 0.0, fail_third: bool = False) -> Path:
    directory = tmp_path / "steps"
    directory.mkdir(exist_ok=True)
    (directory / "0001_things.py").write_text(STEP_CREATE)
    (directory / "0002_colour.py").write_text(STEP_ADD_COLUMN.replace("{sleep}", str(sleep)))
    (directory / "0003_colour_index.py").write_text(STEP_FAILS if fail_third else STEP_ADD_INDEX)
    (directory / "README.txt").write_text("not a step")
    return directory


def test_steps_run_in_order_up_to_a_target(db, tmp_path):
    steps = _steps(tmp_path)
    assert migrate(db, directory=steps, target="0002") == ["0001_things", "0002_colour"]
    assert "colour" in {c.name for c in db.get_columns("things")}
    assert migrate(db, directory=steps) == ["0003_colour_index"]
    assert "things_colour" in {i.name for i in db.get_indexes("things")}
    with pytest.raises(MigrationError, match="no migration with version"):
        migrate(db, directory=steps, target="0009")


def test_failing_step_is_rolled_back_alone(db, tmp_path):
    steps = _steps(tmp_path, fail_third=True)
    with pytest.raises(RuntimeError, match="planned failure"):
        migrate(db, directory=steps)
    assert set(applied(db)) == {"0001", "0002"}
    assert "half_done" not in db.get_tables()


def test_duplicate_versions_are_refused(tmp_path):
    steps = _steps(tmp_path)
    (steps / "0002_other.py").write_text(STEP_ADD_INDEX)
    with pytest.raises(MigrationError, match="two migrations with version 0002"):
        discover(steps)


def test_waits_for_a_held_lock_and_times_out(db, database_url, tmp_path):
    steps = _steps(tmp_path)
    if database_url.startswith("sqlite"):
        import sqlite3

        holder = sqlite3.connect(database_url[len("sqlite:///") :], isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        threading.Timer(1.0, lambda: holder.execute("COMMIT")).start()
        began = time.monotonic()
        assert migrate(db, directory=steps, lock_timeout=30) != []
        assert time.monotonic() - began >= 0.9
        holder.close()
        return
    import psycopg2

    from app.migrations import ADVISORY_LOCK_KEY

    holder = psycopg2.connect(database_url)
    holder.autocommit = True
    holder.cursor().execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    with pytest.raises(MigrationLockTimeout):
        migrate(db, directory=steps, lock_timeout=0.5)
    assert applied(db) == {}
    holder.close()  # the session lock goes with the session
    assert migrate(db, directory=steps, lock_timeout=5) != []


RUNNER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from app.config import Settings
    from app.connections import bind_database, database, db_session
    from app.migrations import migrate
    bind_database(Settings(_env_file=None, database_url=sys.argv[1]))
    with db_session():
        print(json.dumps(migrate(database, directory=Path(sys.argv[2]), lock_timeout=60)))
""")


def _spawn(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_migrate_processes_at_once_apply_each_step_once(db, database_url, tmp_path):
    db.close()  # the processes own the database
    steps = _steps(tmp_path, sleep=1.5)
    env = settings_env({"database_url": database_url})
    procs = [_spawn([sys.executable, "-c", RUNNER, database_url, str(steps)], env) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    applied_names = [name for out, _ in outputs for name in json.loads(out.strip().splitlines()[-1])]
    assert sorted(applied_names) == ["0001_things", "0002_colour", "0003_colour_index"]
    db.connect()
    assert set(applied(db)) == {"0001", "0002", "0003"}
    assert [c.name for c in db.get_columns("things")].count("colour") == 1


def test_two_cli_migrates_at_once(db, database_url, redis_url):
    """`flask --app app migrate` twice at once, as two release phases would run it."""
    db.close()
    env = settings_env({"database_url": database_url, "redis_url": redis_url, "log_level": "WARNING"})
    procs = [_spawn([sys.executable, "-m", "flask", "--app", "app", "migrate"], env) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "".join(out for out, _ in outputs).count("applied 0001_initial") == 1
    db.connect()
    assert set(applied(db)) == {s.version for s in discover()}
    second = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 0 and "applied" not in second.stdout


def test_init_db_and_migrate_list(runner):
    result = runner.invoke(args=["init-db"])
    assert result.exit_code == 0 and "database ready" in result.output
    listing = runner.invoke(args=["migrate", "--list"])
    assert listing.exit_code == 0 and "0001_initial" in listing.output and "applied" in listing.output
    assert "pending" not in listing.output


def test_migrate_to_unknown_target_is_an_error(runner):
    result = runner.invoke(args=["migrate", "--target", "0999"])
    assert result.exit_code == 1 and "no migration with version '0999'" in result.output


def test_every_step_module_has_a_docstring():
    for step in discover(MIGRATIONS_DIR):
        assert (step.load().__doc__ or "").strip(), f"{step.name} needs a docstring saying why"


def test_migration_lock_timeout_is_a_setting():
    assert Settings(_env_file=None).migration_lock_timeout == 300
    with pytest.raises(ValueError, match="migration_lock_timeout"):
        Settings(_env_file=None, migration_lock_timeout=0)


def test_peewee_operational_error_is_not_swallowed(tmp_path):
    bind_database(Settings(_env_file=None, database_url="postgresql://nobody@127.0.0.1:1/none"))
    with pytest.raises(peewee.OperationalError):
        with db_session():
            migrate(database)
