"""What a waiting run is really doing: a run that failed and waits for RQ's retry is not "running".

RQ keeps a delayed retry in the queue's ScheduledJobRegistry, scored by when it is due, and
counts the retries left on the job. A run row in `scheduled` gets `next_retry_at`,
`next_attempt`, `max_attempts` and a `state_detail` such as "retrying at 14:05 UTC (attempt 2
of 4)"; without Redis the detail says the time is unknown instead of guessing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from app.models import iso

RETRY_STATUS = "scheduled"


def retry_detail(next_retry_at: datetime | None, attempt: int | None, of: int | None) -> str:
    counted = f" (attempt {attempt} of {of})" if attempt and of else ""
    if next_retry_at is None:
        return f"waiting for a retry{counted}"
    return f"retrying at {next_retry_at:%H:%M} UTC{counted}"


def add_retry_states(redis: Redis, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `state_detail`, the retry's time and counts to the rows waiting for a retry (others are unchanged).

    `rows` are run JSON dicts (`job_id`, `status`, `queue`, `attempts`); one Redis round trip.
    """
    waiting = [row for row in rows if row.get("status") == RETRY_STATUS]
    if not waiting:
        return rows
    try:
        with redis.pipeline(transaction=False) as pipe:
            for row in waiting:
                registry = ScheduledJobRegistry(row["queue"], connection=redis)  # type: ignore[no-untyped-call]
                pipe.zscore(registry.key, row["job_id"])
                pipe.hget(Job.key_for(row["job_id"]), "retries_left")
            answers = pipe.execute()
    except RedisError:
        for row in waiting:
            row["next_retry_at"] = None
            row["state_detail"] = "waiting for a retry (time unknown: Redis unavailable)"
        return rows
    for index, row in enumerate(waiting):
        score, left = answers[2 * index], answers[2 * index + 1]
        due = datetime.fromtimestamp(score, timezone.utc) if score is not None else None
        done = int(row.get("attempts") or 0)
        retries_left = int(left) if left is not None else None
        # RQ counts the pending retry off `retries_left` when it schedules it.
        row["next_retry_at"] = iso(due)
        row["next_attempt"] = done + 1
        row["max_attempts"] = done + 1 + retries_left if retries_left is not None else None
        row["state_detail"] = retry_detail(due, row["next_attempt"], row["max_attempts"])
    return rows
