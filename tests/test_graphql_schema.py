"""The GraphQL API's contract and its pure parts (fast tier): the exported schema file is the
schema, each request's cost, the scalars, the types made from the REST serializers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from strawberry.printer import print_schema
from strawberry.utils.str_converters import to_camel_case

from outcomes.graphql import cost, types
from outcomes.graphql.schema import REPORTS, arguments, rest_value, schema
from outcomes.report_serializers import ReportStatsSerializer

pytestmark = pytest.mark.fast
ROOT = Path(__file__).resolve().parent.parent


def test_the_schema_file_is_the_schema():
    """``schema.graphql`` is the API's contract: a change to it is a change for clients."""
    assert (ROOT / "schema.graphql").read_text() == print_schema(schema), (
        "The GraphQL schema changed. If on purpose, run `make graphql-schema` and review the diff: a removed, "
        "renamed or retyped field or argument breaks clients."
    )


@pytest.mark.parametrize(
    ("query", "operation", "expected"),
    [
        ("{ stats { winRate } }", None, 1),
        ("{ __typename }", None, 1),
        ("{ __schema { types { name } } }", None, 1),
        ("{ a: stats { winRate } b: stats { winRate } reach { reach } }", None, 3),
        ("{ stats { winRate } stats { ecpm } }", None, 1),  # one field, merged
        ("query A { stats { winRate } } query B { stats { a: winRate } reach { reach } }", "B", 2),
        ("query A { stats { winRate } } query B { reach { reach } }", None, 1),  # ambiguous: refused when run
        (
            "{ ...F ... on Query { breakdown(by: currency) { by } } } fragment F on Query { x: stats { winRate } }",
            None,
            2,
        ),
        ("fragment F on Query { ...F stats { winRate } } { ...F }", None, 1),  # a cycle: refused when run
        ("{ stats { winRate }", None, 1),  # does not parse
        ("{ stats { winRate " + "__typename " * 50 + "} }", None, 1),
    ],
)
def test_a_request_costs_one_per_report_it_asks_for(query, operation, expected):
    assert cost.request_cost(query, operation, max_tokens=2000) == expected


def test_a_document_over_the_token_limit_costs_the_minimum_and_is_not_parsed_whole():
    assert cost.request_cost("{ " + "a: stats { winRate } " * 1000 + "}", None, max_tokens=2000) == 1


def test_every_report_field_takes_the_rest_parameters_in_camel_case():
    query = schema._schema.query_type
    for name, report in REPORTS.items():
        args = set(query.fields[to_camel_case(name)].args)
        expected = {to_camel_case(n) for n, _, _ in arguments(report.action)}
        assert args - {"key"} == expected, name
    assert {"siteDomain", "winStatus", "convertTo", "start", "end"} <= set(query.fields["stats"].args)
    assert "bidId" not in query.fields["stats"].args  # lists only, as in REST
    assert {"first", "after", "bidId", "ordering"} <= set(query.fields["outcomes"].args)
    assert "winStatus" not in query.fields["experimentResults"].args  # REST refuses it there
    assert str(query.fields["breakdown"].args["by"].type) == "BreakdownBy!"


def test_the_answer_types_carry_every_field_of_the_rest_serializer():
    stats = schema._schema.get_type("Stats")
    expected = {to_camel_case(n) for n in ReportStatsSerializer().fields}
    assert set(stats.fields) == expected
    assert str(stats.fields["currency"].type) == "String"  # allow_null
    assert str(stats.fields["totalOutcomes"].type) == "BigInt!"
    assert str(stats.fields["percentilesSample"].type) == "PriceSample"


def test_descriptions_speak_of_arguments_and_fields_in_camel_case():
    assert types.graphql_text("filter by `currency`, or ask for `convert_to`; see `mixed_currencies`.") == (
        "filter by `currency`, or ask for `convertTo`; see `mixedCurrencies`."
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (0.95, "0.95"), (1e-05, "1e-05"), (7, "7"), ("eur", "eur")],
)
def test_argument_values_become_the_rest_parameters(value, text):
    assert rest_value(value) == text


def test_scalars_refuse_what_rest_could_not_take():
    big_int = types.SCALARS[types.BigInt]
    assert big_int.parse_value(2**62) == 2**62
    for bad in (True, 2**63, "7", 1.5):
        with pytest.raises(ValueError, match="64-bit"):
            big_int.parse_value(bad)
    decimal = types.SCALARS[types.Decimal]
    assert decimal.parse_value("1.50") == "1.50" and decimal.parse_value(2) == "2"
    for bad in ("abc", True, None, [1]):
        with pytest.raises(ValueError, match="decimal"):
            decimal.parse_value(bad)
    with pytest.raises(ValueError, match="ISO 8601"):
        types.SCALARS[types.DateTime].parse_value(20251025)


def test_descriptions_speak_of_graphql_errors_not_http_statuses():
    """REST's help texts say "a 409"; a GraphQL client gets an error with a code instead."""
    assert types.graphql_text("A missing rate is a 409 naming the day.") == (
        "A missing rate is a CONFLICT error naming the day."
    )
    assert types.graphql_text("Not `site_domain`: a 400.") == "Not `siteDomain`: a BAD_USER_INPUT error."
    printed = print_schema(schema)
    assert "CONFLICT error naming the day and currency" in printed
    assert not re.search(r"\ban? [45]\d\d\b", printed), re.search(r".{60}\ban? [45]\d\d\b.{20}", printed)
