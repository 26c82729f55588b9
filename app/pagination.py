"""Opaque keyset cursors: the (time, id) of the last row of a page, base64url-encoded JSON."""
from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from app.errors import BadRequest

MAX_CURSOR_LENGTH = 200


def encode_cursor(at: datetime, row_id) -> str:
    raw = json.dumps([at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, id_type: type) -> tuple[datetime, object]:
    """Return (time, id) or raise BadRequest; nothing unchecked reaches SQL."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise BadRequest("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_text, row_id = json.loads(raw)
        at = datetime.fromisoformat(at_text)
        if not isinstance(row_id, id_type) or isinstance(row_id, bool) or at.tzinfo is not None:
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest("invalid cursor") from None
    return at, row_id


def keyset_page(query, time_field, id_field, cursor: str | None, limit: int, id_type: type):
    """Newest-first page after `cursor`; returns (rows, next_cursor or None)."""
    if cursor:
        at, row_id = decode_cursor(cursor, id_type)
        # The redundant `time <= at` lets the database bound its index scan (an OR cannot be).
        query = query.where((time_field <= at) & ((time_field < at) | (id_field < row_id)))
    rows = list(query.order_by(time_field.desc(), id_field.desc()).limit(limit + 1))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(getattr(last, time_field.name), getattr(last, id_field.name))
    return rows, next_cursor
