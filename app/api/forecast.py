"""Forecast accuracy as JSON for charts: how well past runs' forecasts matched the actuals.

The service scores its own forecasts (app/forecast/accuracy.py); this route serves the scored
runs (or one line's scores), newest horizon first, for the dashboard's chart and anyone else.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from pydantic import Field

from app.api.schemas import Strict, parse_query
from app.auth import require_read_token
from app.forecast import accuracy

bp = Blueprint("forecast", __name__, url_prefix="/api/forecast")


class AccuracyQuery(Strict):
    limit: int = Field(100, ge=1, le=1000, description="scored runs to return, newest horizon first")
    line: str | None = Field(
        None, min_length=1, max_length=64, description="one production line's scores instead of the runs'"
    )


@bp.get("/accuracy")
@require_read_token
def forecast_accuracy():
    """MASE and P10-P90 coverage of scored forecast runs (or of one line), newest horizon first."""
    query = parse_query(AccuracyQuery, request.args)
    return jsonify(line=query.line, runs=accuracy.history(query.limit, query.line))
