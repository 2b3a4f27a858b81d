"""``/api/graphql/`` against real PostgreSQL (and Redis for the limits): every report equals
the REST answer for the same parameters on randomized data, the outcomes connection walks
the list as REST's cursors do, query counts do not grow with a page, and every refusal,
limit and door of the REST API holds here too."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient
from strawberry.utils.str_converters import to_camel_case

from outcomes.graphql.schema import full_selection
from outcomes.models import APIKey

URL = "/api/graphql/"
START = datetime(2025, 10, 24, tzinfo=UTC)
END = datetime(2025, 10, 26, tzinfo=UTC)
DOMAINS = [f"site{i}.example" for i in range(9)]
SEED = int(os.environ.get("GRAPHQL_PARITY_SEED", random.SystemRandom().randrange(10**6)))


class Enum(str):
    """An enum value: written bare in a GraphQL document."""


# ---------------------------------------------------------------------------- helpers
def literal(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def arguments(params: dict) -> str:
    if not params:
        return ""
    return "(" + ", ".join(f"{to_camel_case(name)}: {literal(value)}" for name, value in params.items()) + ")"


def rest_params(params: dict) -> dict:
    return {
        name: ("true" if value is True else "false" if value is False else str(value)) for name, value in params.items()
    }


def snake(value):
    """A GraphQL answer's keys as REST writes them."""
    if isinstance(value, list):
        return [snake(item) for item in value]
    if isinstance(value, dict):
        return {"".join(f"_{c.lower()}" if c.isupper() else c for c in key): snake(item) for key, item in value.items()}
    return value


def graphql(client: APIClient, query: str, variables: dict | None = None, **extra):
    body = {"query": query, **({"variables": variables} if variables is not None else {})}
    return client.post(URL, body, format="json", **extra)


def run(client: APIClient, field: str, type_name: str, params: dict) -> dict:
    query = "{ r: " + to_camel_case(field) + arguments(params) + " " + full_selection(type_name) + " }"
    response = graphql(client, query)
    assert response.status_code == 200, response.content[:500]
    return response.json()


def as_graphql(report: str, answer):
    """The REST answer in the shapes GraphQL gives it where the two differ (the types' docstring)."""
    if report == "breakdown":
        for row in answer["rows"]:
            value = row.pop(answer["by"])
            row["value"] = (
                None if value is None else ("true" if value is True else "false" if value is False else value)
            )
    if report == "reach":
        answer.setdefault("relative_standard_error", None)  # REST leaves it out when exact
    if report == "experiment_results" and answer.get("srm"):
        for name in ("observed", "expected"):
            answer["srm"][name] = [{"key": k, "value": v} for k, v in answer["srm"][name].items()]
    return answer


# ---------------------------------------------------------------------------- data
@pytest.fixture
def data(outcome_factory):
    rng = random.Random(SEED)
    made = []
    for _ in range(140):
        won = rng.random() < 0.6
        bid = Decimal(rng.randint(20, 400)) / 100
        tagged = rng.random() < 0.5
        n = rng.randint(1, 3)
        fields = dict(
            site_domain=rng.choice(DOMAINS[: rng.randint(1, len(DOMAINS))] + [None]),
            currency=rng.choice(["EUR", "USD", "USD"]),
            win_status=won,
            bid_price=bid,
            win_price=(bid * Decimal(rng.randint(30, 100)) / 100).quantize(Decimal("0.01")) if won else None,
            enriched=rng.random() < 0.5,
            user_id=f"user-{rng.randint(1, 40)}",
            experiment="floor-test" if tagged else None,
            variant=rng.choice(["control", "B"]) if tagged else None,
            auction_timestamp=START - timedelta(hours=3) + timedelta(minutes=rng.randint(0, 60 * 54)),
        )
        made.extend([fields] * n)
    outcome_factory.many(made)
    return rng


