"""The docs stay true and findable: README.md stays short and links into docs/, every relative link
resolves, and each page's checkable content (settings, routes, commands, processes, deploy files,
troubleshooting, layout) matches the code it describes."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
# Beside the checkout: /work/shared for /work/main, one level up for a worktree in /work/wt/<name>.
OLD_GUIDE = next(
    (
        path
        for base in (ROOT.parent, ROOT.parent.parent)
        if (path := base / "shared" / "seed" / "celery-scheduler-guide.md").exists()
    ),
    ROOT.parent / "shared" / "seed" / "celery-scheduler-guide.md",
)
README_MAX_LINES = 200
# The pages README.md sends a newcomer to; each must exist and be linked from it.
PAGES = (
    "docs/operations.md",
    "docs/configuration.md",
    "docs/api.md",
    "docs/forecast-engine.md",
    "docs/guarantees.md",
    "bench/README.md",
)
LINKED_FILES = [README, *sorted(DOCS.glob("*.md")), ROOT / "bench" / "README.md"]

# The old guide's troubleshooting headings and ours for the same problem (docs/operations.md).
TROUBLESHOOTING = {
    "Worker not picking up tasks": "Worker not picking up runs",
    "Task execution fails": "A run fails",
    "Beat not triggering tasks": 'Scheduler not firing runs (what "Beat not triggering tasks" was)',
    "Redis connection refused": "Redis connection refused",
}


def read(relative: str) -> str:
    return (ROOT / relative).read_text()


def section(relative: str, heading: str) -> str:
    """The body of a `## heading` section of a doc file, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", read(relative), re.MULTILINE | re.DOTALL)
    assert match, f"{relative} has no '## {heading}' section"
    return match.group(1)


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # without the header


# --- README.md: short, and the way into docs/ ------------------------------------------------------


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the rest belongs in docs/"


def test_readme_links_every_page():
    targets = {target.split("#")[0] for _, target in links(README)}
    for page in PAGES:
        assert page in targets, f"README.md does not link {page}"
        assert (ROOT / page).exists(), page


def test_readme_names_the_two_commands():
    body = section("README.md", "Two commands")
    assert "make run" in body and "make test" in body
    makefile = read("Makefile")
    assert re.search(r"^run:", makefile, re.MULTILINE) and re.search(r"^test:", makefile, re.MULTILINE)


def test_readme_diagrams_show_the_processes_and_the_layers():
    body = section("README.md", "How it fits together")
    diagrams = re.findall(r"^```\n(.*?)^```", body, re.MULTILINE | re.DOTALL)
    assert len(diagrams) == 2, "a process diagram and a layering diagram, as plain text blocks"
    processes, layers = diagrams
    procfile = {line.split(":", 1)[0] for line in read("Procfile").splitlines() if line.strip()}
    for node in (*procfile, "Redis", "PostgreSQL", "SQLite", "forecast", "reports", "maintenance", "default"):
        assert node in processes, node
    for layer in (
        "adapters",
        "service",
        "core",
        "storage",
        "HTTP",
        "CLI",
        "scheduler",
        "job functions",
        "run lifecycle",
        "forecast engine",
        "Redis",
        "database",
    ):
        assert layer in layers, layer


def test_every_path_in_the_layout_exists():
    for row in table_rows(section("README.md", "Layout")):
        for path in re.findall(r"`([^`]+)`", row[0]):
            assert (ROOT / path).exists(), f"README.md's layout names {path}, which does not exist"


