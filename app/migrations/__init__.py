"""Versioned schema migrations: ordered steps in this package, recorded in `schema_migrations`.

A step is a module `NNNN_short_name.py` with `upgrade(ctx: MigrationContext)`; steps run in
version order, each in its own transaction together with the row that records it, so a
failing step leaves the database at the step before. Steps written with peewee's
`playhouse.migrate` (`ctx.run(ctx.migrator.add_column(...))`) work on SQLite and PostgreSQL.

Several `migrate` runs at once (two release phases, two machines) are serialised by a lock:
a PostgreSQL session advisory lock around the run, SQLite's `BEGIN IMMEDIATE` around each
step. The pending list is read under the lock, so each step runs exactly once.

0001 is the schema as it was before migrations existed; a database created then by
`create_tables()` is adopted by running 0001, which only creates what is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import peewee
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_operations

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent
STEP_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.py$")
# pg_advisory_lock key: any constant bigint that no other code of this database uses.
ADVISORY_LOCK_KEY = 0x666F7265636173  # "forecas"


class MigrationError(RuntimeError):
    """The migration files or the database are not in a state migrate can work from."""


class MigrationLockTimeout(MigrationError):
    """Another migrate held the lock for longer than MIGRATION_LOCK_TIMEOUT."""


class SchemaMigration(peewee.Model):
    """One applied step."""

    version = peewee.CharField(max_length=16, primary_key=True)
    name = peewee.CharField(max_length=200)
    applied_at = peewee.DateTimeField()

    class Meta:
        table_name = "schema_migrations"


@dataclass(frozen=True)
class Step:
    version: str
    name: str
    path: Path

    def load(self) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"app.migrations._step_{self.name}", self.path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "upgrade", None)):
            raise MigrationError(f"{self.path.name} has no upgrade(ctx) function")
        return module


@dataclass
class MigrationContext:
    """What a step gets: the database, a playhouse migrator, and checks for idempotent steps."""

    db: peewee.Database
    migrator: SchemaMigrator

    def run(self, *operations) -> None:
        run_operations(*operations)

    def has_table(self, table: str) -> bool:
        return self.db.table_exists(table)

    def has_column(self, table: str, column: str) -> bool:
        return any(c.name == column for c in self.db.get_columns(table))

    def has_index(self, table: str, index: str) -> bool:
        return any(i.name == index for i in self.db.get_indexes(table))


def discover(directory: Path = MIGRATIONS_DIR) -> list[Step]:
    """The steps in `directory`, in version order; duplicate versions are an error."""
    steps: dict[str, Step] = {}
    for path in sorted(Path(directory).glob("*.py")):
        match = STEP_FILE.match(path.name)
        if not match:
            continue
        version = match.group(1)
        if version in steps:
            raise MigrationError(f"two migrations with version {version}: {steps[version].path.name}, {path.name}")
        steps[version] = Step(version=version, name=path.stem, path=path)
    return [steps[v] for v in sorted(steps)]


def _real(db) -> peewee.Database:
    return getattr(db, "obj", None) or db


def _is_sqlite(db) -> bool:
    return isinstance(_real(db), peewee.SqliteDatabase)


def applied(db) -> dict[str, SchemaMigration]:
    """Applied steps by version (empty when the table does not exist yet)."""
    with db.bind_ctx([SchemaMigration]):
        if not SchemaMigration.table_exists():
            return {}
        return {m.version: m for m in SchemaMigration.select().order_by(SchemaMigration.version)}


def status(db, directory: Path = MIGRATIONS_DIR) -> list[tuple[Step, datetime | None]]:
    """Every known step with the time it was applied (None: pending)."""
    done = applied(db)
    return [(step, done[step.version].applied_at if step.version in done else None) for step in discover(directory)]


@contextlib.contextmanager
def _postgres_lock(db, timeout: float) -> Iterator[None]:
    """A session advisory lock: held across the step transactions, freed if the process dies."""
    if not db.execute_sql("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,)).fetchone()[0]:
        log.info("another migrate holds the migration lock; waiting up to %gs", timeout)
        db.execute_sql("SET lock_timeout = %s", (f"{int(timeout * 1000)}ms",))
        try:
            db.execute_sql("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        except peewee.OperationalError as exc:
            if getattr(getattr(exc, "orig", None), "pgcode", None) == "55P03" or "lock timeout" in str(exc):
                raise MigrationLockTimeout(f"migration lock still held by another process after {timeout:g}s") from None
            raise
        finally:
            db.execute_sql("RESET lock_timeout")
    try:
        yield
    finally:
        db.execute_sql("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


@contextlib.contextmanager
def _sqlite_step_lock(db, deadline: float) -> Iterator[None]:
    """`BEGIN IMMEDIATE`: the write lock for one step, retried past busy_timeout until `deadline`."""
    waited = False
    while True:
        txn = db.atomic("IMMEDIATE")
        try:
            txn.__enter__()
            break
        except peewee.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise MigrationLockTimeout("the SQLite database stayed locked by another writer") from None
            if not waited:
                log.info("database locked by another migrate or writer; waiting")
                waited = True
            time.sleep(0.2)
    try:
        yield
    except BaseException as exc:
        txn.__exit__(type(exc), exc, exc.__traceback__)
        raise
    txn.__exit__(None, None, None)


def _apply(db, step: Step) -> None:
    module = step.load()
    module.upgrade(MigrationContext(db=db, migrator=SchemaMigrator.from_database(_real(db))))
    with db.bind_ctx([SchemaMigration]):
        SchemaMigration.create(
            version=step.version, name=step.name, applied_at=datetime.now(timezone.utc).replace(tzinfo=None)
        )
    log.info("migration %s applied", step.name)


def _next_pending(db, steps: list[Step], target: str | None) -> Step | None:
    done = applied(db)
    for step in steps:
        if target is not None and step.version > target:
            return None
        if step.version not in done:
            return step
    return None


def _warn_unknown(db, steps: list[Step]) -> None:
    unknown = sorted(set(applied(db)) - {s.version for s in steps})
    if unknown:
        log.warning(
            "the database has migrations this release does not know (%s): is an older release "
            "running against a newer database?",
            ", ".join(unknown),
        )


def migrate(
    db, *, directory: Path = MIGRATIONS_DIR, target: str | None = None, lock_timeout: float = 300.0
) -> list[str]:
    """Apply pending steps (up to `target` inclusive) under the lock; return the names applied.

    `db` must be connected (a `db_session()`), and not inside a transaction.
    """
    steps = discover(directory)
    if target is not None and target not in {s.version for s in steps}:
        raise MigrationError(f"no migration with version {target!r}")
    done: list[str] = []
    if _is_sqlite(db):
        deadline = time.monotonic() + lock_timeout
        while True:
            with _sqlite_step_lock(db, deadline):
                with db.bind_ctx([SchemaMigration]):
                    db.create_tables([SchemaMigration], safe=True)
                step = _next_pending(db, steps, target)
                if step is not None:
                    _apply(db, step)
            if step is None:
                break
            done.append(step.name)
    else:
        with _postgres_lock(db, lock_timeout):
            with db.atomic(), db.bind_ctx([SchemaMigration]):
                db.create_tables([SchemaMigration], safe=True)
            while (step := _next_pending(db, steps, target)) is not None:
                with db.atomic():
                    _apply(db, step)
                done.append(step.name)
    _warn_unknown(db, steps)
    return done