def cases(rng: random.Random) -> list[tuple[str, str, str, dict]]:
    """(GraphQL field, answer type, REST path, parameters) on random windows and filters."""
    shift = timedelta(seconds=rng.randint(0, 7200))
    window = {"start": (START + shift).isoformat(), "end": (END - shift).isoformat()}
    domain = rng.choice(DOMAINS[:3])
    return [
        ("stats", "Stats", "/api/outcomes/stats/", {}),
        ("stats", "Stats", "/api/outcomes/stats/", {"site_domain": domain, **window}),
        ("stats", "Stats", "/api/outcomes/stats/", {"currency": "eur", "win_status": rng.random() < 0.5}),
        ("daily_stats", "DailyStats", "/api/outcomes/daily_stats/", {"currency": "USD", "enriched": True}),
        (
            "timeseries",
            "Timeseries",
            "/api/outcomes/timeseries/",
            {"granularity": Enum("hour"), "currency": "USD", **window},
        ),
        (
            "timeseries",
            "Timeseries",
            "/api/outcomes/timeseries/",
            {"granularity": Enum("day"), "tz": "Europe/Berlin", "start": START.isoformat(), "end": END.isoformat()},
        ),
        (
            "breakdown",
            "Breakdown",
            "/api/outcomes/breakdown/",
            {"by": Enum("site_domain"), "order": Enum(rng.choice(["wins", "revenue", "win_rate"])), "limit": 4},
        ),
        ("breakdown", "Breakdown", "/api/outcomes/breakdown/", {"by": Enum("enriched"), "currency": "EUR"}),
        ("histogram", "Histogram", "/api/outcomes/histogram/", {"price": Enum("bid_price"), "bins": 7}),
        ("reach", "Reach", "/api/outcomes/reach/", {"site_domain": domain}),
        ("bid_landscape", "BidLandscape", "/api/insights/bid_landscape/", {"currency": "USD"}),
        (
            "experiment_results",
            "ExperimentResults",
            "/api/experiments/floor-test/results/",
            {"inference": Enum(rng.choice(["fixed", "sequential"])), "confidence": 0.9},
        ),
    ]


# ---------------------------------------------------------------------------- parity
@pytest.mark.django_db(transaction=True)
def test_every_report_equals_the_rest_answer_for_the_same_parameters(data):
    client = APIClient()
    for field, type_name, path, params in cases(data):
        rest = client.get(path, rest_params(params))
        assert rest.status_code == 200, (SEED, path, rest.content[:300])
        query_params = {k: v for k, v in params.items()}
        if field == "experiment_results":
            query_params = {"key": "floor-test", **query_params}
        answer = run(client, field, type_name, query_params)
        assert "errors" not in answer, (SEED, field, answer)
        assert snake(answer["data"]["r"]) == as_graphql(field, rest.json()), (SEED, field, params)
        assert answer["extensions"]["reportSources"]["r"] == rest["X-Report-Source"]


@pytest.mark.django_db(transaction=True)
def test_a_refused_report_is_the_rest_refusal_naming_the_argument_and_leaves_the_others(data):
    client = APIClient()
    response = graphql(
        client,
        '{ ok: stats { totalOutcomes } bad: timeseries(granularity: minute, start: "2025-01-01", end: "2025-10-01") '
        '{ tz } money: stats(convertTo: "JPY") { totalRevenue } when: stats(start: "yesterday") { winRate } }',
    )
    body = response.json()
    assert response.status_code == 200
    assert body["data"]["ok"]["totalOutcomes"] == APIClient().get("/api/outcomes/stats/").json()["total_outcomes"]
    assert body["data"]["bad"] is None and body["data"]["money"] is None and body["data"]["when"] is None
    errors = {error["path"][0]: error for error in body["errors"]}
    rest = client.get(
        "/api/outcomes/timeseries/", {"granularity": "minute", "start": "2025-01-01", "end": "2025-10-01"}
    ).json()
    assert errors["bad"]["extensions"]["code"] == "BAD_USER_INPUT"
    assert errors["bad"]["extensions"]["arguments"] == {"granularity": rest["granularity"]}
    assert errors["bad"]["message"] == f"granularity: {rest['granularity'][0]}"
    assert errors["money"]["extensions"]["code"] == "CONFLICT"
    assert errors["money"]["extensions"]["missingRate"]["currency"] in ("EUR", "USD", "JPY")
    rest_when = client.get("/api/outcomes/stats/", {"start": "yesterday"}).json()
    assert errors["when"]["extensions"]["arguments"] == {"start": rest_when["start"]}
    assert "ISO 8601" in errors["when"]["message"]


