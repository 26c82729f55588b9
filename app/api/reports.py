"""Daily reports: the stored output of `generate_daily_summary`, one per UTC day.

The reports outlive Redis results and run history, so they are read from `daily_summaries`,
never from a run's result.
"""
from __future__ import annotations

import base64
import binascii
import logging
from datetime import date

from flask import Blueprint, jsonify, request
from pydantic import Field, field_validator

from app.api.schemas import PageQuery, Strict, parse_query
from app.api.serializers import iso
from app.auth import require_read_token
from app.errors import BadRequest, NotFound
from app.models import DailySummary

log = logging.getLogger(__name__)

bp = Blueprint("reports", __name__, url_prefix="/api/reports")

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


class DailyReportQuery(Strict):
    date: str | None = Field(None, pattern=DATE_PATTERN, json_schema_extra={"format": "date"},
                             description="UTC day (YYYY-MM-DD); the latest report when absent")

    @field_validator("date")
    @classmethod
    def _real_day(cls, value: str | None) -> str | None:
        if value is not None:
            date.fromisoformat(value)  # ValueError (e.g. 2024-02-30) becomes a 400
        return value


class ReportPageQuery(PageQuery):
    limit: int = Field(30, ge=1, le=366)


def report_json(summary: DailySummary) -> dict:
    return {
        "kind": "daily",
        "date": summary.day.isoformat(),
        "job_id": summary.job_id,
        "created_at": iso(summary.created_at),
        "report": summary.report,
    }


def encode_cursor(day: date) -> str:
    return base64.urlsafe_b64encode(day.isoformat().encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> date:
    """The day after which the next page starts; anything else is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if len(raw) != 10:
            raise ValueError
        return date.fromisoformat(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("invalid cursor") from None


@bp.get("/daily")
@require_read_token
def daily_report():
    query = parse_query(DailyReportQuery, request.args)
    select = DailySummary.select()
    if query.date:
        summary = select.where(DailySummary.day == date.fromisoformat(query.date)).first()
        if summary is None:
            raise NotFound(f"no daily report for {query.date}")
    else:
        summary = select.order_by(DailySummary.day.desc()).first()
        if summary is None:
            raise NotFound("no daily report stored yet")
    return jsonify(report_json(summary))


@bp.get("")
@require_read_token
def list_reports():
    """Daily reports, newest day first; `next_cursor` pages on (keyset on the unique day)."""
    query = parse_query(ReportPageQuery, request.args)
    select = DailySummary.select()
    if query.cursor:
        select = select.where(DailySummary.day < decode_cursor(query.cursor))
    rows = list(select.order_by(DailySummary.day.desc()).limit(query.limit + 1))
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[:query.limit]
        next_cursor = encode_cursor(rows[-1].day)
    return jsonify(reports=[report_json(r) for r in rows], next_cursor=next_cursor)
