"""The dashboard's trends page: per job, runs and failures per hour or day and p50/p95 durations.

Registered on the dashboard blueprint (`dashboard.views.bp`), so its auth, CSP and no-store
rules apply; the figures are the service layer's (`app.core.trends`, the same as
`GET /api/trends`) plus the forecast's scored accuracy, drawn by `static/trends.js` with uPlot
(vendored from npm, MIT: `static/vendor/uplot/`).
"""

from __future__ import annotations

from flask import jsonify, make_response, render_template, request, url_for

from app.connections import db_session
from app.core import trends
from app.core.catalog import JOBS
from dashboard.data import forecast_accuracy
from dashboard.views import _no_store, bp


@bp.get("/trends")
def trends_page():
    window = trends.trend_window(request.args.get("window"))
    page = render_template(
        "dashboard/trends.html",
        windows=[w.value for w in trends.TrendWindow],
        window=window.value,
        jobs=list(JOBS),
        data_url=url_for("dashboard.trends_data"),
        home_url=url_for("dashboard.home"),
    )
    return _no_store(make_response(page))


@bp.get("/trends.json")
def trends_data():
    window = trends.trend_window(request.args.get("window"))
    with db_session():
        return _no_store(jsonify(trends=trends.job_trends(window), accuracy=forecast_accuracy()))
