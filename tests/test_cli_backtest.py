"""`flask backtest FILE.csv`: the engine's rolling-origin backtest on anyone's long CSV, here the
bike data shipped in data/ (CC BY 4.0, see data/README.md)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

BIKE = Path(__file__).resolve().parent.parent / "data" / "bike.csv.gz"


@pytest.fixture
def database_url(tmp_path):
    """The backtest reads a file and writes nothing: SQLite is enough."""
    return f"sqlite:///{tmp_path / 'backtest.db'}"


def test_bike_data_is_shipped_with_its_attribution():
    readme = (BIKE.parent / "README.md").read_text()
    assert "CC BY 4.0" in readme and "Fanaee-T" in readme and "UCI" in readme
    with gzip.open(BIKE, "rt") as fh:
        assert fh.readline().strip() == "dataset,series,line,date,value"


def test_backtest_prints_each_method_next_to_seasonal_naive(runner):
    result = runner.invoke(args=["backtest", str(BIKE), "--horizon", "14", "--origins", "3"])
    assert result.exit_code == 0, result.output
    assert "bike: 3 series x 731 days, 3 origin(s), horizon 14" in result.output
    header = next(line for line in result.output.splitlines() if line.startswith("method"))
    for column in ("MASE", "rel", "sMAPE", "P10-P90", "recall", "prec", "Brier"):
        assert column in header
    rows = {
        line.split()[0]: line.split()
        for line in result.output.splitlines()
        if line.split() and line.split()[0] in ("engine", "seasonal_naive")
    }
    assert set(rows) == {"engine", "seasonal_naive"}
    assert rows["seasonal_naive"][2] == "1.000"  # relative to itself


def test_backtest_json_has_the_figures(runner):
    result = runner.invoke(args=["backtest", str(BIKE), "--horizon", "7", "--origins", "2", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output[result.output.index("{") :])
    assert (body["horizon"], body["origins"]) == (7, 2)
    engine = body["datasets"]["bike"]["engine"]
    assert math.isfinite(engine["mase"]) and engine["mase"] > 0
    assert 0 <= engine["coverage"] <= 1 and math.isfinite(engine["smape"])
    assert body["info"]["bike"]["origins"] == 2


def test_backtest_missing_days_are_not_zero(runner, tmp_path):
    """Absent rows and empty values are missing days: a weekly series with gaps still backtests well."""
    import random
    from datetime import date, timedelta

    rng = random.Random(1)
    rows = ["dataset,series,line,date,value"]
    for offset in range(182):
        day = date(2024, 1, 1) + timedelta(days=offset)
        if offset % 10 == 5:
            continue  # no row at all
        value = "" if offset % 10 == 3 else f"{100 + 20 * day.weekday() + rng.gauss(0, 3):.1f}"
        rows.append(f"toy,s1,L1,{day.isoformat()},{value}")
    path = tmp_path / "toy.csv"
    path.write_text("\n".join(rows) + "\n")
    result = runner.invoke(args=["backtest", str(path), "--origins", "3", "--json"])
    assert result.exit_code == 0, result.output
    methods = json.loads(result.output[result.output.index("{") :])["datasets"]["toy"]
    # Read as zeros, the gaps would wreck both; as missing days the engine tracks the weekly pattern.
    assert methods["engine"]["mase"] < 1.0 and methods["engine"]["smape"] < 10


@pytest.mark.parametrize(
    "content, message",
    [
        ("date,item,line,quantity\n2025-01-01,A,L1,5\n", "header must name the columns"),
        ("dataset,series,line,date,value\ntoy,s1,L1,01/02/2025,5\n", "bad date"),
    ],
)
def test_backtest_refuses_a_file_of_another_form(runner, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = runner.invoke(args=["backtest", str(path)])
    assert result.exit_code == 2 and message in result.output, result.output


def test_backtest_refuses_bad_options(runner):
    result = runner.invoke(args=["backtest", str(BIKE), "--horizon", "0"])
    assert result.exit_code == 2 and "--horizon" in result.output
