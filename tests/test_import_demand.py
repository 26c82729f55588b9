"""`flask import-demand`: every validation error with its line numbers, all or nothing, success."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from app.connections import db_session
from app.forecast.pipeline import load_history, run_pipeline
from app.models import DemandHistory, ProductionLine

CAPACITY = "line,name,daily_capacity\nL1,Assembly,100\nL2,Packaging,50\n"


@pytest.fixture
def files(tmp_path):
    def write(demand: str, capacity: str | None = None) -> list[str]:
        (tmp_path / "demand.csv").write_text(textwrap.dedent(demand).lstrip())
        args = ["import-demand", str(tmp_path / "demand.csv")]
        if capacity is not None:
            (tmp_path / "capacity.csv").write_text(textwrap.dedent(capacity).lstrip())
            args += ["--capacity", str(tmp_path / "capacity.csv")]
        return args

    return write


def counts() -> tuple[int, int]:
    with db_session():
        return ProductionLine.select().count(), DemandHistory.select().count()


def rejected(runner, args, *fragments: str):
    result = runner.invoke(args=args)
    assert result.exit_code == 2, result.output
    assert "nothing imported" in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    assert counts() == (0, 0)  # all or nothing
    return result.output


def test_imports_demand_with_a_capacity_file(runner, files):
    result = runner.invoke(
        args=files(
            """
        date,item,line,quantity
        2025-01-01,A,L1,10
        2025-01-02,A,L1,12.5
        2025-01-01,B,L2,0
    """,
            CAPACITY,
        )
    )
    assert result.exit_code == 0, result.output
    assert "imported 3 demand rows of 2 series, 2025-01-01..2025-01-02" in result.output
    assert "lines created: L1, L2" in result.output
    with db_session():
        assert {(line.code, line.name, line.daily_capacity) for line in ProductionLine.select()} == {
            ("L1", "Assembly", 100.0),
            ("L2", "Packaging", 50.0),
        }
    history = load_history()
    assert history.series == [("A", "L1"), ("B", "L2")]
    np.testing.assert_array_equal(history.values, [[10.0, 12.5], [0.0, np.nan]])  # B: a zero, then no row


def test_imports_with_capacity_columns_and_known_lines(runner, files):
    result = runner.invoke(
        args=files("""
        date,item,line,quantity,daily_capacity,line_name
        2025-01-01,A,L1,10,100,Assembly
        2025-01-02,A,L1,12,,
        2025-01-01,B,L2,5,40,
    """)
    )
    assert result.exit_code == 0, result.output
    with db_session():
        assert {(line.code, line.name, line.daily_capacity) for line in ProductionLine.select()} == {
            ("L1", "Assembly", 100.0),
            ("L2", "L2", 40.0),
        }
    # Lines are known now: a later file needs no capacities.
    result = runner.invoke(args=files("date,item,line,quantity\n2025-01-03,A,L1,11\n"))
    assert result.exit_code == 0, result.output
    assert counts() == (2, 4)


def test_imported_history_feeds_the_forecast(app, runner, files):
    rows = ["date,item,line,quantity"] + [f"2025-01-{d:02d},A,L1,{90 + d % 7}" for d in range(1, 32)]
    result = runner.invoke(args=files("\n".join(rows) + "\n", "line,name,daily_capacity\nL1,Assembly,95\n"))
    assert result.exit_code == 0, result.output
    alerts = run_pipeline(app.config["SETTINGS"])
    assert [(a["type"], a["subject"]) for a in alerts] == [("capacity_warning", "line:L1")]


@pytest.mark.parametrize(
    "row, message",
    [
        ("2025-13-01,A,L1,1", "line 3: date '2025-13-01' does not exist"),
        ("2025-02-30,A,L1,1", "line 3: date '2025-02-30' does not exist"),
        ("01/02/2025,A,L1,1", "line 3: date '01/02/2025' is not a date in the form YYYY-MM-DD"),
        ("20250102,A,L1,1", "line 3: date '20250102' is not a date in the form YYYY-MM-DD"),
        (",A,L1,1", "line 3: date '' is not a date"),
        ("2025-01-02,A,L1,ten", "line 3: quantity 'ten' is not a number"),
        ("2025-01-02,A,L1,-", "line 3: quantity '-' is not a number"),
        ("2025-01-02,A,L1,-1", "line 3: quantity '-1' is negative"),
        ("2025-01-02,A,L1,nan", "line 3: quantity 'nan' is not a finite number"),
        ("2025-01-02,A,L1,inf", "line 3: quantity 'inf' is not a finite number"),
        ("2025-01-02,,L1,1", "line 3: item is empty"),
        ("2025-01-02,A,,1", "line 3: line is empty"),
        (f"2025-01-02,{'x' * 65},L1,1", "line 3: item is longer than 64 characters"),
        ("2025-01-02,A,L9,1", "line 3: unknown line 'L9'"),
        ("2025-01-02,A,L1", "line 3: 3 field(s), expected 4"),
        ("2025-01-02,A,L1,1,2", "line 3: 5 field(s), expected 4"),
        ("2025-01-01,A,L1,7", "line 3: duplicate of line 2 (same date, item and line)"),
    ],
)
def test_each_bad_demand_row_is_reported_with_its_line(runner, files, row, message):
    output = rejected(
        runner, files(f"date,item,line,quantity\n2025-01-01,A,L1,5\n{row}\n2025-01-03,A,L1,6\n", CAPACITY), message
    )
    assert "line 2:" not in output.replace("duplicate of line 2", "") and "line 4" not in output


def test_all_errors_are_listed_in_line_order(runner, files):
    output = rejected(
        runner,
        files(
            """
        date,item,line,quantity
        2025-01-01,A,L1,5
        2025-01-02,A,L1,x

        2025-01-03,A,L9,1
        2025-01-04,A,L1,-2
    """,
            CAPACITY,
        ),
        "3 problem(s) found",
    )
    assert output.index("line 3:") < output.index("line 5:") < output.index("line 6:")  # blank line 4 skipped


def test_many_errors_are_counted_beyond_the_listed_ones(runner, files):
    rows = "\n".join(f"2025-01-01,A{i},L1,bad" for i in range(60))
    output = rejected(
        runner, files(f"date,item,line,quantity\n{rows}\n", CAPACITY), "60 problem(s) found", "... and 10 more"
    )
    assert "line 51:" in output and "line 52:" not in output


@pytest.mark.parametrize(
    "header, message",
    [
        ("date,item,quantity", "line 1: missing column(s) line"),
        ("date,item,line,quantity,colour", "line 1: unknown column(s) colour"),
        ("date,item,line,line,quantity", "line 1: repeated column(s) line"),
    ],
)
def test_bad_demand_header(runner, files, header, message):
    rejected(runner, files(f"{header}\n2025-01-01,A,L1,5\n", CAPACITY), message)


def test_empty_files(runner, files):
    rejected(runner, files("", CAPACITY), "demand.csv: the file is empty")
    rejected(runner, files("date,item,line,quantity\n", CAPACITY), "demand.csv: no demand rows")


@pytest.mark.parametrize(
    "capacity, message",
    [
        ("line,daily_capacity\nL1,100\n", "capacity.csv line 1: missing column(s) name"),
        ("line,name,daily_capacity\nL1,Assembly,lots\n", "capacity.csv line 2: daily_capacity 'lots' is not a number"),
        ("line,name,daily_capacity\nL1,Assembly,-5\n", "capacity.csv line 2: daily_capacity '-5' is negative"),
        ("line,name,daily_capacity\n,Assembly,5\n", "capacity.csv line 2: line is empty"),
        (
            "line,name,daily_capacity\nL1,Assembly,5\nL1,Other,6\n",
            "capacity.csv line 3: line 'L1' is listed twice (also capacity.csv line 2)",
        ),
    ],
)
def test_bad_capacity_file(runner, files, capacity, message):
    rejected(runner, files("date,item,line,quantity\n2025-01-01,A,L1,5\n", capacity), message)


def test_unknown_line_names_the_capacity_file(runner, files):
    rejected(
        runner,
        files("date,item,line,quantity\n2025-01-01,A,L3,5\n", CAPACITY),
        "demand.csv line 2: unknown line 'L3' (not in the database; give its capacity in the capacity file)",
    )


@pytest.mark.parametrize(
    "rows, message",
    [
        ("2025-01-01,A,L1,5,100\n2025-01-02,A,L1,5,90\n", "line 3: line 'L1' has another daily_capacity"),
        ("2025-01-01,A,L1,5,x\n", "line 2: daily_capacity 'x' is not a number"),
    ],
)
def test_bad_capacity_columns(runner, files, rows, message):
    rejected(runner, files(f"date,item,line,quantity,daily_capacity\n{rows}"), message)


def test_capacity_file_and_columns_together_are_refused(runner, files):
    rejected(
        runner,
        files("date,item,line,quantity,daily_capacity\n2025-01-01,A,L1,5,100\n", CAPACITY),
        "capacities in a capacity file or in columns, not both",
    )


def test_rows_already_stored_are_refused_unless_replaced(runner, files):
    first = files("date,item,line,quantity\n2025-01-01,A,L1,5\n2025-01-02,A,L1,6\n", CAPACITY)
    assert runner.invoke(args=first).exit_code == 0
    again = files(
        "date,item,line,quantity\n2025-01-02,A,L1,60\n2025-01-03,A,L1,7\n",
        "line,name,daily_capacity\nL1,Assembly,120\n",
    )
    result = runner.invoke(args=again)
    assert result.exit_code == 2
    assert "demand.csv line 2: date, item and line already in the database (use --replace" in result.output
    assert "line 3" not in result.output
    with db_session():
        assert ProductionLine.get(ProductionLine.code == "L1").daily_capacity == 100  # rolled back too
        assert DemandHistory.select().count() == 2

    result = runner.invoke(args=again + ["--replace"])
    assert result.exit_code == 0, result.output
    assert "imported 2 demand rows (1 replaced)" in result.output and "lines updated: L1" in result.output
    assert load_history().values.tolist() == [[5.0, 60.0, 7.0]]
    with db_session():
        assert ProductionLine.get(ProductionLine.code == "L1").daily_capacity == 120


# --- explicit zeros, absent rows, declared missing days and zero-filled files ------------------------


def stored() -> dict[tuple[str, str], float]:
    with db_session():
        return {
            (r.item, r.day.isoformat() if hasattr(r.day, "isoformat") else str(r.day)[:10]): r.quantity
            for r in DemandHistory.select()
        }


def test_explicit_zeros_and_absent_rows_stay_distinct(runner, files):
    result = runner.invoke(
        args=files(
            """
        date,item,line,quantity
        2025-01-01,A,L1,4
        2025-01-02,A,L1,0
        2025-01-04,A,L1,5
        2025-01-03,B,L1,
        2025-01-04,B,L1,2
    """,
            CAPACITY,
        )
    )
    assert result.exit_code == 0, result.output
    assert "imported 4 demand rows (1 declared missing) of 2 series" in result.output
    assert stored() == {
        ("A", "2025-01-01"): 4.0,
        ("A", "2025-01-02"): 0.0,
        ("A", "2025-01-04"): 5.0,
        ("B", "2025-01-04"): 2.0,
    }
    history = load_history()
    np.testing.assert_array_equal(history.values, [[4, 0, np.nan, 5], [np.nan, np.nan, np.nan, 2]])


def test_a_zero_filled_file_imports_its_unlisted_days_as_zero(runner, files):
    runner.invoke(args=files("date,item,line,quantity\n2025-01-03,B,L1,9\n", CAPACITY))  # stored before
    result = runner.invoke(
        args=files("""
        date,item,line,quantity
        2025-01-02,A,L1,4
        2025-01-05,A,L1,5
        2025-01-04,A,L1,
        2025-01-01,B,L1,1
        2025-01-06,C,L1,3
    """)
        + ["--zero-fill"]
    )
    assert result.exit_code == 0, result.output
    assert "(6 zero-filled, 1 declared missing)" in result.output and "1 declared missing" in result.output
    assert stored() == {
        ("A", "2025-01-02"): 4.0,
        ("A", "2025-01-03"): 0.0,
        ("A", "2025-01-05"): 5.0,
        ("A", "2025-01-06"): 0.0,
        # B's stored 9 is kept; C starts on its first row; A's declared missing day stays missing.
        ("B", "2025-01-01"): 1.0,
        ("B", "2025-01-02"): 0.0,
        ("B", "2025-01-03"): 9.0,
        ("B", "2025-01-04"): 0.0,
        ("B", "2025-01-05"): 0.0,
        ("B", "2025-01-06"): 0.0,
        ("C", "2025-01-06"): 3.0,
    }


def test_without_zero_fill_unlisted_days_are_missing(runner, files):
    result = runner.invoke(args=files("date,item,line,quantity\n2025-01-02,A,L1,4\n2025-01-05,A,L1,5\n", CAPACITY))
    assert result.exit_code == 0, result.output
    assert stored() == {("A", "2025-01-02"): 4.0, ("A", "2025-01-05"): 5.0}


def test_declaring_a_stored_day_missing_needs_replace_and_removes_it(runner, files):
    assert (
        runner.invoke(args=files("date,item,line,quantity\n2025-01-01,A,L1,5\n2025-01-02,A,L1,6\n", CAPACITY)).exit_code
        == 0
    )
    again = files("date,item,line,quantity\n2025-01-02,A,L1,\n")
    result = runner.invoke(args=again)
    assert result.exit_code == 2 and "already in the database (use --replace" in result.output
    result = runner.invoke(args=again + ["--replace"])
    assert result.exit_code == 0, result.output
    assert "1 stored value(s) removed" in result.output
    assert stored() == {("A", "2025-01-01"): 5.0}


def test_the_command_help_says_how_missing_days_are_declared(runner):
    result = runner.invoke(args=["import-demand", "--help"])
    assert "--zero-fill" in result.output and "empty quantity" in result.output and "explicit zero" in result.output