@pytest.mark.django_db(transaction=True)
def test_the_outcomes_connection_walks_the_list_as_rest_cursors_do(data):
    client = APIClient()
    filters = {"ordering": "-win_price", "currency": "USD"}
    rest_rows, rest_cursors = [], []
    params = {**filters, "cursor": "", "page_size": "7"}
    while True:
        page = client.get("/api/outcomes/", params).json()
        rest_rows += page["results"]
        if not page["next_cursor"]:
            break
        rest_cursors.append(page["next_cursor"])
        params["cursor"] = page["next_cursor"]
    rows, cursors, after = [], [], None
    node = full_selection("Outcome")
    while True:
        answer = graphql(
            client,
            'query Page($after: String) { outcomes(first: 7, ordering: "-win_price", currency: "USD", after: $after) '
            "{ totalCount totalCountIsEstimate edges { cursor node " + node + " } "
            "pageInfo { hasNextPage endCursor startCursor } } }",
            {"after": after},
        ).json()
        assert "errors" not in answer, answer
        connection_ = answer["data"]["outcomes"]
        rows += [edge["node"] for edge in connection_["edges"]]
        assert connection_["pageInfo"]["startCursor"] == connection_["edges"][0]["cursor"]
        if not connection_["pageInfo"]["hasNextPage"]:
            break
        after = connection_["pageInfo"]["endCursor"]
        cursors.append(after)
    assert snake(rows) == rest_rows and len({row["id"] for row in rows}) == len(rows) > 14
    assert cursors == rest_cursors  # the same keyset tokens: one cursor scheme for both APIs
    count = client.get("/api/outcomes/", {"currency": "USD"}).json()
    assert connection_["totalCount"] == count["count"] == len(rows)
    assert connection_["totalCountIsEstimate"] is count["count_is_estimate"] is False


@pytest.mark.django_db(transaction=True)
def test_query_counts_do_not_grow_with_the_page_and_a_report_costs_what_its_rest_call_does(data):
    client = APIClient()
    node = full_selection("Outcome")

    def queries(query: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert "errors" not in graphql(client, query).json()
        return len(captured.captured_queries)

    queries("{ outcomes(first: 1) { totalCount } }")  # the planner's extent, read once per process
    small = queries("{ outcomes(first: 2) { edges { node " + node + " } totalCount } }")
    large = queries("{ outcomes(first: 200) { edges { node " + node + " } totalCount } }")
    assert small == large <= 4
    with CaptureQueriesContext(connection) as captured:
        client.get("/api/outcomes/breakdown/", {"by": "site_domain", "start": "2025-10-24T00:00:07Z"})
    rest = len(captured.captured_queries)
    # A fresh window: not from the snapshot cache.
    assert queries('{ breakdown(by: site_domain, start: "2025-10-24T00:00:08Z") { rows { value } } }') == rest


# ---------------------------------------------------------------------------- refusals and limits
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ stats { totalOutcomes }", "GRAPHQL_PARSE_FAILED"),
        ("{ stats { nope } }", "GRAPHQL_VALIDATION_FAILED"),
        ("mutation { stats { winRate } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ " + " ".join(f"a{i}: stats {{ winRate }}" for i in range(16)) + " }", "QUERY_TOO_COMPLEX"),
        ("{ stats { winRate " + "__typename " * 2100 + "} }", "QUERY_TOO_COMPLEX"),
        (
            "query { ...A } fragment A on Query { outcomes { edges { node { ...B } } } } fragment B on Outcome { id }",
            None,  # depth 4: allowed
        ),
        ("{ breakdown(by: nope) { by } }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ outcomes(first: 0) { edges { cursor } } }", "BAD_USER_INPUT"),
        ('{ outcomes(after: "not-a-cursor") { edges { cursor } } }', "BAD_USER_INPUT"),
        ('{ outcomes(ordering: "price") { edges { cursor } } }', "BAD_USER_INPUT"),
        ('{ stats(minPrice: "abc") { winRate } }', "GRAPHQL_VALIDATION_FAILED"),
        ('{ experimentResults(key: "no-such") { experiment } }', "NOT_FOUND"),
        ("{ optimalBid(value: 1.5) { value } }", "CONFLICT"),
    ],
)
def test_each_refusal_has_its_code_and_is_counted(query, code):
    from analytics.metrics import GRAPHQL_ERRORS

    before = GRAPHQL_ERRORS.labels(code)._value.get() if code else 0
    response = graphql(APIClient(), query)
    assert response.status_code == 200
    body = response.json()
    if code is None:
        assert "errors" not in body, body
        return
    assert [error["extensions"]["code"] for error in body["errors"]][:1] == [code], body
    assert body["errors"][0]["message"]
    assert GRAPHQL_ERRORS.labels(code)._value.get() >= before + 1


