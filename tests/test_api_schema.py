"""Property-based: schemathesis drives every documented route with generated input.

No response may be a 5xx, and every response must match the OpenAPI document (status, content
type, body schema), with the token and without credentials (authentication failures).
Times and days are drawn from tests/test_fuzz_inputs.py's extremes (year 1 and 9999, offsets
up to ±23:59, malformed ones), not only well-behaved ISO strings; that file fuzzes what the
document does not describe, on both databases.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import TEST_TOKEN
from tests.test_fuzz_inputs import TIME_EDGES, times

schemathesis.openapi.format("date-time", times())
schemathesis.openapi.format(
    "date",
    st.one_of(
        st.sampled_from(
            ["0001-01-01", "9999-12-31", "2024-02-29", "2023-02-29", "0000-01-01", "2026-13-01"] + TIME_EDGES
        ),
        st.dates().map(lambda d: d.isoformat()),
    ),
)

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)


@pytest.fixture
def database_url(tmp_path):
    """SQLite is enough here: the routes' validation is what is exercised."""
    return f"sqlite:///{tmp_path / 'schema.db'}"


def operations(app):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 8
    return found


SHARES = 4  # the operations are checked in this many tests, so parallel workers share the work


@pytest.mark.parametrize("share", range(SHARES))
@pytest.mark.parametrize("credentials", ["token", "none"])
def test_every_operation_conforms(app, credentials, share):
    """Every operation, in one of SHARES tests (operation i in share i % SHARES)."""
    headers = {"Authorization": f"Bearer {TEST_TOKEN}"} if credentials == "token" else None
    for operation in operations(app)[share::SHARES]:

        @FUZZ
        @given(case=operation.as_strategy())
        def check(case):
            # An opaque cursor cannot be described by a schema: a well-formed string may still be
            # no cursor we issued, and answering it 400 is right.
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        check()
