"""The service measures its own accuracy: each run keeps what it forecast, later runs score it.

A forecast run records its lines' daily P10/P50/P90 (`forecast_snapshots` + `forecast_lines`,
one row per line: compact), with each line's MASE scale (the in-sample mean absolute error of
the weekly seasonal naive forecast over the last year of the line's daily totals). A later run,
which has the lines' daily totals in hand anyway, scores every recorded run whose horizon ended
at least FORECAST_STALE_DAYS before its own horizon start (late feeds get that long to arrive):
MASE of the P50 and the share of actuals inside P10..P90, per line and per run. A line-day
without a complete actual (missing, or a stale series carried at its level) is not scored.
A count line (every observed daily total a whole number) is scored as the backtest scores
count series: an actual k counts by the share of [k, k+1) inside the band (the expected
randomised PIT, so no random draw and the same figure on every rerun), since the engine's count
bands are quantiles of the count spread over [k, k+1) and an inclusive band on whole numbers
would be credited in full for every tie at its edge (a line that mostly reports 0).

Read by /metrics (`forecast_mase`, `forecast_interval_coverage`), GET /api/forecast/accuracy and
the dashboard. The weekly cleanup deletes old snapshots with `delete_before`.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from app.connections import database
from app.forecast.engine import count_band_share, count_series
from app.forecast.rules import LineTotals
from app.models import ForecastLine, ForecastSnapshot, utcnow

log = logging.getLogger(__name__)

SCALE_DAYS = 365  # the MASE scale looks at the last year of each line's totals
SEASON = 7
MAX_SCORED_PER_RUN = 500  # snapshots scored by one run (a backlog is worked off over later runs)


def _scale(history: np.ndarray) -> float | None:
    """Mean |y_t - y_{t-7}| over the last year where both days are observed (None: undefined)."""
    y = np.asarray(history, dtype=np.float64)[-(SCALE_DAYS + SEASON) :]
    if y.size <= SEASON:
        return None
    diff = np.abs(y[SEASON:] - y[:-SEASON])
    diff = diff[np.isfinite(diff)]
    if diff.size == 0 or float(diff.mean()) <= 0:
        return None
    return float(diff.mean())


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in values]


def record(
    run_id: str | None,
    horizon_start: date,
    horizon: int,
    totals: LineTotals,
    bands: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> ForecastSnapshot:
    """Store the run's line forecasts; a retry of the same run replaces its earlier record."""
    with database.atomic():
        if run_id:
            old = [s.id for s in ForecastSnapshot.select(ForecastSnapshot.id).where(ForecastSnapshot.run_id == run_id)]
            if old:
                ForecastLine.delete().where(ForecastLine.snapshot.in_(old)).execute()
                ForecastSnapshot.delete().where(ForecastSnapshot.id.in_(old)).execute()
        snapshot = ForecastSnapshot.create(
            run_id=run_id,
            horizon_start=horizon_start,
            horizon_days=horizon,
            created_at=utcnow(),
            lines=len(bands),
            scored_points=0,
        )
        rows = [
            {
                "snapshot": snapshot.id,
                "line": code,
                "scale": _scale(totals.actuals(code)),
                "p10": _rounded(p10),
                "p50": _rounded(p50),
                "p90": _rounded(p90),
                "scored_points": 0,
            }
            for code, (p10, p50, p90) in sorted(bands.items())
        ]
        for i in range(0, len(rows), 200):
            ForecastLine.insert_many(rows[i : i + 200]).execute()
    return snapshot


def score_due(horizon_start: date, totals: LineTotals, wait_days: int) -> list[int]:
    """Score the unscored runs whose horizon ended `wait_days` before `horizon_start`, against
    `totals` (the current run's line totals, which end the day before `horizon_start`).

    Returns the ids of the snapshots scored.
    """
    any_line = next(iter(totals.sums.values()), None)
    if any_line is None:
        return []
    window_start = horizon_start - timedelta(days=any_line.size)
    due = list(
        ForecastSnapshot.select()
        .where(ForecastSnapshot.scored_at.is_null(True) & (ForecastSnapshot.horizon_start < horizon_start))
        .order_by(ForecastSnapshot.horizon_start, ForecastSnapshot.id)
        .limit(MAX_SCORED_PER_RUN)
    )
    due = [s for s in due if _as_date(s.horizon_start) + timedelta(days=s.horizon_days + wait_days) <= horizon_start]
    if not due:
        return []
    actuals = {code: totals.actuals(code) for code in totals.sums}
    lines_by_snapshot: dict[int, list[ForecastLine]] = {}
    for row in ForecastLine.select().where(ForecastLine.snapshot.in_([s.id for s in due])):
        lines_by_snapshot.setdefault(row.snapshot_id, []).append(row)
    now = utcnow()
    with database.atomic():
        for snapshot in due:
            offset = (_as_date(snapshot.horizon_start) - window_start).days
            mases: list[float] = []
            inside, points = 0.0, 0
            for row in lines_by_snapshot.get(snapshot.id, []):
                line_mase, line_inside, line_points = _score_line(row, actuals.get(row.line), offset)
                ForecastLine.update(
                    mase=line_mase,
                    coverage=(line_inside / line_points) if line_points else None,
                    scored_points=line_points,
                ).where(ForecastLine.id == row.id).execute()
                if line_mase is not None:
                    mases.append(line_mase)
                inside += line_inside
                points += line_points
            ForecastSnapshot.update(
                mase=float(np.mean(mases)) if mases else None,
                coverage=(inside / points) if points else None,
                scored_points=points,
                scored_at=now,
            ).where(ForecastSnapshot.id == snapshot.id).execute()
    log.info("forecast accuracy: scored %d earlier run(s)", len(due))
    return [s.id for s in due]


