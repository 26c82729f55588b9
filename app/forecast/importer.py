"""Import demand history from CSV (`flask import-demand`): validated whole, stored all or nothing.

The demand file has the columns `date,item,line,quantity`, plus optionally `daily_capacity`
(and `line_name`) for the line of each row. Capacities may instead come from a capacity file
`line,name,daily_capacity`. A line must be known: given a capacity in the import or already in
the database. Every row is checked before anything is written, and every fault is reported with
its file's line number, so one run of the command shows everything that needs fixing.

Missing is not zero. The database stores a row per day with a known quantity (0 included); a
day without a row is missing, and the forecast reads it as missing. So a file says what it
means: a row with quantity 0 is an explicit zero; a row with an empty quantity declares the day
missing (nothing stored; with `replace`, a stored value for that day is removed); a day the file
has no row for is missing, unless the file is declared zero-filled (`zero_fill`, the command's
`--zero-fill`): exports that list only the days with demand. Then every day from a series' first
row to the file's last date that has no row is imported as an explicit 0 (a filled day never
overwrites a stored row, and a day declared missing stays missing).
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import peewee

from app.connections import database, db_session
from app.forecast.demo import insert_demand
from app.models import ProductionLine

log = logging.getLogger(__name__)

DEMAND_COLUMNS = ("date", "item", "line", "quantity")
DEMAND_OPTIONAL = ("daily_capacity", "line_name")
CAPACITY_COLUMNS = ("line", "name", "daily_capacity")
MAX_CODE = 64  # the item and line columns' width
MAX_NAME = 200
MAX_LISTED = 50  # errors listed in the message; the rest are counted
CHECK_BATCH = 300  # (item, line, day) triples a statement when looking for stored rows
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class ImportFailed(ValueError):
    """The files were rejected; nothing was imported. `errors` are "file line N: why" strings."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        listed = errors[:MAX_LISTED]
        more = len(errors) - len(listed)
        super().__init__(
            f"{len(errors)} problem(s) found, nothing imported:\n  "
            + "\n  ".join(listed)
            + (f"\n  ... and {more} more" if more else "")
        )


@dataclass
class ImportSummary:
    rows: int = 0  # rows stored, zero-filled ones included
    items: int = 0
    zero_filled: int = 0  # days stored as 0 because the file is zero-filled
    declared_missing: int = 0  # rows with an empty quantity (nothing stored)
    cleared_rows: int = 0  # stored values removed because the file declares their day missing
    lines_created: list[str] = field(default_factory=list)
    lines_updated: list[str] = field(default_factory=list)
    replaced_rows: int = 0
    start: str | None = None
    end: str | None = None


@dataclass
class _Line:
    capacity: float
    name: str | None
    where: str  # where it was given, for conflict messages


