"""The trends use case: per job, runs, failures and p50/p95 duration per hour or day over a window.

An operator asks "is it getting slower, is it failing more?" over 24 h, 7 d and 30 d. The figures
come from the stored runs (`job_runs`: status, enqueued_at, duration_s), read once per request as
plain tuples along the (job, status, enqueued_at, duration_s) index and bucketed here, so
SQLite and PostgreSQL give the same answer. Percentiles interpolate linearly, like the stats
(`app.core.stats`, PostgreSQL's percentile_cont), over the bucket's finished runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from app.connections import database, db_session
from app.core.catalog import JOBS
from app.core.errors import InvalidTrendWindow
from app.models import JobRun, iso, utcnow
from app.runs import RunStatus

FAILED = (RunStatus.FAILED.value, RunStatus.STOPPED.value)


class TrendWindow(str, enum.Enum):
    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"


@dataclass(frozen=True)
class WindowShape:
    span: timedelta
    bucket: timedelta


SHAPES = {
    TrendWindow.DAY: WindowShape(timedelta(hours=24), timedelta(hours=1)),
    TrendWindow.WEEK: WindowShape(timedelta(days=7), timedelta(hours=6)),
    TrendWindow.MONTH: WindowShape(timedelta(days=30), timedelta(days=1)),
}


def trend_window(value: str | None) -> TrendWindow:
    """The window named by `value` (24h by default), or `InvalidTrendWindow`."""
    if value is None or value == "":
        return TrendWindow.DAY
    try:
        return TrendWindow(value)
    except ValueError:
        raise InvalidTrendWindow(value, [w.value for w in TrendWindow]) from None


def _bucket_starts(now: datetime, shape: WindowShape) -> list[datetime]:
    """Bucket starts aligned to whole buckets since midnight UTC; the last bucket holds `now`."""
    step = shape.bucket.total_seconds()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    last = midnight + timedelta(seconds=((now - midnight).total_seconds() // step) * step)
    count = int(shape.span / shape.bucket)
    return [last - shape.bucket * (count - 1 - i) for i in range(count)]


def job_trends(window: TrendWindow, names: list[str] | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Per job of `names` (all by default): buckets of runs, finished, failed (failed or stopped),
    and p50/p95 of finished durations, oldest first; plus the window's totals."""
    names = list(JOBS) if names is None else names
    shape = SHAPES[window]
    now = now or utcnow()
    starts = _bucket_starts(now, shape)
    since = starts[0]
    step = shape.bucket.total_seconds()
    query = (
        JobRun.select(JobRun.job_name, JobRun.status, JobRun.enqueued_at, JobRun.duration_s)
        .where(JobRun.job_name.in_(names) & (JobRun.enqueued_at >= since))
        .tuples()
    )
    rows: dict[str, list[tuple[str, datetime, float | None]]] = {name: [] for name in names}
    with db_session(), database.atomic():
        for job_name, status, enqueued_at, duration in query.iterator():
            rows[job_name].append((status, enqueued_at, duration))
    jobs: dict[str, dict[str, Any]] = {}
    for name in names:
        runs = np.zeros(len(starts), dtype=np.int64)
        finished = np.zeros(len(starts), dtype=np.int64)
        failed = np.zeros(len(starts), dtype=np.int64)
        durations: list[list[float]] = [[] for _ in starts]
        for status, enqueued_at, duration in rows[name]:
            index = min(int((enqueued_at - since).total_seconds() // step), len(starts) - 1)
            runs[index] += 1
            if status == RunStatus.FINISHED.value:
                finished[index] += 1
                if duration is not None:
                    durations[index].append(float(duration))
            elif status in FAILED:
                failed[index] += 1
        all_durations = [d for bucket in durations for d in bucket]
        jobs[name] = {
            "buckets": [
                {
                    "start": iso(start),
                    "runs": int(runs[i]),
                    "finished": int(finished[i]),
                    "failed": int(failed[i]),
                    **_percentiles(durations[i]),
                }
                for i, start in enumerate(starts)
            ],
            "totals": {
                "runs": int(runs.sum()),
                "finished": int(finished.sum()),
                "failed": int(failed.sum()),
                "failure_rate": _rate(int(failed.sum()), int(finished.sum())),
                **_percentiles(all_durations),
            },
        }
    return {
        "window": window.value,
        "bucket_seconds": int(step),
        "since": iso(since),
        "generated_at": iso(now),
        "jobs": jobs,
    }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    p50, p95 = np.percentile(np.asarray(values), [50, 95])  # linear interpolation, as percentile_cont
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3)}


def _rate(failed: int, finished: int) -> float | None:
    """Failed ÷ (finished + failed): the complement of the stats' success rate; None without ended runs."""
    ended = failed + finished
    return None if ended == 0 else round(failed / ended, 4)
