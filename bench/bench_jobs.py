"""Jobs for the benchmark's worker runs (enqueued by dotted path, like the catalogue's).

`tracked_noop` is a catalogue-style job: `app.runs.tracking.tracked` counts the attempt on its
`job_runs` row, records the outcome and releases the overlap lock, exactly as for a real run,
around a body that does nothing. (Raw RQ workers drain `bench.noop_job.noop`, which imports nothing.)
"""

from __future__ import annotations

from app.runs.tracking import tracked

JOB_NAME = "bench"


@tracked(JOB_NAME)
def tracked_noop(job_id: str, settings) -> dict:
    return {"status": "completed"}
