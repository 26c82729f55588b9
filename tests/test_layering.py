"""Layering the architecture relies on: the worker and scheduler never import Flask, and no module imports in a circle.

A worker that imports the web layer drags Flask, the API and prometheus into every work-horse
(and their import-time side effects); an import circle makes the start-up order matter. Both
are checked on the real modules: the first in a fresh interpreter, the second on the source.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WEB_MODULES = ("flask", "werkzeug", "prometheus_client", "rq_dashboard", "app.api", "app.metrics", "dashboard")

# A circle inside the forecast engine (a deferred import in capacity.py), owned by the engine's
# own work; listed so that it is the only one tolerated.
KNOWN_CYCLES: set[frozenset[str]] = {frozenset({"app.forecast.engine", "app.forecast.engine.capacity"})}


def loaded_after(code: str) -> list[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def web_modules(loaded: list[str]) -> list[str]:
    return [m for m in loaded if any(m == w or m.startswith(w + ".") for w in WEB_MODULES)]


def test_the_worker_process_never_imports_flask_or_the_api():
    loaded = loaded_after(
        "import workers.worker, workers.jobs, workers.forecast_chunks, app.runs, app.worker_resources\n"
        "workers.worker.preload()\n"
    )
    assert "workers.worker" in loaded and "app.runs.fanout" in loaded
    assert web_modules(loaded) == []


def test_the_scheduler_never_imports_flask():
    loaded = loaded_after("import scheduler")
    assert "scheduler" in loaded and "app.runs" in loaded
    assert web_modules(loaded) == []


def _modules() -> dict[str, Path]:
    files = [*ROOT.glob("app/**/*.py"), *ROOT.glob("workers/*.py"), *ROOT.glob("dashboard/*.py"), ROOT / "scheduler.py"]
    out = {}
    for path in files:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Every import between the project's modules, including those deferred into functions."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in modules:
                        deps.add(full)
                    elif node.module in modules:
                        deps.add(node.module)
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]


def test_no_module_imports_in_a_circle():
    graph = import_graph()
    assert {"app.runs.lock", "app.runs.fanout", "workers.forecast_chunks"} <= set(graph)
    assert [sorted(c) for c in cycles(graph) if c not in KNOWN_CYCLES] == []


def test_the_run_lifecycle_imports_no_web_cli_or_worker_module():
    graph = import_graph()
    for name, deps in graph.items():
        if name == "app.runs" or name.startswith("app.runs."):
            bad = [
                d
                for d in deps
                if d.startswith(
                    (
                        "app.api",
                        "app.cli",
                        "app.metrics",
                        "dashboard",
                        "workers.worker",
                        "workers.jobs",
                        "workers.forecast_chunks",
                    )
                )
            ]
            assert bad == [], f"{name} imports {bad}"


def _third_party_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_import_the_worker_or_scheduler_may_ever_run_reaches_flask():
    """Deferred imports too (the heartbeat once imported app.metrics, hence Flask, at run time)."""
    graph, modules = import_graph(), _modules()
    reach, todo = set(), ["workers.worker", "workers.jobs", "workers.forecast_chunks", "scheduler"]
    while todo:
        name = todo.pop()
        if name not in reach:
            reach.add(name)
            todo.extend(graph[name])
    assert {"app.runs.cancel", "app.worker_resources"} <= reach
    assert web_modules(sorted(reach)) == []
    assert [m for m in reach if _third_party_imports(modules[m]) & {"flask", "werkzeug", "prometheus_client"}] == []


def test_the_service_layer_imports_no_web_cli_or_worker_code():
    """app.core: the use cases raise domain errors; Flask, click and the RQ worker stay in the adapters."""
    graph, modules = import_graph(), _modules()
    reach, todo = set(), [m for m in graph if m == "app.core" or m.startswith("app.core.")]
    while todo:
        name = todo.pop()
        if name not in reach:
            reach.add(name)
            todo.extend(graph[name])
    assert {"app.core.jobs", "app.core.schedules", "app.core.reports", "app.core.stats", "app.runs.cancel"} <= reach
    adapters = (
        "app.api",
        "app.errors",
        "app.auth",
        "app.cli",
        "app.cli_ops",
        "app.metrics",
        "dashboard",
        "workers.worker",
        "workers.jobs",
    )
    assert [m for m in reach if m.startswith(adapters)] == []
    assert [m for m in reach if _third_party_imports(modules[m]) & {"flask", "werkzeug", "click"}] == []


def test_the_scheduler_reaches_runs_and_rows_through_the_service_layer():
    """scheduler.py is a module, outside import-linter's packages: its layer is checked here. It fires
    slots, records missed ones and reconciles through `app.core.scheduled`; of the run lifecycle it
    uses only the lock-release script of `app.runs.keys` for its own loop lock."""
    deps = import_graph()["scheduler"]
    assert "app.core.scheduled" in deps
    upward_or_around = [
        d
        for d in deps
        if d.startswith(("app.api", "app.errors", "app.auth", "app.cli", "app.metrics", "dashboard", "workers"))
        or d == "app.models"
        or (d.startswith("app.runs") and d != "app.runs.keys")
    ]
    assert upward_or_around == []


def test_the_job_functions_call_the_report_and_cleanup_use_cases():
    deps = import_graph()["workers.jobs"]
    assert {"app.core.reports", "app.core.maintenance"} <= deps
    assert "app.models" not in deps


def test_the_import_contracts_in_pyproject_hold():
    """import-linter's contracts (pyproject.toml): the layers, and what the service layer, workers
    and engine may not import; a new upward import fails here as in `make check`."""
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT)}
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout and "Layers:" in done.stdout
