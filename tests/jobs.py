"""Short jobs for load tests: each records its own execution so losses and doubles show."""
from __future__ import annotations

from rq import get_current_job


def mark(index: int) -> int:
    job = get_current_job()
    return job.connection.hincrby("load-test:ran", str(index), 1)
