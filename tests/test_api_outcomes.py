"""REST API: endpoints, filters, ordering, pagination, bad parameters, permissions."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from outcomes.models import AuctionOutcome
from tests.factories import SPEC_MESSAGE, WRITER_PERMISSIONS

pytestmark = pytest.mark.django_db
URL = "/api/outcomes/"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def staff_api(person):
    """A person allowed to write outcomes (the model permissions, as the admin grants them)."""
    return person.client(person(*WRITER_PERMISSIONS, staff=True))


@pytest.fixture
def mixed(outcome_factory):
    """A small, varied data set."""
    outcome_factory(
        3,
        user_id="alice",
        site_domain="a.example",
        win_status=True,
        win_price=Decimal("0.50"),
        bid_price=Decimal("0.60"),
        enriched=True,
    )
    outcome_factory(
        2,
        user_id="bob",
        site_domain="b.example",
        win_status=False,
        win_price=Decimal("0.00"),
        bid_price=Decimal("0.40"),
        enriched=False,
    )
    outcome_factory(
        1,
        user_id="bob",
        site_domain=None,
        win_status=True,
        win_price=Decimal("2.00"),
        bid_price=Decimal("2.50"),
        enriched=False,
        currency="EUR",
    )
    return list(AuctionOutcome.objects.all())


def ids(response):
    return {row["id"] for row in response.json()["results"]}


def test_list_is_paginated_with_default_page_size(api, outcome_factory):
    outcome_factory(105)
    body = api.get(URL).json()
    assert body["count"] == 105
    assert len(body["results"]) == 100
    assert body["next"].endswith("page=2")
    assert len(api.get(URL, {"page": 2}).json()["results"]) == 5


def test_retrieve_shape_matches_the_specification(api, outcome_factory):
    (row,) = outcome_factory(
        1, bid_id="req-123", user_id="user-456", site_domain=None, win_price=Decimal("0.80"), bid_price=Decimal("0.80")
    )
    body = api.get(f"{URL}{row.id}/").json()
    assert list(body) == [
        "id",
        "bid_id",
        "user_id",
        "site_domain",
        "win_status",
        "win_price",
        "bid_price",
        "currency",
        "enriched",
        "user_interests",
        "is_winner",
        "profit_margin",
        "timestamp",
        "auction_timestamp",
        "created_at",
        "updated_at",
        "experiment",
        "variant",
    ]
    assert body["site_domain"] == ""
    assert body["win_price"] == "0.80" and body["bid_price"] == "0.80"
    assert body["is_winner"] is True and body["profit_margin"] == 0.0
    assert body["auction_timestamp"] == "2025-10-25T12:00:00Z"


def test_retrieve_unknown_id_is_404(api):
    assert api.get(f"{URL}999999/").status_code == 404


@pytest.mark.parametrize(
    ("win", "bid", "won", "expected"),
    [
        ("0.80", "0.80", True, 0.0),
        ("0.60", "0.80", True, 25.0),
        ("0.00", "0.80", False, None),
        ("0.00", "0.00", True, None),
        ("0.33", "1.00", True, 67.0),
    ],
)
def test_profit_margin(api, outcome_factory, win, bid, won, expected):
    (row,) = outcome_factory(1, win_price=Decimal(win), bid_price=Decimal(bid), win_status=won)
    body = api.get(f"{URL}{row.id}/").json()
    assert body["profit_margin"] == expected
    assert body["is_winner"] is won


@pytest.mark.parametrize(
    ("params", "predicate"),
    [
        ({"user_id": "bob"}, lambda o: o.user_id == "bob"),
        ({"site_domain": "a.example"}, lambda o: o.site_domain == "a.example"),
        ({"win_status": "true"}, lambda o: o.win_status),
        ({"win_status": "false"}, lambda o: not o.win_status),
        ({"enriched": "true"}, lambda o: o.enriched),
        ({"enriched": "false"}, lambda o: not o.enriched),
        ({"currency": "EUR"}, lambda o: o.currency == "EUR"),
        ({"min_price": "0.50"}, lambda o: o.win_price >= Decimal("0.50")),
        ({"max_price": "0.50"}, lambda o: o.win_price <= Decimal("0.50")),
        ({"min_price": "0.1", "max_price": "1"}, lambda o: Decimal("0.1") <= o.win_price <= 1),
        ({"user_id": "bob", "win_status": "true"}, lambda o: o.user_id == "bob" and o.win_status),
        ({"user_id": "nobody"}, lambda o: False),
    ],
)
def test_each_filter_on_list_winners_and_stats(api, mixed, params, predicate):
    expected = {o.id for o in mixed if predicate(o)}
    assert ids(api.get(URL, params)) == expected
    assert ids(api.get(URL + "winners/", params)) == {o.id for o in mixed if predicate(o) and o.win_status}
    assert api.get(URL + "stats/", params).json()["total_outcomes"] == len(expected)
    assert sum(d["total_outcomes"] for d in api.get(URL + "daily_stats/", params).json()) == len(expected)


def test_time_range_filters(api, outcome_factory):
    base = datetime(2025, 10, 1, tzinfo=UTC)
    rows = outcome_factory(1, auction_timestamp=base) + outcome_factory(1, auction_timestamp=base + timedelta(days=1))
    body = api.get(URL, {"start": "2025-10-02T00:00:00Z"})
    assert ids(body) == {rows[1].id}
    assert ids(api.get(URL, {"end": "2025-10-02T00:00:00Z"})) == {rows[0].id}


def test_winners_only_lists_won_auctions(api, mixed):
    body = api.get(URL + "winners/").json()
    assert body["count"] == 4
    assert all(row["win_status"] for row in body["results"])


@pytest.mark.parametrize("field", ["win_price", "bid_price", "timestamp", "event_time", "user_id", "site_domain", "id"])
def test_ordering(api, outcome_factory, field):
    for i, price in enumerate(["0.30", "0.10", "0.20", "0.10"]):
        outcome_factory(
            1,
            win_price=Decimal(price),
            bid_price=Decimal("1") + i,
            user_id=f"user-{3 - i}",
            site_domain=["b.example", None, "a.example", "b.example"][i],
            auction_timestamp=datetime(2025, 1, 1 + i, tzinfo=UTC),
        )
    rows = list(AuctionOutcome.objects.all())

    def value(row):  # PostgreSQL sorts NULLs after every value (ascending)
        v = getattr(row, field)
        return (v is None, v if v is not None else "")

    for descending in (False, True):
        param = ("-" if descending else "") + field
        got = [row["id"] for row in api.get(URL, {"ordering": param}).json()["results"]]
        # ties are broken by id, in the direction of the ordering (a total order, index-served)
        expected = sorted(rows, key=lambda o: (value(o), o.id), reverse=descending)
        assert got == [o.id for o in expected], param


def test_default_order_is_newest_first(api, outcome_factory):
    rows = outcome_factory(3)
    assert [r["id"] for r in api.get(URL).json()["results"]] == sorted((r.id for r in rows), reverse=True)


def test_page_size_limits(api, outcome_factory):
    outcome_factory(1001)
    assert len(api.get(URL, {"page_size": 1}).json()["results"]) == 1
    assert len(api.get(URL, {"page_size": 1000}).json()["results"]) == 1000
    for bad in ("0", "-1", "1001", "abc", ""):
        response = api.get(URL, {"page_size": bad})
        if bad == "":
            assert response.status_code == 400
            continue
        assert response.status_code == 400, bad
        assert "page_size" in response.json()


@pytest.mark.parametrize(
    ("params", "status", "param"),
    [
        ({"win_status": "maybe"}, 400, "win_status"),
        ({"enriched": "2"}, 400, "enriched"),
        ({"min_price": "abc"}, 400, "min_price"),
        ({"max_price": "NaN"}, 400, "max_price"),
        ({"min_price": "2", "max_price": "1"}, 400, "min_price"),
        ({"ordering": "password"}, 400, "ordering"),
        ({"ordering": "raw_data"}, 400, "ordering"),
        ({"page_size": "0"}, 400, "page_size"),
        ({"page_size": "5000"}, 400, "page_size"),
        ({"page": "0"}, 400, "page"),
        ({"page": "abc"}, 400, "page"),
        ({"page": "999999"}, 400, "page"),  # past API_MAX_PAGE_OFFSET: use a cursor
        ({"page": "50"}, 404, "page"),
        ({"cursor": "not-a-cursor"}, 400, "cursor"),
        ({"cursor": "", "page": "2"}, 400, "page"),
        ({"ordering": "auction_timestamp"}, 400, "ordering"),
        ({"start": "yesterday"}, 400, "start"),
        ({"usr_id": "alice"}, 400, "usr_id"),
    ],
)
def test_bad_parameters_name_the_parameter(api, mixed, params, status, param):
    response = api.get(URL, params)
    assert response.status_code == status
    assert param in response.json()


@pytest.mark.parametrize("endpoint", ["stats/", "daily_stats/"])
def test_aggregations_refuse_list_only_and_bad_parameters(api, mixed, endpoint):
    for params, name in (
        ({"page": "2"}, "page"),
        ({"ordering": "win_price"}, "ordering"),
        ({"win_status": "maybe"}, "win_status"),
        ({"min_price": "x"}, "min_price"),
    ):
        response = api.get(URL + endpoint, params)
        assert response.status_code == 400
        assert name in response.json()


@pytest.mark.parametrize("debug", [False, True])
def test_unknown_api_urls_are_json_404s_in_every_mode(api, settings, debug):
    settings.DEBUG = debug  # make run serves with DEBUG on: Django's HTML debug page otherwise
    for path in (f"{URL}1.5e-7/", f"{URL}not-an-id/", "/api/nothing-here/"):
        response = api.get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/json", path
        assert response.json() == {"detail": "Not found."}
    redirected = api.get(URL.rstrip("/"))  # a missing slash is still redirected, not a 404
    assert redirected.status_code == 301 and redirected["Location"] == URL
    assert api.get("/no-such-page/")["Content-Type"].startswith("text/html")  # outside /api/: a page


def test_empty_page_one_is_fine_and_page_two_is_404(api):
    assert api.get(URL).json() == {
        "count": 0,
        "count_is_estimate": False,
        "next": None,
        "previous": None,
        "results": [],
    }
    assert api.get(URL, {"page": 2}).status_code == 404


# ---------------------------------------------------------------------------- writes
NEW = {"bid_id": "api-1", "user_id": "u", "win_status": True, "win_price": "0.50", "bid_price": "0.70"}


def test_staff_can_create_update_and_delete(staff_api):
    created = staff_api.post(URL, NEW, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["bid_id"] == "api-1" and body["currency"] == "USD" and body["profit_margin"] == 28.57
    row = AuctionOutcome.objects.get(bid_id="api-1")
    assert row.raw_data["bid_id"] == "api-1"
    updated = staff_api.patch(f"{URL}{row.id}/", {"site_domain": "x.example"}, format="json")
    assert updated.status_code == 200 and updated.json()["site_domain"] == "x.example"
    assert staff_api.delete(f"{URL}{row.id}/").status_code == 204
    assert not AuctionOutcome.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bid_price": "-1"}, "bid_price"),
        ({"currency": "usdollar"}, "currency"),
        ({"win_price": "0.90"}, "win_price"),
        ({"bid_price": "5000", "win_price": "1"}, "bid_price"),
        ({"user_interests": "sports"}, "user_interests"),
    ],
)
def test_staff_writes_are_validated_like_messages(staff_api, change, field):
    response = staff_api.post(URL, NEW | change, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_the_admin_example_is_refused_naming_the_field(staff_api):
    """A won auction paying 5.00 on a 0.50 bid, a currency that is not a code: the consumer's rules."""
    bad = NEW | {"win_price": "5.00", "bid_price": "0.50", "currency": "USD"}
    response = staff_api.post(URL, bad, format="json")
    assert response.status_code == 400 and "win_price" in response.json()
    response = staff_api.post(URL, NEW | {"currency": "dollars"}, format="json")
    assert response.status_code == 400 and "currency" in response.json()
    response = staff_api.post(URL, NEW | {"colour": "red"}, format="json")
    assert response.status_code == 400 and "colour" in response.json()
    assert not AuctionOutcome.objects.exists()