def is_counts(values: np.ndarray) -> bool:
    """True when every observed value is a whole number (and one is observed): a count line."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return bool(count_series(np.where(np.isfinite(v), v, np.nan)[None, :])[0])


def band_share(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray, counts: bool) -> np.ndarray:
    """Per point, the share credited as inside [lo, hi]: 0 or 1 for continuous data; for counts
    the share of [k, k+1) inside the band (the expected randomised PIT of Czado, Gneiting and
    Held 2009; the backtest's P10-P90 coverage of count series is the same figure)."""
    a = np.asarray(actual, dtype=np.float64)
    if counts:
        return count_band_share(a, lo, hi)
    # compared at the stored precision, so an exact forecast counts as inside
    a_r = np.round(a, 3)
    return ((a_r >= lo) & (a_r <= hi)).astype(np.float64)


def _score_line(
    row: ForecastLine, actual: np.ndarray | None, offset: int, counts: bool | None = None
) -> tuple[float | None, float, int]:
    """(MASE, points inside P10..P90, points scored) of one line's forecast; `counts` (default:
    read from `actual`) scores the band by the randomised PIT, so "inside" may be fractional."""
    if actual is None or offset < 0:
        return None, 0.0, 0
    p10, p50, p90 = (np.asarray(v, dtype=np.float64) for v in (row.p10, row.p50, row.p90))
    if counts is None:
        counts = is_counts(actual)
    a = actual[offset : offset + p50.size]
    n = a.size
    ok = np.isfinite(a)
    if not ok.any():
        return None, 0.0, 0
    a, p10, p50, p90 = a[ok], p10[:n][ok], p50[:n][ok], p90[:n][ok]
    inside = float(band_share(a, p10, p90, counts).sum())
    mase = float(np.abs(a - p50).mean() / row.scale) if row.scale else None
    return mase, inside, int(ok.sum())


def record_and_score(
    run_id: str | None,
    horizon_start: date,
    horizon: int,
    totals: LineTotals,
    bands: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    wait_days: int = 3,
) -> dict[str, Any]:
    """Both steps of a run (the caller holds a connection); returns what the run's result shows."""
    scored = score_due(horizon_start, totals, wait_days)
    snapshot = record(run_id, horizon_start, horizon, totals, bands)
    return {"snapshot": snapshot.id, "scored_runs": len(scored)}


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def history(limit: int = 100, line: str | None = None) -> list[dict[str, Any]]:
    """Scored runs, newest horizon first: per run, or one line's scores when `line` is given."""
    if line is None:
        rows = (
            ForecastSnapshot.select()
            .where(ForecastSnapshot.scored_at.is_null(False))
            .order_by(ForecastSnapshot.horizon_start.desc(), ForecastSnapshot.id.desc())
            .limit(limit)
        )
        return [
            {
                "run_id": s.run_id,
                "horizon_start": _as_date(s.horizon_start).isoformat(),
                "horizon_days": s.horizon_days,
                "created_at": _iso(s.created_at),
                "scored_at": _iso(s.scored_at),
                "lines": s.lines,
                "mase": s.mase,
                "coverage": s.coverage,
                "points": s.scored_points,
            }
            for s in rows
        ]
    rows = (
        ForecastLine.select(ForecastLine, ForecastSnapshot)
        .join(ForecastSnapshot)
        .where((ForecastLine.line == line) & ForecastSnapshot.scored_at.is_null(False))
        .order_by(ForecastSnapshot.horizon_start.desc(), ForecastSnapshot.id.desc())
        .limit(limit)
    )
    return [
        {
            "run_id": r.snapshot.run_id,
            "horizon_start": _as_date(r.snapshot.horizon_start).isoformat(),
            "horizon_days": r.snapshot.horizon_days,
            "created_at": _iso(r.snapshot.created_at),
            "scored_at": _iso(r.snapshot.scored_at),
            "line": r.line,
            "mase": r.mase,
            "coverage": r.coverage,
            "points": r.scored_points,
        }
        for r in rows
    ]


def latest() -> tuple[ForecastSnapshot | None, list[ForecastLine]]:
    """The most recent scored run with actuals, and its lines' scores (for /metrics)."""
    snapshot = (
        ForecastSnapshot.select()
        .where(ForecastSnapshot.scored_at.is_null(False) & (ForecastSnapshot.scored_points > 0))
        .order_by(ForecastSnapshot.horizon_start.desc(), ForecastSnapshot.id.desc())
        .first()
    )
    if snapshot is None:
        return None, []
    lines = list(
        ForecastLine.select()
        .where((ForecastLine.snapshot == snapshot.id) & (ForecastLine.scored_points > 0))
        .order_by(ForecastLine.line)
    )
    return snapshot, lines


def delete_before(cutoff: datetime, batch_size: int = 20_000) -> int:
    """Delete snapshots created before `cutoff` with their lines, a batch per transaction
    (for the weekly cleanup, with HISTORY_RETENTION_DAYS). Returns the snapshots deleted."""
    deleted = 0
    while True:
        with database.atomic():
            ids = [
                s.id
                for s in ForecastSnapshot.select(ForecastSnapshot.id)
                .where(ForecastSnapshot.created_at < cutoff)
                .order_by(ForecastSnapshot.id)
                .limit(max(1, batch_size // 50))
            ]
            if not ids:
                return deleted
            ForecastLine.delete().where(ForecastLine.snapshot.in_(ids)).execute()
            deleted += ForecastSnapshot.delete().where(ForecastSnapshot.id.in_(ids)).execute()


__all__ = ["record", "score_due", "record_and_score", "history", "latest", "delete_before"]