@pytest.mark.django_db
def test_depth_over_the_limit_is_refused_before_anything_runs(monkeypatch):
    from outcomes.graphql import schema as module

    deep = "{ stats { winPricePercentiles { p50 } } }"
    assert "errors" not in graphql(APIClient(), deep).json()
    limited = module.Schema(
        query=module.Query,
        extensions=[lambda: module.QueryDepthLimiter(max_depth=1)],
        config=module.schema.config,
    )
    monkeypatch.setattr(module, "schema", limited)
    body = graphql(APIClient(), deep).json()
    assert "data" not in body and body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": "{ stats { winRate } }", "variables": [1]}, "variables"),
        ({"query": "{ stats { winRate } }", "operationName": 3}, "operationName"),
        ({"query": "{ stats { winRate } }", "extra": 1}, "extra"),
    ],
)
def test_a_request_graphql_cannot_run_is_a_400_naming_the_problem(body, field):
    response = APIClient().post(URL, body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content


@pytest.mark.django_db
def test_bodies_and_urls_that_are_not_graphql_requests_are_400s():
    client = APIClient()
    assert client.post(URL, "[1, 2]", content_type="application/json").status_code == 400
    assert client.post(URL, "{not json", content_type="application/json").status_code == 400
    assert client.get(URL, {"query": "{ stats { winRate } }", "variables": "{"}).status_code == 400
    assert client.get(URL, {"query": "{ stats { winRate } }", "site_domain": "x"}).status_code == 400
    got = client.get(
        URL, {"query": "query Q($d: String) { stats(siteDomain: $d) { totalOutcomes } }", "variables": '{"d": "x"}'}
    )
    assert got.status_code == 200 and got.json()["data"]["stats"]["totalOutcomes"] == 0
    bad_variable = graphql(client, "query Q($n: BigInt!) { outcome(id: $n) { id } }", {"n": "seven"}).json()
    assert bad_variable["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


# ---------------------------------------------------------------------------- doors
def _key(*scopes: str) -> str:
    return APIKey.objects.create_key(name="graphql", scopes=list(scopes))[1]


@pytest.mark.django_db
def test_the_same_keys_and_scopes_as_rest_reads(settings, person):
    settings.API_READ_ACCESS = "authenticated"
    query = {"query": "{ stats { totalOutcomes } }"}
    anonymous = APIClient().post(URL, query, format="json")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Api-Key")
    writer = APIClient().post(URL, query, format="json", HTTP_AUTHORIZATION=f"Api-Key {_key('write')}")
    assert writer.status_code == 403 and "'read' scope" in writer.json()["detail"]
    reader = APIClient().post(URL, query, format="json", HTTP_AUTHORIZATION=f"Api-Key {_key('read')}")
    assert reader.status_code == 200 and reader.json()["data"]["stats"]["totalOutcomes"] == 0
    revoked = APIClient().post(URL, query, format="json", HTTP_AUTHORIZATION="Api-Key abcdefgh." + "x" * 32)
    assert revoked.status_code == 401
    staff = person.client(person(staff=True))
    assert staff.post(URL, query, format="json").status_code == 200
    nobody = person.client(person())
    assert nobody.post(URL, query, format="json").status_code == 403


@pytest.mark.django_db
def test_a_session_post_needs_the_csrf_token(person, settings):
    settings.DEBUG = True  # GraphiQL's page gives the token
    user = person(staff=True)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    refused = client.post(URL, {"query": "{ stats { winRate } }"}, format="json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    page = client.get(URL, HTTP_ACCEPT="text/html")
    token = page.cookies["csrftoken"].value
    allowed = client.post(URL, {"query": "{ stats { winRate } }"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert allowed.status_code == 200


@pytest.mark.django_db
def test_a_request_costs_one_per_report_it_asks_for(settings):
    import redis

    from tests.test_throttling import REDIS_URL

    redis.Redis.from_url(REDIS_URL).flushdb()
    settings.REDIS_URL = REDIS_URL
    settings.API_RATE_LIMIT_KEY = "5/hour"
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {_key('read')}"}
    three = '{ a: stats { winRate } b: stats(currency: "USD") { winRate } reach { reach } __typename }'
    first = graphql(APIClient(), three, **auth)
    assert first.status_code == 200 and first.json()["extensions"]["cost"] == 3
    refused = graphql(APIClient(), three, **auth)  # 3 + 3 > 5
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert graphql(APIClient(), "{ stats { winRate } }", **auth).status_code == 200  # 4
    assert graphql(APIClient(), "{ stats { winRate } }", **auth).status_code == 200  # 5
    assert graphql(APIClient(), "{ stats { winRate } }", **auth).status_code == 429


@pytest.mark.django_db(transaction=True)
def test_the_statement_timeout_holds_and_is_said(settings, outcome_factory):
    outcome_factory(1)
    settings.API_STATEMENT_TIMEOUT_MS = 300
    client = APIClient()
    assert graphql(client, "{ outcomes(first: 1) { edges { cursor } } }").status_code == 200
    db = connection.settings_dict
    blocker = psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"]
    )
    try:
        blocker.cursor().execute("LOCK TABLE outcomes_auctionoutcome IN ACCESS EXCLUSIVE MODE")
        body = graphql(client, '{ outcomes(userId: "user-1") { edges { cursor } } }').json()
        assert body["data"]["outcomes"] is None
        assert body["errors"][0]["extensions"]["code"] == "TIMEOUT"
        assert "API_STATEMENT_TIMEOUT_MS (300 ms)" in body["errors"][0]["message"]
    finally:
        blocker.rollback()
        blocker.close()
    assert "errors" not in graphql(client, '{ outcomes(userId: "user-1") { edges { cursor } } }').json()


@pytest.mark.django_db
def test_a_request_with_many_reports_is_bounded_by_one_time_budget(settings, monkeypatch):
    """Fifteen reports in one request may not hold a thread fifteen statement timeouts long:
    once the request's budget is spent, the fields not yet run are refused."""
    from outcomes.graphql import schema as module

    settings.API_STATEMENT_TIMEOUT_MS = 1000
    clock = iter(range(0, 100_000, 400))  # each look at the clock: 0.4 s later
    monkeypatch.setattr(module, "now", lambda: next(clock) / 1000)
    query = "{ " + " ".join(f"r{i}: stats {{ totalOutcomes }}" for i in range(5)) + " }"
    body = graphql(APIClient(), query).json()
    answered = [key for key, value in body["data"].items() if value is not None]
    refused = {error["path"][0]: error for error in body["errors"]}
    assert answered == ["r0", "r1"] and sorted(refused) == ["r2", "r3", "r4"]
    assert all(error["extensions"]["code"] == "TIMEOUT" for error in refused.values())
    assert "API_STATEMENT_TIMEOUT_MS (1,000 ms)" in refused["r2"]["message"]


@pytest.mark.django_db
def test_an_unexpected_failure_is_masked_logged_and_counted(monkeypatch, caplog):
    from analytics.metrics import GRAPHQL_ERRORS
    from outcomes import queries

    def broken(**kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(queries, "outcome_count", broken)
    before = GRAPHQL_ERRORS.labels("INTERNAL_SERVER_ERROR")._value.get()
    body = graphql(APIClient(), "{ outcomes { totalCount } }").json()
    assert body["errors"][0] == {
        "message": "Unexpected error.",
        "locations": [{"line": 1, "column": 14}],
        "path": ["outcomes", "totalCount"],
        "extensions": {"code": "INTERNAL_SERVER_ERROR"},
    }
    assert "secret detail" not in json.dumps(body)
    assert "secret detail" in caplog.text
    assert GRAPHQL_ERRORS.labels("INTERNAL_SERVER_ERROR")._value.get() == before + 1
    metrics = APIClient().get("/metrics").content.decode()
    assert 'analytics_graphql_errors_total{code="INTERNAL_SERVER_ERROR"}' in metrics


@pytest.mark.django_db
def test_graphiql_is_served_offline_in_debug_only(settings):
    settings.DEBUG = True
    page = APIClient().get(URL, HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    html = page.content.decode()
    for asset in ("react.production.min.js", "react-dom.production.min.js", "graphiql.min.js", "graphiql.min.css"):
        assert f"/static/outcomes/vendor/{asset}" in html
    assert "https://" not in html and "unpkg" not in html
    settings.DEBUG = False
    refused = APIClient().get(URL, HTTP_ACCEPT="text/html")
    assert refused.status_code == 400 and "query" in refused.json()
