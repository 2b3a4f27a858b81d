"""Every report's answer carries exactly the fields its OpenAPI schema declares, all required.

The reports build their answers as dicts (``outcomes.queries``); their shapes are declared in
``outcomes.report_serializers``. A key missing from an answer, or one the schema does not
declare, fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

REPORTS = {
    "/api/outcomes/stats/": {},
    "/api/outcomes/daily_stats/": {},
    "/api/outcomes/timeseries/": {"granularity": "hour"},
    "/api/outcomes/breakdown/": {"by": "site_domain"},
    "/api/outcomes/histogram/": {},
    "/api/outcomes/reach/": {},
    "/api/ingestion/": None,
}


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def resolve(node: dict, schema: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    if "allOf" in node and len(node["allOf"]) == 1:
        return resolve(node["allOf"][0], schema)
    return node


def mismatches(answer, node: dict, schema: dict, where: str, extra_keys=frozenset()) -> list[str]:
    node = resolve(node, schema)
    found = []
    if node.get("type") == "array" and isinstance(answer, list):
        for i, item in enumerate(answer[:3]):
            found += mismatches(item, node["items"], schema, f"{where}[{i}]", extra_keys)
    elif "properties" in node and isinstance(answer, dict):
        declared = set(node["properties"])
        required = set(node.get("required", []))
        if undeclared := set(answer) - declared - extra_keys:
            found.append(f"{where}: answered but not in the schema: {sorted(undeclared)}")
        if missing := required - set(answer):
            found.append(f"{where}: required by the schema but not answered: {sorted(missing)}")
        if optional := declared - required - {"relative_standard_error"}:
            found.append(f"{where}: declared but not required: {sorted(optional)}")
        for name, value in answer.items():
            if name in node["properties"] and value is not None:
                found += mismatches(value, node["properties"][name], schema, f"{where}.{name}", extra_keys)
    return found


@pytest.mark.parametrize("path", sorted(REPORTS))
def test_every_report_answers_exactly_its_schema(path, schema, outcome_factory, settings):
    settings.API_READ_ACCESS = "public"
    now = datetime.now(UTC)
    for i in range(6):
        outcome_factory(
            2,
            site_domain=f"site{i % 3}.example",
            user_id=f"u{i}",
            auction_timestamp=now - timedelta(hours=i * 5, minutes=7),
        )
    params = REPORTS[path]
    if params is not None:
        params = {**params, "start": (now - timedelta(days=2)).isoformat(), "end": now.isoformat()}
    response = APIClient().get(path, params or {})
    assert response.status_code == 200, response.content[:500]
    answer = response.json()
    assert answer, "an empty answer checks nothing"
    declared = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    # A breakdown row names its group under the dimension's own name (here site_domain).
    assert mismatches(answer, declared, schema, path, extra_keys=frozenset({"site_domain"})) == []


@pytest.mark.parametrize("registered", [True, False])
def test_experiment_results_answer_exactly_their_schema(registered, schema, outcome_factory, settings):
    from outcomes.models import Experiment

    settings.API_READ_ACCESS = "public"
    now = datetime.now(UTC)
    for i in range(8):
        outcome_factory(
            3,
            user_id=f"u{i}",
            experiment="shading-v2",
            variant="B" if i % 2 else "control",
            win_status=i % 3 != 0,
            auction_timestamp=now - timedelta(hours=i * 5, minutes=7),
        )
    if registered:
        Experiment.objects.create(
            key="shading-v2",
            name="Shading",
            variants=[{"name": "control", "share": 1}, {"name": "B", "share": 1}],
            primary_metric="win_rate",
        )
    response = APIClient().get("/api/experiments/shading-v2/results/")
    assert response.status_code == 200, response.content[:500]
    answer = response.json()
    assert answer["comparisons"] and answer["warnings"] and (answer["srm"] is not None) == registered
    path = "/api/experiments/{key}/results/"
    declared = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert mismatches(answer, declared, schema, path) == []


def test_insights_answer_exactly_their_schema(schema, outcome_factory, settings):
    from django.core.management import call_command

    settings.API_READ_ACCESS = "public"
    settings.AUCTION_TYPE = "second_price"
    now = datetime.now(UTC)
    for i in range(40):
        won = i % 3 != 0
        outcome_factory(
            5,
            bid_price=f"{0.5 + (i % 8) / 10:.2f}",
            win_status=won,
            win_price=f"{0.3 + (i % 3) / 10:.2f}" if won else "0",
            auction_timestamp=now - timedelta(days=1, hours=i % 20),
        )
    call_command("fit_bid_models", "--min-outcomes", "10")
    for path, params in (
        ("/api/insights/bid_landscape/", {}),
        ("/api/insights/optimal_bid/", {"value": "1.2"}),
    ):
        response = APIClient().get(path, params)
        assert response.status_code == 200, response.content[:500]
        answer = response.json()
        assert answer["model"] is not None
        declared = schema["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert mismatches(answer, declared, schema, path) == []
    assert APIClient().get("/api/insights/bid_landscape/").json()["market_price"]["median"] is not None
