"""Installs are reproducible: the locks pin every package with hashes and cover what the .in files ask for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Packages whose private parts the service overrides: pinned exactly in requirements.in.
OVERRIDDEN = {"rq", "rq-scheduler", "rq-dashboard", "peewee"}


def _name(line: str) -> str:
    return re.split(r"[<>=!~ ;\[]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _direct(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {_name(line): line for line in lines if line and not line.startswith("-")}


def _locked(path: Path) -> dict[str, str]:
    return {
        m[1].lower().replace("_", "-"): m[2]
        for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+) \\$", path.read_text(), re.M)
    }


@pytest.mark.parametrize(
    "source,lock", [("requirements.in", "requirements.txt"), ("requirements-dev.in", "requirements-dev.txt")]
)
def test_the_lock_pins_every_requirement_with_hashes(source, lock):
    text = (ROOT / lock).read_text()
    locked = _locked(ROOT / lock)
    missing = set(_direct(ROOT / source)) - set(locked)
    assert not missing, f"{lock} lacks {sorted(missing)}: run `make lock`"
    entries = re.findall(r"^[A-Za-z0-9_.\-]+==\S+ \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", text, re.M)
    assert len(entries) == len(locked), "every pinned package carries its hashes"
    assert "file:///" not in text and "--extra-index-url" not in text, "no machine-local index in the lock"


def test_packages_with_overridden_internals_are_pinned_exactly():
    direct = _direct(ROOT / "requirements.in")
    runtime = _locked(ROOT / "requirements.txt")
    for name in OVERRIDDEN:
        assert re.fullmatch(rf"{re.escape(name)}==\S+", direct[name]), direct[name]
        assert direct[name].split("==")[1] == runtime[name]


def test_the_dev_lock_keeps_the_runtime_versions():
    runtime, dev = _locked(ROOT / "requirements.txt"), _locked(ROOT / "requirements-dev.txt")
    assert {name: version for name, version in dev.items() if name in runtime} == runtime
