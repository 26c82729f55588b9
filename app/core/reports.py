"""Use cases on the daily reports: the stored output of `generate_daily_summary`, one per UTC day.

The reports outlive Redis results and run history, so they are read from `daily_summaries`,
never from a run's result.
"""

from __future__ import annotations

import base64
import binascii
from datetime import date

from app.core.errors import InvalidCursor, ReportMissing
from app.models import DailySummary


def daily_report(day: date | None) -> DailySummary:
    """The report of `day`, or the latest one when None; `ReportMissing` when there is none."""
    select = DailySummary.select()
    if day is not None:
        summary = select.where(DailySummary.day == day).first()
    else:
        summary = select.order_by(DailySummary.day.desc()).first()
    if summary is None:
        raise ReportMissing(day.isoformat() if day is not None else None)
    found: DailySummary = summary
    return found


def list_reports(limit: int, cursor: str | None) -> tuple[list[DailySummary], str | None]:
    """Reports newest day first and the cursor of the next page (keyset on the unique day)."""
    select = DailySummary.select()
    if cursor:
        select = select.where(DailySummary.day < decode_cursor(cursor))
    rows = list(select.order_by(DailySummary.day.desc()).limit(limit + 1))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].day)
    return rows, next_cursor


def encode_cursor(day: date) -> str:
    return base64.urlsafe_b64encode(day.isoformat().encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> date:
    """The day after which the next page starts; anything else is `InvalidCursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if len(raw) != 10:
            raise ValueError
        return date.fromisoformat(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor() from None
