"""The suite's own layout (tests/ordering.py): it reorders, never drops, and matches xdist's worksteal slices."""

from __future__ import annotations

from dataclasses import dataclass

from tests import ordering


@dataclass
class Item:
    nodeid: str


def test_slices_are_the_sizes_worksteal_sends_first():
    # WorkStealingScheduling.check_schedule: each idle node gets len(pending) // nodes_remaining.
    assert ordering.worksteal_slices(1359, 4) == [339, 340, 340, 340]
    assert ordering.worksteal_slices(7, 2) == [3, 4]
    assert sum(ordering.worksteal_slices(1000, 3)) == 1000


def test_layout_keeps_every_item_and_gives_each_slice_one_long_test_at_its_head():
    items = [Item(f"tests/test_{m}.py::t{i}") for m in "abcd" for i in range(10)]
    estimates = [0.1] * len(items)
    long_ones = {3: 50.0, 15: 40.0, 27: 30.0, 38: 20.0}  # one per module, late in each
    for index, seconds in long_ones.items():
        estimates[index] = seconds
    ordered = ordering.layout(items, estimates, 4)
    assert sorted(item.nodeid for item in ordered) == sorted(item.nodeid for item in items)
    heads = [ordered[start] for start in (0, 10, 20, 30)]  # the slices are 10 items each
    assert {items.index(head) for head in heads} == set(long_ones)  # each slice starts with its module's long test


def test_known_durations_are_read_from_the_recorded_file():
    durations = ordering.known_durations()
    assert durations and all(seconds >= ordering.RECORD_AT_LEAST for seconds in durations.values())


def test_record_sums_the_phases_of_each_test_and_keeps_tests_not_in_the_report():
    report = [
        "12.00s call     tests/test_x.py::test_long[sqlite]",
        "0.40s setup    tests/test_x.py::test_long[sqlite]",
        "0.10s call     tests/test_x.py::test_short",
        "=== 1 passed ===",
    ]
    recorded = ordering.record(report, {"tests/test_y.py::test_old": 3.0, "tests/test_x.py::test_short": 2.0})
    assert recorded == {"tests/test_x.py::test_long[sqlite]": 12.4, "tests/test_y.py::test_old": 3.0}
