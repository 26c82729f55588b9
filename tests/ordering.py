"""Longest tests first, spread over the xdist workers, so no worker is left alone with a long test at the end.

The suite's wall time is set by its long tests (real worker, scheduler and gunicorn processes,
Chromium, a two-scheduler failover): run in collection order, one of them can start last and
keep one worker busy while the others idle. The hook here only reorders; it never selects.

`--dist worksteal` hands each worker one contiguous slice of the collection at the start (the
slice sizes are fixed by the item count) and later moves the tail of the longest queue to an
idle worker. So the collection is laid out as one slice per worker: the known durations
(tests/durations.json, measured; an unknown test counts as short, or as a few seconds when
marked `slow`) are dealt longest first to the slice with the least work and room left; inside
its slice each module's tests stay together (module fixtures are set up once per slice),
modules with the most work first, so what is stolen at the end is short. With `--dist load` the
collection is simply sorted longest first. Without xdist the order is left as collected.

Refresh the durations after adding long tests (any run, any worker count):
    .venv/bin/python -m pytest -q -n auto --durations=0 | .venv/bin/python -m tests.ordering
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

DURATIONS_FILE = Path(__file__).with_name("durations.json")
RECORD_AT_LEAST = 0.5  # seconds: shorter tests are not worth a line in the file
UNKNOWN = 0.05  # seconds assumed for a test not in the file
UNKNOWN_SLOW = 3.0  # ... and for one marked `slow` (it starts processes or a browser)


def known_durations() -> dict[str, float]:
    try:
        return json.loads(DURATIONS_FILE.read_text())
    except (OSError, ValueError):
        return {}


def estimate(item, durations: dict[str, float]) -> float:
    if item.nodeid in durations:
        return durations[item.nodeid]
    return UNKNOWN_SLOW if item.get_closest_marker("slow") else UNKNOWN


def worksteal_slices(count: int, workers: int) -> list[int]:
    """The sizes of the first slices `--dist worksteal` sends (xdist's WorkStealingScheduling.check_schedule)."""
    sizes, left = [], count
    for remaining in range(workers, 0, -1):
        sizes.append(left // remaining)
        left -= sizes[-1]
    return sizes


def layout(items: list, estimates: list[float], workers: int) -> list:
    """One slice per worker, balanced by estimated time; inside a slice, modules by their work there, longest first."""
    sizes = worksteal_slices(len(items), workers)
    slices: list[list[int]] = [[] for _ in sizes]
    work = [0.0] * len(sizes)
    for index in sorted(range(len(items)), key=lambda i: -estimates[i]):
        target = min((s for s in range(len(sizes)) if len(slices[s]) < sizes[s]), key=lambda s: work[s])
        slices[target].append(index)
        work[target] += estimates[index]
    ordered = []
    for members in slices:
        module_work: dict[str, float] = defaultdict(float)
        for index in members:
            module_work[items[index].nodeid.split("::")[0]] += estimates[index]
        members.sort(key=lambda i: (-module_work[items[i].nodeid.split("::")[0]], i))
        ordered += [items[i] for i in members]
    return ordered


def reorder(config, items: list) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))  # set in each xdist worker
    dist = getattr(config.option, "dist", "no")
    if workers < 2 or dist not in ("worksteal", "load") or not items:
        return
    durations = known_durations()
    estimates = [estimate(item, durations) for item in items]
    if dist == "worksteal":
        items[:] = layout(items, estimates, workers)
    else:
        by_index = {id(item): i for i, item in enumerate(items)}
        items.sort(key=lambda item: -estimates[by_index[id(item)]])


DURATION_LINE = re.compile(r"^\s*([0-9.]+)s\s+(setup|call|teardown)\s+(\S+)\s*$")


def record(report_lines, previous: dict[str, float]) -> dict[str, float]:
    """Per-test time (setup + call + teardown) from `pytest --durations=0` output; tests not in it keep theirs."""
    totals: dict[str, float] = defaultdict(float)
    for line in report_lines:
        match = DURATION_LINE.match(line)
        if match:
            totals[match.group(3)] += float(match.group(1))
    if not totals:
        raise SystemExit("no `--durations=0` lines on stdin")
    merged = {k: v for k, v in previous.items() if k not in totals}
    merged.update({k: round(v, 1) for k, v in totals.items() if v >= RECORD_AT_LEAST})
    return dict(sorted(merged.items()))


if __name__ == "__main__":
    updated = record(sys.stdin, known_durations())
    DURATIONS_FILE.write_text(json.dumps(updated, indent=1) + "\n")
    print(f"{DURATIONS_FILE}: {len(updated)} tests, {sum(updated.values()):.0f} s")
