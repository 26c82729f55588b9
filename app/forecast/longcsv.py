"""Read the long demand CSV of the shared real data (`dataset, series, line, date, value`).

The backtest command reads anyone's data in this form: one row per series and day, gzip or
plain. An absent row or an empty value is a missing day (NaN), never zero.
"""
from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

REQUIRED = ("series", "date", "value")


class InvalidDemandFile(ValueError):
    """The file is not a long demand CSV; the message says where."""


@dataclass(frozen=True)
class LongData:
    values: np.ndarray  # (series, days) float64, NaN = missing
    series: list[str]
    lines: list[str]  # the line of each series (the series itself when the file has no line column)
    start: date

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.values.shape[1] - 1)


def _open(path: Path) -> io.TextIOBase:
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", newline="", encoding="utf-8-sig") if gzipped else \
        open(path, newline="", encoding="utf-8-sig")


def read_long_csv(path: str | Path) -> LongData:
    """The file as a dense (series x days) array on its own calendar (first to last date)."""
    path = Path(path)
    index: dict[str, int] = {}
    lines: list[str] = []
    rows: list[tuple[int, int, float]] = []
    try:
        with _open(path) as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise InvalidDemandFile(f"{path.name} line 1: missing column(s) {', '.join(missing)} "
                                        f"(expected dataset,series,line,date,value)")
            col = {name: header.index(name) for name in ("series", "date", "value", "line") if name in header}
            for values in reader:
                if not values or all(not v.strip() for v in values):
                    continue
                where = f"{path.name} line {reader.line_num}"
                if len(values) != len(header):
                    raise InvalidDemandFile(f"{where}: {len(values)} field(s), expected {len(header)}")
                name = values[col["series"]].strip()
                try:
                    day = date.fromisoformat(values[col["date"]].strip()).toordinal()
                except ValueError:
                    raise InvalidDemandFile(f"{where}: date {values[col['date']]!r} is not YYYY-MM-DD") from None
                raw = values[col["value"]].strip()
                try:
                    value = float(raw) if raw else float("nan")
                except ValueError:
                    raise InvalidDemandFile(f"{where}: value {raw!r} is not a number") from None
                if raw and (not np.isfinite(value) or value < 0):
                    raise InvalidDemandFile(f"{where}: value {raw!r} is not a finite number >= 0")
                if name not in index:
                    index[name] = len(index)
                    lines.append(values[col["line"]].strip() if "line" in col else name)
                rows.append((index[name], day, value))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, gzip.BadGzipFile) as exc:
        raise InvalidDemandFile(f"{path.name}: unreadable ({exc})") from None
    if not rows:
        raise InvalidDemandFile(f"{path.name}: no data rows")
    data = np.array(rows, dtype=np.float64)
    first = int(data[:, 1].min())
    days = int(data[:, 1].max()) - first + 1
    values = np.full((len(index), days), np.nan)
    values[data[:, 0].astype(np.int64), data[:, 1].astype(np.int64) - first] = data[:, 2]
    return LongData(values, list(index), lines, date.fromordinal(first))