# --- links ----------------------------------------------------------------------------------------


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative Markdown link outside code blocks."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # not http:, https:, mailto:
                out.append((number, target))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    """The anchors of a file's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    found, counts, fenced = set(), {}, False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^#{1,6} (.+?)\s*#*$", line)
        if match:
            base = slug(match.group(1))
            found.add(f"{base}-{counts[base]}" if base in counts else base)
            counts[base] = counts.get(base, 0) + 1
    return frozenset(found)


@pytest.mark.parametrize("doc", LINKED_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path):
    broken = []
    for number, target in links(doc):
        file_part, _, anchor = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.exists():
            broken.append(f"line {number}: {target} (no such file)")
        elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
            broken.append(f"line {number}: {target} (no such heading)")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def test_slug_follows_github():
    assert (
        slug('Scheduler not firing runs (what "Beat not triggering tasks" was)')
        == "scheduler-not-firing-runs-what-beat-not-triggering-tasks-was"
    )
    assert slug("Processes (`Procfile`)") == "processes-procfile"
    assert slug("systemd (one or more Debian/Ubuntu hosts)") == "systemd-one-or-more-debianubuntu-hosts"


def test_every_test_file_the_docs_name_exists():
    for doc in LINKED_FILES:
        for name in re.findall(r"tests/test_\w+\.py", doc.read_text()):
            assert (ROOT / name).exists(), f"{doc.relative_to(ROOT)} names {name}, which does not exist"


# --- docs/configuration.md: the table is app/config.py's settings -----------------------------------

CONFIGURATION = ("docs/configuration.md", "Environment variables")


def documented_variables() -> set[str]:
    names = set()
    for row in table_rows(section(*CONFIGURATION)):
        names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", row[0]))
    return names


def test_every_setting_is_in_the_configuration_table():
    fields = {name.upper() for name in Settings.model_fields}
    missing = fields - documented_variables()
    assert not missing, f"settings missing from docs/configuration.md's table: {sorted(missing)}"


def test_every_variable_in_the_table_is_a_setting():
    fields = {name.upper() for name in Settings.model_fields}
    unknown = documented_variables() - fields
    assert not unknown, f"docs/configuration.md documents variables app/config.py does not read: {sorted(unknown)}"


def test_documented_simple_defaults_match_the_settings():
    defaults = Settings(_env_file=None)
    for row in table_rows(section(*CONFIGURATION)):
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", row[0])
        if not re.fullmatch(r"`[^`]*`(, `[^`]*`)*", row[1]):
            continue  # prose defaults ("generated by make run", "SQLite file ...", "empty")
        values = re.findall(r"`([^`]*)`", row[1])
        assert len(names) == len(values), row
        for name, value in zip(names, values):
            actual = getattr(defaults, name.lower())
            if isinstance(actual, bool):
                assert value == str(int(actual)), name
            elif isinstance(actual, (int, float)):
                assert float(value) == float(actual), name
            else:
                assert value == actual, name


# --- docs/api.md: the routes, jobs and commands the app has ------------------------------------------


@pytest.fixture(scope="module")
def bare_app():
    """The app without servers: enough for its routes, CLI commands and job list."""
    from app import create_app
    from app.config import configure

    app = create_app({"database_url": "sqlite:///:memory:"})
    yield app
    configure(None)


def _route_key(method: str, path: str) -> tuple[str, str]:
    return method, re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path.split("?")[0])


def test_routes_table_matches_the_app(bare_app):
    public = ("/api/", "/metrics", "/healthz", "/readyz")
    served = {
        _route_key(method, rule.rule)
        for rule in bare_app.url_map.iter_rules()
        if rule.rule.startswith(public)
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = set()
    for row in table_rows(section("docs/api.md", "Routes")):
        documented.update(_route_key(row[0], path) for path in re.findall(r"`(/[^`]*)`", row[1]))
    assert served - documented == set(), f"routes missing from docs/api.md: {sorted(served - documented)}"
    assert documented - served == set(), f"docs/api.md documents routes the app lacks: {sorted(documented - served)}"


def test_jobs_table_matches_the_jobs_route(bare_app):
    jobs = bare_app.test_client().get("/api/jobs").get_json()["jobs"]
    rows = {row[0].strip("`"): row for row in table_rows(section("docs/api.md", "Jobs and runs"))}
    assert set(rows) == {job["name"] for job in jobs}
    for job in jobs:
        name, task, queue, schedule = rows[job["name"]]
        assert (task.strip("`"), queue) == (job["task"], job["queue"]), name
        assert schedule.startswith(f"`{job['cron']}`"), name


def test_every_operator_command_is_documented(bare_app):
    commands = set(bare_app.cli.list_commands(None)) - {"routes", "run", "shell"}
    documented = set()
    for row in table_rows(section("docs/api.md", "Operator commands")):
        documented.update(re.findall(r"`([a-z][a-z-]*)[ `]", row[0]))
    assert commands <= documented, f"undocumented commands: {sorted(commands - documented)}"


# --- docs/operations.md: processes, deployment, upgrades, logs, troubleshooting ---------------------

OPERATIONS = "docs/operations.md"


def test_architecture_diagram_is_mermaid():
    body = section(OPERATIONS, "Architecture")
    assert "```mermaid" in body and "flowchart" in body
    for node in ("release", "web", "scheduler", "worker", "Redis", "PostgreSQL"):
        assert node in body


def test_processes_table_matches_the_procfile():
    procfile = dict(line.split(": ", 1) for line in read("Procfile").splitlines() if line.strip())
    rows = {row[0].strip("`"): row[1].strip("`") for row in table_rows(section(OPERATIONS, "Processes (`Procfile`)"))}
    assert rows == procfile


def test_deploy_files_named_in_the_docs_exist():
    body = section(OPERATIONS, "Deploying")
    for path in ("deploy/systemd/forecast.env.example", "deploy/Dockerfile", "docker-compose.yml", ".python-version"):
        assert (ROOT / path).exists(), path
        assert path.rsplit("/", 1)[-1] in body, path
    for unit in re.findall(r"`(forecast[-\w@.]*\.(?:service|target))`", body):
        assert (ROOT / "deploy" / "systemd" / unit).exists(), unit
    assert "REDIS_SSL_CERT_REQS=none" in body and "heroku ps:scale" in body


def test_upgrade_notes_and_logs_sections_exist():
    assert "migrate --list" in section(OPERATIONS, "Upgrading")
    logs = section(OPERATIONS, "Logs")
    assert "LOG_FORMAT=json" in logs and "job_id" in logs


def test_troubleshooting_mirrors_the_old_guide():
    body = section(OPERATIONS, "Troubleshooting")
    headings = re.findall(r"^### (.+)$", body, re.MULTILINE)
    for ours in TROUBLESHOOTING.values():
        assert ours in headings
    if not OLD_GUIDE.exists():
        pytest.skip("the old guide (shared/seed) is not beside this checkout")
    guide = OLD_GUIDE.read_text()
    old = re.search(r"^## .*Troubleshooting\n(.*?)(?=^## |^---|\Z)", guide, re.MULTILINE | re.DOTALL).group(1)
    assert set(re.findall(r"^### (.+)$", old, re.MULTILINE)) == set(TROUBLESHOOTING)


# --- docs/guarantees.md ---------------------------------------------------------------------------


def test_guarantees_name_how_each_was_tested():
    text = read("docs/guarantees.md")
    assert text.startswith("# What the service guarantees, and how it was tested\n")
    assert "How each was tested" in text
