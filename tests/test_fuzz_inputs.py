"""Extreme input on every route, on SQLite and PostgreSQL: never a 5xx, and a refusal changes nothing.

tests/test_api_schema.py lets schemathesis generate what the OpenAPI document describes; this
file generates what it does not: the extremes a client or an attacker can send (integers past
64 bits, inf/nan, NUL, lone surrogates, right-to-left marks, 10,000-character strings, JSON
nested 5,000 deep, times at the ends of the calendar with odd offsets, cursors holding any JSON)
in every path segment, query parameter and body of every route the app serves (the API,
/healthz, /readyz, /metrics and the project dashboard; rq-dashboard's own routes under
/dashboard/rq are not fuzzed here: their input handling is rq-dashboard's, behind the guard in
dashboard/__init__.py). Each 4xx must be a JSON error with a message, and must leave every
table's row count and Redis's keys as they were. The examples are derandomized (same inputs
every run) and bounded: about 25 s of CPU for both databases together.
"""

from __future__ import annotations

import base64
import json
import string
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.models import ALL_MODELS, Alert, DailySummary, JobRun
from tests.conftest import DASHBOARD_PASSWORD, DASHBOARD_USER, TEST_TOKEN

# Routes with query parameters or a body get more examples than those with path segments only.
EXAMPLES_WITH_INPUTS, EXAMPLES_OTHERWISE = 20, 6


def fuzz_settings(route) -> settings:
    examples = EXAMPLES_WITH_INPUTS if route[3] or route[4] else EXAMPLES_OTHERWISE
    return settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )


ORIGIN = "http://localhost"
DASHBOARD_AUTH = "Basic " + base64.b64encode(f"{DASHBOARD_USER}:{DASHBOARD_PASSWORD}".encode()).decode()
RUN_IDS = ["seeded-run-000", "seeded-run-001", "seeded-run-002"]

# -- strategies ---------------------------------------------------------------------------------
INT_EDGES = [0, -1, 1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**30)]
FLOAT_EDGES = [
    "inf",
    "-inf",
    "nan",
    "NaN",
    "Infinity",
    "1e308",
    "1e309",
    "-1e309",
    "4.9e-324",
    "-0.0",
    "0x10",
    "1_000",
    "٣",
    "१२",
    "1" * 5000,
    "-" + "9" * 4400,
]
TEXT_EDGES = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "x\udc80y",
    "\u202egnp.exe",
    "\u200f\u05d0\u05d1",
    "\ufeff",
    "\u0301",
    "💥" * 50,
    "A" * 10000,
    "' OR 1=1 --",
    "%00",
    "%",
    "../../etc/passwd",
    "\n\r\t",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "\\",
    "\x7f\x1b[31m",
    "null",
    "true",
    "[]",
    "{}",
]
TIME_EDGES = [
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59.999999-00:01",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "0000-01-01T00:00:00",
    "10000-01-01T00:00:00",
    "2026-02-30T00:00:00",
    "2026-01-01T24:00:00",
    "2026-12-31T23:59:60Z",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00+99:99",
    "2026-01-01T00:00:00.1234567890123Z",
    "2026-01-01",
    "-2026-01-01T00:00:00",
    "+2026-01-01T00:00:00",
    "1e20",
    "-1e20",
    "99999999999999999999",
    "-62135596801",
    "253402300800",
    "2026-W01-1",
    "now",
    "2026-01-01T00:00:00\x00",
    "２０２６-01-01T00:00:00",
]
JOB_NAMES = ["forecast", "daily-summary", "cleanup"]
AUTH_EDGES = [
    "",
    "Bearer",
    "Bearer ",
    "Bearer \t",
    "bearer " + "x" * 5000,
    "Basic",
    "Basic !!!!",
    "Basic =",
    "Basic " + base64.b64encode(b":").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:\xed\xa0\x80").decode(),
    "Basic " + base64.b64encode(b"operator").decode(),
    "Digest username=x",
    "Bearer \xe9\xff",
    "Negotiate " + "A" * 3000,
]
# Characters the generated text draws from: printable ASCII plus the troublemakers.
ALPHABET = st.one_of(
    st.sampled_from(string.printable),
    st.sampled_from(["\x00", "\ud800", "\udfff", "\u202e", "\u200f", "\ufeff", "é", "💥"]),
    st.characters(codec="utf-8"),
)


