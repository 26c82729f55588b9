"""A SIGTERM is never lost: RQ raises StopRequested from its signal handler when the worker is idle,
and Python swallows an exception raised inside an at-fork callback (a SIGTERM arriving while the
worker forks its standby work-horse). The worker then kept blocking in its dequeue until SIGKILL."""

from __future__ import annotations

import os
import signal

import pytest
from rq.exceptions import StopRequested

pytestmark = pytest.mark.any_database


@pytest.fixture(autouse=True)
def _keep_signal_handlers():
    """request_stop installs RQ's force-stop handlers in this (test) process: put pytest's back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_stop_signalled_inside_a_fork_callback_is_still_honoured(app, redis):
    from workers.worker import build_worker

    worker = build_worker(app.config["SETTINGS"], redis, ["forecast"])
    worker.set_state("idle")
    with pytest.raises(StopRequested):  # the usual path: the handler raises, the loop breaks
        worker.request_stop(signal.SIGTERM, None)
    assert worker._stop_requested

    lost = build_worker(app.config["SETTINGS"], redis, ["forecast"])
    lost.set_state("idle")
    fired = []

    def stop_during_fork() -> None:
        fired.append(True)
        lost.request_stop(signal.SIGTERM, None)  # raises; Python prints and ignores it here

    os.register_at_fork(after_in_parent=stop_during_fork)
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    finally:
        lost.request_stop = lambda *args: None  # at-fork callbacks cannot be unregistered: make it a no-op
    assert fired
    assert lost._stop_requested  # the loop checks this before its next dequeue


@pytest.mark.any_database
def test_a_sigterm_landing_while_the_heartbeat_publishes_resources_still_stops_the_worker(app, redis, monkeypatch):
    """RQ's handler raises StopRequested in an idle worker wherever the signal lands. Landing in
    the heartbeat's resource sampling, it was swallowed and the worker stayed in RQ's dequeue
    loop until SIGKILL (seen as a 30 s timeout of tests/test_ops_events.py under load)."""
    from app.worker_resources import ResourceSampler
    from workers.worker import build_worker

    worker = build_worker(app.config["SETTINGS"], redis, name="stop-in-heartbeat")
    worker.register_birth()

    def signal_lands_here(self, horse_pid=None):
        raise StopRequested()

    monkeypatch.setattr(ResourceSampler, "sample", signal_lands_here)
    with pytest.raises(StopRequested):
        worker.heartbeat()


BUSY_200_MS = """local t = redis.call('TIME')
local stop = t[1] * 1000000 + t[2] + 200000
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop
return 1"""


def test_a_stop_landing_inside_a_pipeline_leaves_no_stale_replies_for_the_teardown(app, redis, monkeypatch):
    """RQ's handler raises StopRequested wherever SIGTERM lands: between a pipeline's send and the
    read of its replies, the connection went back to the pool with replies still on their way,
    and the teardown's register_death read them ("Wrong number of response items from pipeline
    execution", seen once in a fresh-clone CI in tests/test_deploy.py's worker)."""
    from redis.client import Pipeline

    from workers.worker import build_worker

    worker = build_worker(app.config["SETTINGS"], redis, name="stop-in-pipeline")
    worker.register_birth()
    registry = f"rq:workers:{worker.queues[0].name}"
    assert worker.key.encode() in redis.smembers(registry)
    pipe = worker.connection.pipeline()
    pipe.eval(BUSY_200_MS, 0)  # its replies come 200 ms late: still on their way at the teardown
    pipe.ping()

    def signal_lands_here(self, connection, command_name, **options):
        raise StopRequested()

    with monkeypatch.context() as patched:
        patched.setattr(Pipeline, "parse_response", signal_lands_here)
        with pytest.raises(StopRequested):
            pipe.execute()

    worker.teardown()

    assert redis.hexists(worker.key, "death")  # register_death ran to its end
    assert worker.key.encode() not in redis.smembers(registry)