def test_updates_follow_the_write_path(staff_api):
    from outcomes import rollups

    row_id = staff_api.post(URL, NEW | {"auction_timestamp": "2025-10-25T12:00:02.123456Z"}, format="json").json()["id"]
    row = AuctionOutcome.objects.get(pk=row_id)
    # a change that changes nothing writes nothing: not even updated_at or the microseconds
    same = staff_api.patch(f"{URL}{row_id}/", {"win_price": "0.50"}, format="json")
    assert same.status_code == 200
    unchanged = AuctionOutcome.objects.get(pk=row_id)
    assert unchanged.updated_at == row.updated_at
    assert unchanged.auction_timestamp == row.auction_timestamp
    assert unchanged.auction_timestamp.microsecond == 123456
    # a real change updates raw_data and the rollups
    changed = staff_api.patch(f"{URL}{row_id}/", {"win_price": "0.60", "currency": "EUR"}, format="json")
    assert changed.status_code == 200, changed.json()
    row = AuctionOutcome.objects.get(pk=row_id)
    assert (row.win_price, row.currency) == (Decimal("0.60"), "EUR")
    assert row.raw_data["win_price"] == "0.60" and row.raw_data["currency"] == "EUR"
    assert row.updated_at >= unchanged.updated_at  # now(): one transaction per test here
    assert staff_api.get("/api/outcomes/stats/", {"currency": "EUR"}).json()["total_revenue"] == 0.6
    # refused changes name the field and change nothing
    bad = staff_api.patch(f"{URL}{row_id}/", {"win_price": "0.90"}, format="json")
    assert bad.status_code == 400 and "win_price" in bad.json()
    assert staff_api.patch(f"{URL}{row_id}/", {"bid_id": "other"}, format="json").status_code == 400
    assert staff_api.put(f"{URL}{row_id}/", {"user_id": "u"}, format="json").status_code == 400  # PUT: whole document
    whole = {"user_id": "u", "win_status": False, "bid_price": "1.00"}  # every required field but the bid id
    missing = staff_api.put(f"{URL}{row_id}/", whole, format="json")
    assert missing.status_code == 400 and "PUT sends the whole outcome" in missing.json()["bid_id"][0]
    kept = staff_api.put(f"{URL}{row_id}/", {**whole, "bid_id": NEW["bid_id"], "enriched": None}, format="json")
    assert kept.status_code == 200 and kept.json()["enriched"] is False  # null is "absent", as on the topic
    changed = staff_api.patch(
        f"{URL}{row_id}/",
        {"win_status": True, "bid_price": "1.00", "win_price": "0.60", "currency": "EUR"},
        format="json",
    )
    assert changed.status_code == 200
    assert staff_api.patch(f"{URL}999999/", {"user_id": "u"}, format="json").status_code == 404
    assert AuctionOutcome.objects.get(pk=row_id).win_price == Decimal("0.60")
    assert rollups.verify() == []