def texts() -> st.SearchStrategy[str]:
    """Any text a client can send, weighted to the edges."""
    return st.one_of(
        st.sampled_from(TEXT_EDGES),
        st.sampled_from([str(i) for i in INT_EDGES] + FLOAT_EDGES + TIME_EDGES),
        st.text(ALPHABET, max_size=40),
        st.builds(lambda s, n: s * n, st.text(ALPHABET, min_size=1, max_size=3), st.integers(50, 400)),
    )


def times() -> st.SearchStrategy[str]:
    """ISO 8601 times anywhere in the calendar with any offset up to ±23:59, and malformed ones."""
    offsets = st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))
    aware = st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(), offsets)
    return st.one_of(
        st.sampled_from(TIME_EDGES),
        aware,
        st.datetimes().map(datetime.isoformat),
        st.datetimes().map(lambda d: d.isoformat() + "Z"),
    )


def json_values(max_leaves: int = 8) -> st.SearchStrategy:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(INT_EDGES),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(TEXT_EDGES),
        times(),
        st.text(ALPHABET, max_size=20),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(ALPHABET, max_size=8), inner, max_size=3)
        ),
        max_leaves=max_leaves,
    )


def deep(depth: int, opener: str = "[", closer: str = "]", core: str = "1") -> str:
    return opener * depth + core + closer * depth


def raw_json(value) -> str:
    """JSON as a client may write it: inf/nan as Python writes them, lone surrogates as escapes."""
    return json.dumps(value, allow_nan=True)


