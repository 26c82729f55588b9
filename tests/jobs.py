"""Short jobs for load tests: each records its own execution so losses and doubles show."""

from __future__ import annotations

from rq import get_current_job


def mark(index: int) -> int:
    job = get_current_job()
    return job.connection.hincrby("load-test:ran", str(index), 1)


def pid() -> int:
    """Where the job ran: the worker's own process or a work-horse."""
    import os

    return os.getpid()


def sleep_for(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "slept"


def fail_first(key: str) -> str:
    """Fails on its first attempt only (the attempt count lives in Redis)."""
    job = get_current_job()
    if job.connection.incr(key) == 1:
        raise RuntimeError("first attempt fails")
    return "second attempt"
