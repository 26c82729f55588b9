"""Load with real processes: concurrent triggers through gunicorn, and a burst of short jobs."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from rq import Queue

from app.models import JobRun
from tests.conftest import TEST_TOKEN
from tests.servers import free_port
from tests.test_job_policies import wait_for

pytestmark = pytest.mark.slow
BURST_JOBS = int(os.environ.get("LOAD_TEST_JOBS", "2000"))  # LOAD_TEST_JOBS=5000 for a longer burst


def post(url: str) -> int:
    request = urllib.request.Request(url, method="POST", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        json.loads(exc.read())  # every error is a JSON body
        return exc.code


@pytest.fixture
def web(start_process):
    port = free_port()
    start_process("-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "4", "app:create_app()")
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return urllib.request.urlopen(f"{base}/healthz", timeout=1).status == 200
        except OSError:
            return False

    wait_for(up, timeout=30)
    return base


def test_200_concurrent_triggers_queue_exactly_one_run(app, web, redis):
    with ThreadPoolExecutor(max_workers=200) as pool:
        codes = Counter(pool.map(lambda _: post(f"{web}/api/jobs/forecast/trigger"), range(200)))
    assert codes == {202: 1, 409: 199}, codes
    assert JobRun.select().count() == 1
    assert Queue("forecast", connection=redis).count == 1


def test_burst_of_short_jobs_across_two_workers_none_lost_or_doubled(app, redis, start_process):
    queue = Queue("default", connection=redis)
    with redis.pipeline() as pipe:
        for start in range(0, BURST_JOBS, 500):
            queue.enqueue_many(
                [
                    Queue.prepare_data("tests.jobs.mark", args=(i,), result_ttl=600)
                    for i in range(start, min(start + 500, BURST_JOBS))
                ],
                pipeline=pipe,
            )
        pipe.execute()
    began = time.monotonic()
    for _ in range(2):
        start_process("-m", "workers", "default")
    wait_for(lambda: redis.hlen("load-test:ran") == BURST_JOBS and queue.count == 0, timeout=300, interval=0.5)
    wait_for(lambda: queue.finished_job_registry.count == BURST_JOBS, timeout=30)
    elapsed = time.monotonic() - began
    counts = Counter(int(v) for v in redis.hvals("load-test:ran"))
    print(f"{BURST_JOBS} jobs through 2 worker processes in {elapsed:.1f}s ({BURST_JOBS / elapsed:.0f}/s)")
    assert counts == {1: BURST_JOBS}
    assert queue.failed_job_registry.count == 0


@pytest.fixture
def database_url(postgres_server):
    """Run once, on the production database."""
    from tests.conftest import _reset_postgres

    _reset_postgres(postgres_server.url)
    return postgres_server.url