def cursors() -> st.SearchStrategy[str]:
    """Cursors in the service's format (base64url of a JSON array) holding anything, and junk."""

    def encode(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")

    issued_times = st.one_of(st.just("2026-11-01T00:00:00"), st.datetimes().map(datetime.isoformat))
    pair = st.builds(
        lambda at, row_id: raw_json([at, row_id]),
        st.one_of(issued_times, times(), json_values(2)),
        st.one_of(st.sampled_from(INT_EDGES), st.sampled_from(TEXT_EDGES), json_values(3), st.sampled_from(RUN_IDS)),
    )
    nested = st.integers(1, 5000).map(deep)
    issued = pair.map(encode)
    return st.one_of(issued, issued, issued, nested.map(encode), json_values().map(raw_json).map(encode), texts())


def bodies() -> st.SearchStrategy[bytes]:
    """Request bodies: JSON objects with odd members, deep nesting, huge numbers, invalid UTF-8."""
    force = st.one_of(st.booleans(), json_values(), st.sampled_from(INT_EDGES))
    objects = st.builds(
        lambda f, extra: raw_json({"force": f, **extra}),
        force,
        st.dictionaries(st.text(ALPHABET, max_size=10), json_values(2), max_size=2),
    )
    text = st.one_of(
        objects,
        json_values().map(raw_json),
        st.integers(1, 6000).map(deep),
        st.integers(1, 6000).map(lambda n: '{"force": ' + deep(n, '{"a":', "}") + "}"),
        st.integers(1, 6000).map(lambda n: '{"force": ' + deep(n) + "}"),
        st.integers(4000, 20000).map(lambda n: '{"force": ' + "9" * n + "}"),
        st.sampled_from(
            [
                '{"force": 1e999999}',
                '{"force": -1e999999}',
                '{"force": NaN}',
                '{"force": Infinity}',
                '{"\\ud800": true}',
                '{"force": "\\u0000"}',
                '{"force": true, "force": false}',
                '{"force": true}',
                "{}",
                "",
                " ",
                "null",
                '"\\udfff"',
                "{" * 3,
                "]",
                "\x00",
            ]
        ),
        texts(),
    )
    invalid_utf8 = st.sampled_from([b"\xff\xfe", b'{"force": "\xed\xa0\x80"}', b"\xc0\xaf", b'{"force": tru\xe9}'])
    return st.one_of(text.map(lambda t: t.encode("utf-8", "surrogatepass")), invalid_utf8, st.binary(max_size=64))


def segment(valid: list[str]) -> st.SearchStrategy[str]:
    """A path segment: a valid value half the time, else anything (percent-encoded as sent)."""
    return st.one_of(st.sampled_from(valid), texts())


def query_strings(names: list[str], values: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[str]:
    """A query string of known and unknown names with extreme values, some repeated."""
    name = st.one_of(st.sampled_from(names), st.sampled_from(names), texts()) if names else texts()

    def value_for(key: str) -> st.SearchStrategy[str]:  # mostly the extremes of that parameter
        return st.one_of(values[key], values[key], values[key], texts()) if key in values else texts()

    pair = name.flatmap(lambda key: st.tuples(st.just(key), value_for(key)))

    def encode(pairs: list[tuple[str, str]]) -> str:
        return "&".join(f"{_pct(k)}={_pct(v)}" for k, v in pairs)

    return st.lists(pair, max_size=4).map(encode)


def _pct(text: str) -> str:
    """Percent-encode text as UTF-8; lone surrogates as the bytes a careless client would send."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


LISTING_VALUES = {
    "limit": st.one_of(st.sampled_from([str(i) for i in INT_EDGES] + FLOAT_EDGES), texts()),
    "cursor": cursors(),
    "since": times(),
    "date": times(),
    "status": st.sampled_from(["queued", "finished", "bogus"]),
    "trigger": st.sampled_from(["manual", "scheduled", "cron"]),
    "severity": st.sampled_from(["high", "low", "urgent"]),
    "source": texts(),
    "type": texts(),
    "q": st.one_of(st.sampled_from(RUN_IDS + ["seeded"]), texts()),
    "job": st.one_of(st.sampled_from(["forecast", "cleanup", "", "nope"]), texts()),
    "until": times(),
    "error": texts(),
    "window": st.one_of(st.sampled_from(["24h", "7d", "30d", "1y", ""]), texts()),
    "state": st.one_of(st.sampled_from(["open", "acknowledged", "resolved", "closed"]), texts()),
    "kind": st.one_of(st.sampled_from(["run_failed", "worker_lost", "nope", ""]), texts()),
}
ALERT_IDS = ["1", "30"]
RUN_FILTERS = ["limit", "cursor", "job", "status", "trigger", "since", "until", "error"]

# Every route the app serves outside rq-dashboard: (method, rule, strategies of its path arguments,
# query parameter names, whether it takes a body, who may call it).
ROUTES = [
    ("GET", "/healthz", {}, [], False, "none"),
    ("GET", "/readyz", {}, [], False, "none"),
    ("GET", "/metrics", {}, [], False, "token"),
    ("GET", "/api/openapi.json", {}, [], False, "none"),
    ("GET", "/api/jobs", {}, [], False, "token"),
    ("GET", "/api/jobs/stats", {}, [], False, "token"),
    (
        "GET",
        "/api/jobs/<job_name>/history",
        {"job_name": JOB_NAMES},
        ["limit", "cursor", "status", "trigger"],
        False,
        "token",
    ),
    ("GET", "/api/jobs/<job_name>/<run_id>", {"job_name": JOB_NAMES, "run_id": RUN_IDS}, [], False, "token"),
    ("POST", "/api/jobs/<job_name>/trigger", {"job_name": JOB_NAMES}, [], True, "token"),
    ("POST", "/api/jobs/<job_name>/<run_id>/cancel", {"job_name": JOB_NAMES, "run_id": RUN_IDS}, [], True, "token"),
    ("GET", "/api/alerts", {}, ["limit", "cursor", "source", "severity", "type", "state", "since"], False, "token"),
    ("GET", "/api/reports", {}, ["limit", "cursor"], False, "token"),
    ("GET", "/api/reports/daily", {}, ["date"], False, "token"),
    ("GET", "/api/schedules", {}, [], False, "token"),
    ("GET", "/api/forecast/accuracy", {}, ["limit", "line"], False, "token"),
    ("GET", "/api/audit", {}, ["limit", "cursor", "actor", "action", "source", "since", "until"], False, "token"),
    ("POST", "/api/schedules/<name>/pause", {"name": JOB_NAMES}, [], True, "token"),
    ("POST", "/api/schedules/<name>/resume", {"name": JOB_NAMES}, [], True, "token"),
    ("POST", "/api/schedules/<name>/run", {"name": JOB_NAMES}, [], True, "token"),
    ("GET", "/dashboard/", {}, [], False, "dashboard"),
    (
        "GET",
        "/dashboard/static/<path:filename>",
        {"filename": ["dashboard.js", "dashboard.css"]},
        [],
        False,
        "dashboard",
    ),
    ("GET", "/dashboard/data.json", {}, [], False, "dashboard"),
    ("GET", "/dashboard/runs", {}, ["q", *RUN_FILTERS], False, "dashboard"),
    ("GET", "/dashboard/runs/<run_id>", {"run_id": RUN_IDS}, [], False, "dashboard"),
    ("GET", "/api/runs", {}, RUN_FILTERS, False, "token"),
    ("GET", "/dashboard/audit", {}, [], False, "dashboard"),
    (
        "GET",
        "/dashboard/audit/data.json",
        {},
        ["limit", "cursor", "actor", "action", "source", "since", "until"],
        False,
        "dashboard",
    ),
    ("POST", "/dashboard/schedules/<name>/pause", {"name": JOB_NAMES}, [], True, "dashboard"),
    ("POST", "/dashboard/schedules/<name>/resume", {"name": JOB_NAMES}, [], True, "dashboard"),
    ("POST", "/dashboard/schedules/<name>/run", {"name": JOB_NAMES}, [], True, "dashboard"),
    ("POST", "/dashboard/runs/<run_id>/cancel", {"run_id": RUN_IDS}, [], True, "dashboard"),
    ("POST", "/dashboard/runs/<run_id>/retry", {"run_id": RUN_IDS}, [], True, "dashboard"),
    ("GET", "/api/", {}, [], False, "none"),
    ("GET", "/api/docs", {}, [], False, "none"),
    ("GET", "/api/static/<path:filename>", {"filename": ["docs.js", "swagger-ui/swagger-ui.css"]}, [], False, "none"),
    ("GET", "/favicon.ico", {}, [], False, "none"),
    ("GET", "/api/health/summary", {}, [], False, "token"),
    ("GET", "/api/health/events", {}, ["kind", "limit"], False, "token"),
    ("GET", "/api/trends", {}, ["window", "job"], False, "token"),
    ("GET", "/api/alerts/<alert_id>", {"alert_id": ALERT_IDS}, [], False, "token"),
    ("POST", "/api/alerts/<alert_id>/acknowledge", {"alert_id": ALERT_IDS}, [], True, "token"),
    ("POST", "/api/alerts/<alert_id>/resolve", {"alert_id": ALERT_IDS}, [], True, "token"),
    ("GET", "/api/jobs/<job_name>/<run_id>/attempts", {"job_name": JOB_NAMES, "run_id": RUN_IDS}, [], False, "token"),
    ("POST", "/api/jobs/<job_name>/<run_id>/retry", {"job_name": JOB_NAMES, "run_id": RUN_IDS}, [], True, "token"),
    ("POST", "/api/jobs/<job_name>/retry-failed", {"job_name": JOB_NAMES}, ["since"], True, "token"),
    ("GET", "/dashboard/alerts", {}, ["state", "severity", "type", "cursor"], False, "dashboard"),
    ("GET", "/dashboard/alerts/<alert_id>", {"alert_id": ALERT_IDS}, [], False, "dashboard"),
    ("POST", "/dashboard/alerts/<alert_id>/acknowledge", {"alert_id": ALERT_IDS}, [], True, "dashboard"),
    ("POST", "/dashboard/alerts/<alert_id>/resolve", {"alert_id": ALERT_IDS}, [], True, "dashboard"),
    ("GET", "/dashboard/trends", {}, ["window"], False, "dashboard"),
    ("GET", "/dashboard/trends.json", {}, ["window"], False, "dashboard"),
]


def request_for(route) -> st.SearchStrategy[dict]:
    _, _, args, names, has_body, caller = route
    path_args = st.fixed_dictionaries({name: segment(valid) for name, valid in args.items()})
    credentials = st.sampled_from([True, True, True, False]) if caller != "none" else st.just(False)
    body = bodies() if has_body else st.just(b"")

    return st.builds(
        lambda *parts: _request(route, *parts), path_args, query_strings(names, LISTING_VALUES), body, credentials
    )


def _request(route, path_values: dict, query: str, payload: bytes, with_credentials: bool) -> dict:
    method, rule, _, _, _, caller = route
    path = rule
    for name, value in path_values.items():
        path = path.replace(f"<{name}>", _pct(value)).replace(f"<path:{name}>", _pct(value))
    headers = {}
    if with_credentials and caller != "none":
        headers["Authorization"] = f"Bearer {TEST_TOKEN}" if caller == "token" else DASHBOARD_AUTH
    if caller == "dashboard" and method == "POST":
        headers["Origin"] = ORIGIN
    return {
        "method": method,
        "path": path,
        "query_string": query,
        "data": payload,
        "headers": headers,
        "content_type": "application/json" if payload else None,
    }


# -- the state a refused request must leave as it was ------------------------------------------
def seed() -> None:
    base = datetime(2026, 11, 1)
    for i, run_id in enumerate(RUN_IDS):
        JobRun.create(
            id=run_id,
            job_name="forecast",
            queue="forecast",
            trigger="manual",
            status="finished" if i else "queued",
            enqueued_at=base + timedelta(hours=i),
            started_at=base + timedelta(hours=i),
            ended_at=base + timedelta(hours=i, minutes=1),
            attempts=1,
        )
    for i in range(60):
        Alert.create(
            type="spike",
            severity=("high", "medium", "low")[i % 3],
            title=f"alert {i}",
            message="m",
            subject=f"item-{i}",
            fingerprint=f"f{i}",
            created_at=base + timedelta(minutes=i),
            last_seen_at=base + timedelta(minutes=i),
        )
    for i in range(3):
        DailySummary.create(day=(base + timedelta(days=i)).date(), report={"alerts": {"total": i}}, job_id=None)


# The audit log is left out: it records refusals too, by design (app/core/audit.py).
COUNT_ROWS = "SELECT " + ", ".join(
    f'(SELECT COUNT(*) FROM "{m._meta.table_name}")' for m in ALL_MODELS if m._meta.table_name != "audit_log"
)


def state(redis) -> tuple:
    """Row counts of every table (one statement) and the number of Redis keys."""
    from app.connections import database

    return tuple(database.execute_sql(COUNT_ROWS).fetchone()), redis.dbsize()


def check(client, redis, request: dict) -> None:
    before = state(redis)
    response = client.open(
        request["path"],
        method=request["method"],
        query_string=request["query_string"],
        data=request["data"],
        headers=request["headers"],
        content_type=request["content_type"],
    )
    shown = (
        f"{request['method']} {request['path'][:300]}?{request['query_string'][:300]!r} "
        f"body {request['data'][:100]!r} -> {response.status_code} {response.get_data()[:300].decode(errors='replace')}"
    )
    assert response.status_code < 500, shown
    if response.status_code >= 400:
        assert response.mimetype == "application/json", shown
        error = response.get_json()["error"]
        assert isinstance(error["code"], str) and error["code"], shown
        assert isinstance(error["message"], str) and error["message"].strip(), shown
        # Quoted input is escaped: no control, bidi or lone surrogate characters reach a client's log.
        assert error["message"].isprintable(), shown
        assert state(redis) == before, f"a refused request changed rows or Redis keys: {shown}"


def test_every_route_is_fuzzed(app):
    served = {rule.rule for rule in app.url_map.iter_rules() if not rule.endpoint.startswith("rq_dashboard")}
    assert served == {route[1] for route in ROUTES}


def edge_requests() -> list[dict]:
    """Every edge value in every input of every route, one input at a time (the others valid)."""
    cursor_edges = [
        _cursor(raw_json([at, row_id]))
        for at in ("2026-11-01T00:00:00", "2026-11-01T00:00:00.000001")
        for row_id in [*INT_EDGES, *TEXT_EDGES[:12], 1.5, None, [], {}, RUN_IDS[1]]
    ]
    cursor_edges += [_cursor(raw_json([at, 1])) for at in TIME_EDGES] + [_cursor(deep(5000))] + TEXT_EDGES
    by_name = {
        "limit": [str(i) for i in INT_EDGES] + FLOAT_EDGES,
        "cursor": cursor_edges,
        "since": TIME_EDGES,
        "until": TIME_EDGES,
        "date": TIME_EDGES + ["2026-11-01", "0001-01-01", "9999-12-31"],
        "q": TEXT_EDGES,
    }
    body_edges = [
        b"[" * 5000 + b"]" * 5000,
        ('{"force": ' + deep(5000, '{"a":', "}") + "}").encode(),
        b'{"force": ' + b"9" * 5000 + b"}",
        b'{"force": 1e999999}',
        b'{"\\ud800": true}',
        b'{"force": "\\u0000"}',
        b"\xff\xfe",
        b'{"force": "\xed\xa0\x80"}',
        b"{}",
        b"null",
    ]
    out = []
    for route in ROUTES:
        _, _, args, names, has_body, _ = route
        valid = {name: values[0] for name, values in args.items()}
        variants = [(dict(valid, **{name: edge}), "", b"") for name in args for edge in TEXT_EDGES]
        variants += [
            (valid, f"{_pct(name)}={_pct(edge)}", b"") for name in names for edge in by_name.get(name, TEXT_EDGES)
        ]
        variants += [(valid, f"{_pct(edge)}=1", b"") for edge in TEXT_EDGES[:8]]  # unknown names
        variants += [(valid, "", body) for body in (body_edges if has_body else [])]
        out += [_request(route, path_values, query, body, True) for path_values, query, body in variants]
        for header in AUTH_EDGES:  # credentials as odd as a header can carry (latin-1 text)
            request = _request(route, valid, "", b"", False)
            out.append({**request, "headers": {**request["headers"], "Authorization": header}})
    return out


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def test_every_edge_value_in_every_input(app, client, redis):
    seed()
    failures = []
    for request in edge_requests():
        try:
            check(client, redis, request)
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0][:500])
    assert not failures, f"{len(failures)} failing requests:\n" + "\n".join(failures[:30])


def test_random_extreme_input_never_fails_and_refusals_change_nothing(app, client, redis):
    seed()
    failures = []
    for route in ROUTES:

        @fuzz_settings(route)
        @given(request=request_for(route))
        def fuzz(request):
            check(client, redis, request)

        try:
            fuzz()
        except AssertionError as exc:  # collect every route's first failure, then fail once
            failures.append(f"{route[0]} {route[1]}: {str(exc).splitlines()[0][:600]}")
    assert not failures, "\n".join(failures)
