"""Daily report routes: a thin adapter over `app.core.reports` (the stored daily reports).

Refusals are domain errors that `app.errors` maps to HTTP answers.
"""

from __future__ import annotations

import logging
from datetime import date

from flask import Blueprint, jsonify, request
from pydantic import Field, field_validator

from app.api.schemas import PageQuery, Strict, parse_query
from app.api.serializers import report_json
from app.auth import require_read_token
from app.core import reports

log = logging.getLogger(__name__)

bp = Blueprint("reports", __name__, url_prefix="/api/reports")

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


class DailyReportQuery(Strict):
    date: str | None = Field(
        None,
        pattern=DATE_PATTERN,
        json_schema_extra={"format": "date"},
        description="UTC day (YYYY-MM-DD); the latest report when absent",
    )

    @field_validator("date")
    @classmethod
    def _real_day(cls, value: str | None) -> str | None:
        if value is not None:
            date.fromisoformat(value)  # ValueError (e.g. 2024-02-30) becomes a 400
        return value


class ReportPageQuery(PageQuery):
    limit: int = Field(30, ge=1, le=366)


@bp.get("/daily")
@require_read_token
def daily_report():
    query = parse_query(DailyReportQuery, request.args)
    return jsonify(report_json(reports.daily_report(date.fromisoformat(query.date) if query.date else None)))


@bp.get("")
@require_read_token
def list_reports():
    """Daily reports, newest day first; `next_cursor` pages on (keyset on the unique day)."""
    query = parse_query(ReportPageQuery, request.args)
    rows, next_cursor = reports.list_reports(query.limit, query.cursor)
    return jsonify(reports=[report_json(r) for r in rows], next_cursor=next_cursor)