def test_duplicate_bid_id_is_a_conflict(staff_api, outcome_factory):
    outcome_factory(1, bid_id="api-1")
    response = staff_api.post(URL, NEW, format="json")
    assert response.status_code == 409
    assert response.json() == {"bid_id": ["An outcome with bid_id 'api-1' is already stored."]}


def test_openapi_schema_lists_the_endpoints(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (
        "/api/outcomes/",
        "/api/outcomes/{id}/",
        "/api/outcomes/stats/",
        "/api/outcomes/winners/",
        "/api/outcomes/daily_stats/",
        "/api/outcomes/timeseries/",
        "/api/outcomes/breakdown/",
        "/api/outcomes/histogram/",
        "/api/outcomes/reach/",
    ):
        assert path in paths
    for path, names in {
        "/api/outcomes/timeseries/": {"granularity", "tz", "start", "end", "site_domain"},
        "/api/outcomes/breakdown/": {"by", "order", "limit", "currency"},
        "/api/outcomes/histogram/": {"price", "bins", "win_status"},
    }.items():
        assert names <= {p["name"] for p in paths[path]["get"]["parameters"]}, path
    parameters = {p["name"] for p in paths["/api/outcomes/"]["get"]["parameters"]}
    assert {
        "user_id",
        "site_domain",
        "win_status",
        "enriched",
        "min_price",
        "max_price",
        "ordering",
        "page",
        "page_size",
    } <= parameters


def test_health_endpoints(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json() == {"status": "ok"}


# ---------------------------------------------------------------------------- cursors
@pytest.mark.parametrize(
    "ordering", [None, "-win_price", "site_domain", "event_time", "-timestamp", "bid_price,-user_id"]
)
def test_a_cursor_walks_a_filtered_list_to_its_end_while_rows_arrive(api, outcome_factory, ordering):
    import random

    rng = random.Random(4)
    for _ in range(60):
        outcome_factory(
            1,
            win_price=Decimal(rng.choice(["0.10", "0.20", "0.30"])),
            bid_price=Decimal("1.00"),
            site_domain=rng.choice(["a.example", "b.example", None]),
            user_id=rng.choice(["u1", "u2"]),
            win_status=rng.random() < 0.7,
            auction_timestamp=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 50)),
        )
    params = {"win_status": "true", "page_size": 7, "cursor": ""}
    if ordering:
        params["ordering"] = ordering
    expected = [
        row["id"]
        for row in api.get(URL, {k: v for k, v in params.items() if k != "cursor"} | {"page_size": 1000}).json()[
            "results"
        ]
    ]
    seen: list[int] = []
    pages = 0
    while True:
        body = api.get(URL, params).json()
        seen += [row["id"] for row in body["results"]]
        pages += 1
        outcome_factory(2, win_status=True, win_price=Decimal("0.20"))  # new rows keep arriving
        if not body["next_cursor"]:
            break
        params["cursor"] = body["next_cursor"]
    assert len(seen) == len(set(seen))  # nothing repeated
    assert set(expected) <= set(seen)  # nothing that existed at the start is missed
    assert all(row_id > max(expected) for row_id in set(seen) - set(expected))  # the rest arrived meanwhile
    assert [row_id for row_id in seen if row_id in set(expected)] == expected  # in the list's order
    if ordering in (None, "-timestamp"):
        assert seen == expected  # newer rows sort before the cursor: a walk never sees them
    assert pages > 3
    other = api.get(URL, {"cursor": params["cursor"], "ordering": "user_id", "win_status": "true"})
    if params["cursor"]:
        assert other.status_code == 400 and "cursor" in other.json()


