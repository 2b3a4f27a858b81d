"""``/api/graphql/`` fuzzed from its own schema (hypothesis-graphql): valid queries over every
root field with generated arguments, and queries with one schema violation each, against
the real app and database with data in it. Whatever is asked, the answer is HTTP 200 with
JSON, never an internal error: a refusal is a coded error (``BAD_USER_INPUT``, …)."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import graphql
import hypothesis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from hypothesis_graphql import Mode, queries
from rest_framework.test import APIClient

from outcomes.graphql.schema import schema

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FUZZ = hypothesis.settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure is reproducible, never flaky
    suppress_health_check=list(HealthCheck),
    database=None,
)
START = datetime(2025, 10, 24, tzinfo=UTC)


def _string(strategy):
    return strategy.map(lambda text: graphql.StringValueNode(value=text))


# Values the custom scalars take (the positive queries), which the REST checks may still
# refuse (a time that is not ISO 8601, a price out of range): those are BAD_USER_INPUT.
SCALARS = {
    "BigInt": st.integers(-(2**63), 2**63 - 1).map(lambda n: graphql.IntValueNode(value=str(n))),
    "DateTime": _string(
        st.one_of(
            st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)).map(
                datetime.isoformat
            ),
            st.sampled_from(["2025-10-24", "2025-10-24T12:00:00+14:00", "yesterday", "", "2025-13-40"]),
            st.text(max_size=30),
        )
    ),
    "Date": _string(st.text(alphabet=string.digits + "-", max_size=12)),
    "Decimal": st.one_of(
        _string(st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str)),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: graphql.FloatValueNode(value=repr(f))),
    ),
}
# And anything at all where a decimal goes (the negative queries).
ANY_SCALARS = {**SCALARS, "Decimal": st.one_of(SCALARS["Decimal"], _string(st.text(max_size=12)))}


@pytest.fixture
def data(outcome_factory):
    for hours, domain, won in ((1, "a.example", True), (30, "b.example", False), (50, None, True)):
        outcome_factory(
            3,
            site_domain=domain,
            win_status=won,
            win_price=Decimal("0.70") if won else None,
            experiment="floor-test",
            variant="B" if hours > 20 else "control",
            auction_timestamp=START + timedelta(hours=hours),
        )


def _check(query: str) -> dict:
    response = APIClient().post("/api/graphql/", {"query": query}, format="json")
    assert response.status_code in (200, 429), (response.status_code, query, response.content[:500])
    body = response.json()
    codes = [error.get("extensions", {}).get("code") for error in body.get("errors", [])]
    assert "INTERNAL_SERVER_ERROR" not in codes and None not in codes, (query, body)
    return body


def test_valid_queries_never_fail_inside(data):
    @FUZZ
    @given(queries(schema._schema, custom_scalars=SCALARS, mode=Mode.POSITIVE))
    def run(query):
        _check(query)

    run()


def test_queries_with_a_schema_violation_are_refused_as_the_clients(data):
    @FUZZ
    @given(queries(schema._schema, custom_scalars=ANY_SCALARS, mode=Mode.NEGATIVE))
    def run(query):
        body = _check(query)
        assert body.get("errors"), (query, body)

    run()