def _rows(
    path: Path, required: tuple[str, ...], optional: tuple[str, ...], errors: list[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row by column) of a CSV file whose header has the required columns."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [name.strip().lower() for name in next(reader)]
        except StopIteration:
            errors.append(f"{path.name}: the file is empty (expected a header: {','.join(required)})")
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            errors.append(f"{path.name} line 1: unreadable header ({exc})")
            return
        missing = [c for c in required if c not in header]
        unknown = [c for c in header if c not in required + optional]
        doubled = sorted({c for c in header if header.count(c) > 1})
        if missing or unknown or doubled:
            problems = (
                ([f"missing column(s) {', '.join(missing)}"] if missing else [])
                + ([f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"repeated column(s) {', '.join(doubled)}"] if doubled else [])
            )
            errors.append(
                f"{path.name} line 1: {'; '.join(problems)} "
                f"(expected {','.join(required)}" + (f", optionally {','.join(optional)})" if optional else ")")
            )
            return
        try:
            for values in reader:
                number = reader.line_num
                if not values or all(not v.strip() for v in values):
                    continue  # blank line
                if len(values) != len(header):
                    errors.append(f"{path.name} line {number}: {len(values)} field(s), expected {len(header)}")
                    continue
                yield number, {name: value.strip() for name, value in zip(header, values)}
        except (csv.Error, UnicodeDecodeError) as exc:
            errors.append(f"{path.name} line {reader.line_num}: unreadable ({exc})")


def _number(value: str, what: str) -> tuple[float | None, str | None]:
    try:
        number = float(value)
    except ValueError:
        return None, f"{what} {value!r} is not a number"
    if not math.isfinite(number):
        return None, f"{what} {value!r} is not a finite number"
    if number < 0:
        return None, f"{what} {value!r} is negative"
    return number, None


def _code(value: str, what: str) -> str | None:
    if not value:
        return f"{what} is empty"
    if len(value) > MAX_CODE:
        return f"{what} is longer than {MAX_CODE} characters"
    return None


def _day(value: str) -> tuple[str | None, str | None]:
    if not _ISO_DAY.fullmatch(value):
        return None, f"date {value!r} is not a date in the form YYYY-MM-DD"
    try:
        return date.fromisoformat(value).isoformat(), None
    except ValueError:
        return None, f"date {value!r} does not exist"


def read_capacity_file(path: Path, errors: list[str]) -> dict[str, _Line]:
    """Capacities by line code from `line,name,daily_capacity`."""
    lines: dict[str, _Line] = {}
    for number, row in _rows(path, CAPACITY_COLUMNS, (), errors):
        where = f"{path.name} line {number}"
        problems = [p for p in (_code(row["line"], "line"),) if p]
        if len(row["name"]) > MAX_NAME:
            problems.append(f"name is longer than {MAX_NAME} characters")
        capacity, problem = _number(row["daily_capacity"], "daily_capacity")
        if problem:
            problems.append(problem)
        if not problems and row["line"] in lines:
            problems.append(f"line {row['line']!r} is listed twice (also {lines[row['line']].where})")
        if problems:
            errors.append(f"{where}: {'; '.join(problems)}")
            continue
        lines[row["line"]] = _Line(capacity, row["name"] or None, where)
    return lines


def read_demand_file(
    path: Path, errors: list[str], capacities: dict[str, _Line]
) -> tuple[list[tuple[str, str, str, float | None]], list[int], bool]:
    """Rows (item, line, ISO day, quantity; None: declared missing) with their file line numbers;
    capacity columns go to `capacities`. Returns (rows, line numbers, whether capacity columns were present)."""
    rows: list[tuple[str, str, str, float | None]] = []
    numbers: list[int] = []
    seen: dict[tuple[str, str, str], int] = {}
    had_columns = False
    for number, row in _rows(path, DEMAND_COLUMNS, DEMAND_OPTIONAL, errors):
        where = f"{path.name} line {number}"
        problems = [p for p in (_code(row["item"], "item"), _code(row["line"], "line")) if p]
        day, problem = _day(row["date"])
        if problem:
            problems.append(problem)
        quantity, problem = (None, None) if row["quantity"] == "" else _number(row["quantity"], "quantity")
        if problem:
            problems.append(problem)
        if "daily_capacity" in row or "line_name" in row:
            had_columns = True
            problems += _capacity_columns(row, where, capacities)
        if not problems:
            key = (row["item"], row["line"], day)
            if key in seen:
                problems.append(f"duplicate of line {seen[key]} (same date, item and line)")
            else:
                seen[key] = number
        if problems:
            errors.append(f"{where}: {'; '.join(problems)}")
            continue
        rows.append((row["item"], row["line"], day, quantity))
        numbers.append(number)
    return rows, numbers, had_columns


def _capacity_columns(row: dict[str, str], where: str, capacities: dict[str, _Line]) -> list[str]:
    value, name = row.get("daily_capacity", ""), row.get("line_name", "") or None
    if not value:
        return [] if not name else ["line_name given without daily_capacity"]
    capacity, problem = _number(value, "daily_capacity")
    if problem:
        return [problem]
    if name and len(name) > MAX_NAME:
        return [f"line_name is longer than {MAX_NAME} characters"]
    known = capacities.get(row["line"])
    if known is None:
        capacities[row["line"]] = _Line(capacity, name, where)
    elif known.capacity != capacity or (name and known.name and name != known.name):
        return [f"line {row['line']!r} has another daily_capacity or line_name on {known.where}"]
    elif name and not known.name:
        known.name = name
    return []


def _triples_sql(count: int) -> str:
    """A VALUES list of `count` (item, line id, day) triples, typed to match the table."""
    p = database.obj.param
    day = f"CAST({p} AS DATE)" if isinstance(database.obj, peewee.PostgresqlDatabase) else p
    return "VALUES " + ", ".join([f"({p}, {p}, {day})"] * count)


def _stored_duplicates(rows: list[tuple[str, int, str, float]]) -> set[tuple[str, int, str]]:
    """The rows' (item, line id, day) triples that the table holds already."""
    p = database.obj.param
    line_ids = sorted({line_id for _, line_id, _, _ in rows})
    days = sorted({day for _, _, day, _ in rows})
    overlap = database.execute_sql(
        f"SELECT 1 FROM demand_history WHERE line_id IN ({', '.join([p] * len(line_ids))}) "
        f"AND day BETWEEN {p} AND {p} LIMIT 1",
        [*line_ids, days[0], days[-1]],
    ).fetchone()
    if overlap is None:  # the usual case, a new period or new lines: one query
        return set()
    found: set[tuple[str, int, str]] = set()
    for i in range(0, len(rows), CHECK_BATCH):
        batch = rows[i : i + CHECK_BATCH]
        sql = (
            f"SELECT item, line_id, day FROM demand_history WHERE (item, line_id, day) IN ({_triples_sql(len(batch))})"
        )
        params = [v for item, line_id, day, _ in batch for v in (item, line_id, day)]
        for item, line_id, day in database.execute_sql(sql, params).fetchall():
            found.add((item, int(line_id), str(day)[:10]))
    return found


def _delete(triples: Iterable[tuple[str, int, str]]) -> int:
    deleted = 0
    triples = list(triples)
    for i in range(0, len(triples), CHECK_BATCH):
        batch = triples[i : i + CHECK_BATCH]
        cursor = database.execute_sql(
            f"DELETE FROM demand_history WHERE (item, line_id, day) IN ({_triples_sql(len(batch))})",
            [v for triple in batch for v in triple],
        )
        deleted += cursor.rowcount
    return deleted


def _zero_fill(rows: list[tuple[str, str, str, float | None]]) -> list[tuple[str, str, str, float]]:
    """The (item, line, day, 0.0) rows a zero-filled file implies: each series' days from its
    first row to the file's last date that have no row."""
    end = date.fromisoformat(max(day for _, _, day, _ in rows))
    first: dict[tuple[str, str], str] = {}
    listed: set[tuple[str, str, str]] = set()
    for item, line, day, _ in rows:
        listed.add((item, line, day))
        if day < first.get((item, line), "9999"):
            first[(item, line)] = day
    filled = []
    for (item, line), start in first.items():
        day = date.fromisoformat(start)
        while day <= end:
            iso = day.isoformat()
            if (item, line, iso) not in listed:
                filled.append((item, line, iso, 0.0))
            day += timedelta(days=1)
    return filled


def import_demand(
    demand_path: str | Path, capacity_path: str | Path | None = None, replace: bool = False, zero_fill: bool = False
) -> ImportSummary:
    """Validate the files, then write lines and demand in one transaction (or raise ImportFailed).

    Rows whose (date, item, line) the database holds already are errors, unless `replace`:
    then they overwrite the stored quantity (or, for an empty quantity, remove it). With
    `zero_fill` the file lists only days with demand: see the module's docstring.
    """
    demand_path = Path(demand_path)
    errors: list[str] = []
    capacities = read_capacity_file(Path(capacity_path), errors) if capacity_path else {}
    given_in_file = bool(capacities)
    rows, numbers, had_columns = read_demand_file(demand_path, errors, capacities)
    if capacity_path and had_columns:
        errors.insert(0, f"{demand_path.name}: give capacities in a capacity file or in columns, not both")
    with db_session():
        stored = {line.code: line for line in ProductionLine.select()}
        unknown = [(n, row[1]) for n, row in zip(numbers, rows) if row[1] not in capacities and row[1] not in stored]
        for number, line in unknown:
            errors.append(
                f"{demand_path.name} line {number}: unknown line {line!r} "
                f"(not in the database; give its capacity{' in the capacity file' if given_in_file else ''})"
            )
        if errors:
            raise ImportFailed(_by_line(errors))
        if not rows:
            raise ImportFailed([f"{demand_path.name}: no demand rows"])

        summary = ImportSummary()
        with database.atomic():
            for code, line in capacities.items():
                if code in stored:
                    fields: dict[str, Any] = {"daily_capacity": line.capacity}
                    if line.name:
                        fields["name"] = line.name
                    ProductionLine.update(**fields).where(ProductionLine.code == code).execute()
                    summary.lines_updated.append(code)
                else:
                    ProductionLine.create(code=code, name=line.name or code, daily_capacity=line.capacity)
                    summary.lines_created.append(code)
            line_ids = dict(ProductionLine.select(ProductionLine.code, ProductionLine.id).tuples())
            records = [(item, line_ids[line], day, quantity) for item, line, day, quantity in rows]
            duplicates = _stored_duplicates(records)
            if duplicates and not replace:
                where = [
                    f"{demand_path.name} line {n}: date, item and line already in the database "
                    f"(use --replace to overwrite)"
                    for n, (item, line_id, day, _) in zip(numbers, records)
                    if (item, line_id, day) in duplicates
                ]
                raise ImportFailed(where)  # leaving the block rolls the line changes back
            missing = {(item, line_id, day) for item, line_id, day, quantity in records if quantity is None}
            deleted = _delete(duplicates) if duplicates else 0
            summary.cleared_rows = len(duplicates & missing)
            summary.replaced_rows = deleted - summary.cleared_rows
            stored_rows = [r for r in records if r[3] is not None]
            if zero_fill and rows:
                fill = [(item, line_ids[line], day, q) for item, line, day, q in _zero_fill(rows)]
                kept = _stored_duplicates(fill) if fill else set()  # a filled day never overwrites a stored row
                fill = [r for r in fill if (r[0], r[1], r[2]) not in kept]
                summary.zero_filled = len(fill)
                stored_rows += fill
            summary.declared_missing = len(missing)
            for i in range(0, len(stored_rows), 100_000):
                insert_demand(stored_rows[i : i + 100_000])
    if isinstance(database.obj, peewee.PostgresqlDatabase):
        with db_session():
            database.execute_sql("ANALYZE demand_history")  # fresh statistics for the forecast's queries
    days = sorted({day for _, _, day, _ in rows})
    summary.rows = len(rows) - summary.declared_missing + summary.zero_filled
    summary.items = len({(item, line) for item, line, _, _ in rows})
    summary.start, summary.end = days[0], days[-1]
    log.info(
        "imported %d demand rows of %d series (%s..%s) from %s",
        summary.rows,
        summary.items,
        summary.start,
        summary.end,
        demand_path.name,
    )
    return summary


def _by_line(errors: list[str]) -> list[str]:
    """Errors in file order: file-level messages first, then by file and line number."""

    def key(message: str) -> tuple[str, int]:
        match = re.match(r"(\S+) line (\d+):", message)
        return (match.group(1), int(match.group(2))) if match else ("", -1)

    return sorted(errors, key=key)