@pytest.mark.parametrize(
    ("path", "asset"), [("/api/docs/", "swagger-ui-bundle.js"), ("/api/redoc/", "redoc.standalone.js")]
)
def test_api_docs_are_served_offline(api, path, asset):
    response = api.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    src = next(part.split('"')[0] for part in html.split('src="')[1:] if asset in part.split('"')[0])
    assert src.startswith("/static/drf_spectacular_sidecar/")  # from the package, not a CDN
    assert "http://" not in html and "https://" not in html  # no web fonts or scripts from elsewhere
    from django.contrib.staticfiles import finders

    assert finders.find(src.removeprefix("/static/"))  # collectstatic (the image, make run) serves it


# ---------------------------------------------------------------------------- newcomer's rough edges
def test_find_an_outcome_by_its_bid_id(api, outcome_factory):
    target, _other = outcome_factory(2)
    body = api.get(URL, {"bid_id": target.bid_id}).json()
    assert body["count"] == 1 and [r["bid_id"] for r in body["results"]] == [target.bid_id]
    assert api.get(URL, {"bid_id": "no-such-bid"}).json()["count"] == 0
    # Retrieve takes the numeric id only; a bid id there is a 404 (use ?bid_id=).
    assert api.get(f"{URL}{target.bid_id}/").status_code == 404
    # A report over one bid id would be that outcome: reports refuse the parameter.
    refused = api.get(f"{URL}stats/", {"bid_id": target.bid_id})
    assert refused.status_code == 400 and "bid_id" in refused.json()


