"""Opaque keyset cursors and the listings' SQL: the service layer's read path, no HTTP.

A cursor is the (time, id) of the last row of a page, base64url-encoded JSON; a bad one is the
domain error `InvalidCursor`, a value no database column holds `ValueOutOfRange`.

Pages (and the API's single-run reads) are SQL statements written here once per shape (which
filters, whether a cursor) and run with `execute_sql`; rows are tuples converted by the columns'
own peewee fields. Building each statement with peewee and 51 model objects per page was over
half of a listing request's CPU, and peewee's SQL generation 40% of a status request's; the
statements and their index use are the ones peewee wrote.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import peewee

from app.connections import database
from app.core.errors import InvalidCursor, ValueOutOfRange
from app.models import JSONField

MAX_CURSOR_LENGTH = 200
# What both databases store: a signed 64-bit integer (SQLite raises OverflowError beyond it,
# PostgreSQL a DataError); text without NUL (PostgreSQL refuses it) or lone surrogates (not UTF-8).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_TEXT_ID_LENGTH = 64  # the longest id a table of this service has (job_runs.id)
# The time of a cursor exactly as `encode_cursor` writes it (naive `isoformat()`), ASCII digits only.
_CURSOR_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?", re.ASCII)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
OPERATORS = frozenset({"=", ">="})
# Field types whose values both drivers return as they are (no python_value needed): compared
# exactly, since JSONField is a TextField whose values do need converting.
_PLAIN_FIELDS = frozenset({peewee.AutoField, peewee.CharField, peewee.IntegerField, peewee.TextField})
# Values psycopg2 already returns as the field's Python type (SQLite gives text and 0/1).
_NATIVE = {peewee.DateTimeField: datetime, peewee.BooleanField: bool}


def unsafe_text(value: str) -> str | None:
    """Why `value` cannot be stored or compared by both databases (None: it can)."""
    if "\x00" in value:
        return "contains a NUL character"
    if _LONE_SURROGATE.search(value):
        return "contains a lone surrogate (not valid Unicode)"
    return None


def sql_value_ok(value: object) -> bool:
    """Whether a parameter can reach SQL on SQLite and PostgreSQL alike (ints in 64 bits, safe text)."""
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, str):
        return unsafe_text(value) is None
    return True


def encode_cursor(at: datetime, row_id: object) -> str:
    raw = json.dumps([at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, id_type: type) -> tuple[datetime, object]:
    """Return (time, id) or raise `InvalidCursor`; nothing unchecked reaches SQL.

    The time must be written as `encode_cursor` writes it; an integer id must fit a signed
    64-bit column, a text id must be at most 64 characters of storable text.
    """
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidCursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_text, row_id = json.loads(raw)
        if not isinstance(at_text, str) or not _CURSOR_TIME.fullmatch(at_text):
            raise ValueError
        at = datetime.fromisoformat(at_text)
        if not isinstance(row_id, id_type) or isinstance(row_id, bool):
            raise ValueError
        if isinstance(row_id, str) and len(row_id) > MAX_TEXT_ID_LENGTH:
            raise ValueError
        if not sql_value_ok(row_id):
            raise ValueError
    except (ValueError, TypeError, RecursionError, binascii.Error):  # JSON and Unicode errors are ValueErrors
        raise InvalidCursor() from None
    return at, row_id


def _quote(name: str) -> str:
    return f'"{name}"'


@functools.lru_cache(maxsize=64)
def _select_sql(
    table: str,
    columns: tuple[str, ...],
    conditions: tuple[tuple[str, str], ...],
    after: bool,
    newest_first: bool,
    param: str,
) -> str:
    """SELECT columns with `column op param` filters; newest first by (columns[0], columns[1]) if asked."""
    at, row_id = _quote(columns[0]), _quote(columns[1])
    where = [f"{_quote(column)} {op} {param}" for column, op in conditions]
    if after:
        # A row-value comparison, (time, id) < (at, last): both databases bound their index scan
        # on (..., time, id) with it, at the cursor's exact row. (`time < at OR (time = at AND
        # id < last)` bounds nothing; with a redundant `time <= at` PostgreSQL bounded the time
        # but still filtered every row of the page on the OR: 0.11 -> 0.05 ms at 1M rows.)
        where.append(f"({at}, {row_id}) < ({param}, {param})")
    sql = f"SELECT {', '.join(map(_quote, columns))} FROM {_quote(table)}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if newest_first:
        sql += f" ORDER BY {at} DESC, {row_id} DESC"
    return sql + f" LIMIT {param}"


def fetch_rows(
    columns: Sequence[peewee.Field],
    conditions: Sequence[tuple[peewee.Field, str, object]],
    limit: int,
    after: tuple[datetime, object] | None = None,
    newest_first: bool = False,
) -> list[Any]:
    """Rows of `columns` (sequences, values converted by their fields) matching every condition.

    `conditions` are (field, "=" or ">=", value); `after` is a keyset position (time, id) in
    `columns[0]`, `columns[1]`. The statement is written once per shape and cached.
    """
    time_field, id_field = columns[0], columns[1]
    params: list[object] = []
    for field, op, value in conditions:
        if op not in OPERATORS:
            raise ValueError(f"unsupported operator {op!r}")
        params.append(field.db_value(value))  # type: ignore[no-untyped-call]
    if after is not None:
        at, row_id = after
        params += [time_field.db_value(at), id_field.db_value(row_id)]  # type: ignore[no-untyped-call]
    params.append(limit)
    if not all(map(sql_value_ok, params)):  # the routes validate first; this is the last line
        raise ValueOutOfRange()
    sql = _select_sql(
        time_field.model._meta.table_name,
        tuple(f.column_name for f in columns),
        tuple((f.column_name, op) for f, op, _ in conditions),
        after is not None,
        newest_first,
        database.param,
    )
    rows: list[Any] = database.execute_sql(sql, params).fetchall()
    converters = _converters(tuple(columns))
    if not converters:
        return rows
    out: list[Any] = []
    for row in rows:
        row = list(row)
        for i, convert, native in converters:
            value = row[i]
            if value is not None and type(value) is not native:
                row[i] = convert(value)
        out.append(row)
    return out


@functools.lru_cache(maxsize=64)
def _converters(columns: tuple[peewee.Field, ...]) -> tuple[tuple[int, Callable[[Any], Any], type | None], ...]:
    """(position, converter, type that needs none) for each column whose driver value needs its field's
    `python_value`; JSON text is read by the C scanner (`_load_json`), what `json.loads` does without
    its Python layers (a third of a history page's CPU was `json.loads` of the 50 results)."""
    out: list[tuple[int, Callable[[Any], Any], type | None]] = []
    for i, field in enumerate(columns):
        if type(field) in _PLAIN_FIELDS:
            continue
        if isinstance(field, JSONField) and type(field).python_value is JSONField.python_value:
            out.append((i, _load_json, None))
        else:
            out.append((i, field.python_value, _NATIVE.get(type(field))))
    return tuple(out)


_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _load_json(text: Any) -> Any:
    """`json.loads(text)` for JSON text as the JSONField writes it; anything else goes to json.loads."""
    if type(text) is str:
        try:
            value, end = _scan_json(text, 0)
        except StopIteration:
            value, end = None, -1
        if end == len(text):
            return value
    return json.loads(text)


def keyset_page(
    columns: Sequence[peewee.Field],
    conditions: Sequence[tuple[peewee.Field, str, object]],
    cursor: str | None,
    limit: int,
    id_type: type,
) -> tuple[list[Any], str | None]:
    """Newest-first page after `cursor`: (rows of `columns`, next cursor or None).

    `columns[0]` and `columns[1]` are the time and id the page is ordered and cursored by.
    """
    after = decode_cursor(cursor, id_type) if cursor else None
    rows = fetch_rows(columns, conditions, limit + 1, after, newest_first=True)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1][0], rows[-1][1])
    return rows, next_cursor