def test_currency_codes_in_either_case(api, outcome_factory):
    outcome_factory(2, currency="EUR")
    outcome_factory(1, currency="USD")
    assert api.get(URL, {"currency": "eur"}).json()["count"] == 2
    assert api.get(f"{URL}stats/", {"currency": "usd"}).json()["total_outcomes"] == 1
    refused = api.get(URL, {"currency": "euro"})
    assert refused.status_code == 400
    assert refused.json()["currency"] == [
        "'euro' has 4 characters; an ISO 4217 currency code is 3 letters, such as USD."
    ]


def test_a_written_currency_in_any_case_is_stored_upper_case(staff_api):
    created = staff_api.post(URL, NEW | {"currency": "gbp"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["currency"] == "GBP"
    changed = staff_api.patch(f"{URL}{created.json()['id']}/", {"currency": "eur"}, format="json")
    assert changed.status_code == 200 and changed.json()["currency"] == "EUR"
    refused = staff_api.patch(f"{URL}{created.json()['id']}/", {"currency": "€UR"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["currency"] == [
        "currency '€UR' contains '€'; an ISO 4217 currency code is 3 letters A–Z, such as USD"
    ]


@pytest.mark.parametrize("path", ["", "stats/", "timeseries/", "export/"])
def test_a_time_that_does_not_parse_names_the_format_taken(api, path):
    response = api.get(f"{URL}{path}", {"start": "yesterday"})
    assert response.status_code == 400
    message = response.json()["start"][0]
    assert message.startswith("Not an ISO 8601 date-time.") and "2026-12-02T14:00:00Z" in message


def test_an_empty_value_is_refused_not_ignored(api):
    response = api.get(URL, {"site_domain": ""})
    assert response.status_code == 400 and "Empty value" in response.json()["site_domain"][0]


def test_an_unknown_ordering_lists_the_fields(api):
    message = api.get(URL, {"ordering": "foo"}).json()["ordering"][0]
    assert "'foo' is not an ordering field" in message
    for name in ("timestamp", "event_time", "win_price", "bid_price", "user_id", "site_domain", "id"):
        assert name in message


def test_the_api_root_describes_the_service_and_links_everything(api):
    body = api.get("/api/").json()
    for name in ("outcomes", "ingestion", "schema", "docs", "redoc", "dashboard", "admin"):
        assert body[name].startswith("http://testserver/"), name
    page = api.get("/api/", HTTP_ACCEPT="text/html").content.decode()
    assert "The default basic root view" not in page and "Auction outcomes from real-time-bidding" in page


def test_the_browsable_api_labels_and_form(staff_api):
    page = staff_api.get(URL, HTTP_ACCEPT="text/html").content.decode()
    assert "[invalid name]" not in page
    # The raw form is a valid outcome as shown: posting it unchanged stores one.
    client = staff_api
    form_page = client.get(URL, HTTP_ACCEPT="text/html")
    initial = form_page.context["raw_data_post_form"].fields["_content"].initial
    assert '"user_interests": []' in initial
    created = client.post(URL, json.loads(initial), format="json")
    assert created.status_code == 201, created.content
    assert created.json()["bid_id"].startswith("manual-")


def test_the_kafka_message_shape_is_accepted(staff_api):
    document = SPEC_MESSAGE | {"bid_request_id": "req-from-the-topic"}  # bid_request_id, no bid_id
    response = staff_api.post(URL, document, format="json")
    assert response.status_code == 201 and response.json()["bid_id"] == "req-from-the-topic"
