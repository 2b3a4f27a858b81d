"""Reports beyond the spec's: time series, breakdowns, histograms, reach; computed here independently."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
BASE = datetime(2025, 3, 8, 0, 0, tzinfo=UTC)  # the weekend US clocks change (2025-03-09)


@pytest.fixture
def rows(outcome_factory):
    rng = random.Random(3)
    made = []
    for _ in range(300):
        won = rng.random() < 0.7
        bid = Decimal(rng.randint(1, 400)) / 100
        row = {
            "user_id": f"user-{rng.randint(1, 60)}",
            "site_domain": rng.choice(["a.example", "b.example", "c.example", "d.example", None]),
            "win_status": won,
            "bid_price": bid,
            "win_price": (bid * Decimal(rng.choice(["0.6", "0.9", "1"]))).quantize(Decimal("0.01"))
            if won
            else Decimal(0),
            "currency": rng.choice(["USD", "USD", "EUR", "GBP"]),
            "enriched": rng.random() < 0.8,
            "user_interests": rng.sample(["sports", "news", "travel"], rng.randint(0, 2)),
            "auction_timestamp": BASE + timedelta(minutes=rng.randint(0, 3 * 24 * 60 - 1), seconds=rng.randint(0, 59)),
        }
        made.append(row)
    outcome_factory.many(made)
    return made


def get(path, params=None):
    return APIClient().get(f"/api/outcomes/{path}", params or {})


# ---------------------------------------------------------------------------- timeseries
def test_hourly_series_fills_empty_buckets_with_zeros(outcome_factory):
    outcome_factory(2, auction_timestamp=BASE + timedelta(hours=1, minutes=5))
    outcome_factory(1, auction_timestamp=BASE + timedelta(hours=4, minutes=59), win_status=False, win_price=0)
    response = get(
        "timeseries/", {"granularity": "hour", "start": "2025-03-08T00:00:00Z", "end": "2025-03-08T06:00:00Z"}
    )
    assert response.status_code == 200
    buckets = response.json()["buckets"]
    assert [b["bucket"] for b in buckets] == [f"2025-03-08T0{h}:00:00Z" for h in range(6)]
    assert [b["outcomes"] for b in buckets] == [0, 2, 0, 0, 1, 0]
    assert [b["wins"] for b in buckets] == [0, 2, 0, 0, 0, 0]
    assert buckets[1]["revenue"] == 1.6 and buckets[1]["win_rate"] == 100.0
    assert buckets[0] == {**buckets[0], "win_rate": 0.0, "revenue": 0.0, "average_bid_price": 0.0}
    assert response["X-Report-Source"] == "rollup:outcomes:hour"


@pytest.mark.parametrize(
    ("granularity", "tz", "start", "end"),
    [
        ("minute", "UTC", "2025-03-08T10:00:00Z", "2025-03-08T13:00:00Z"),
        ("hour", "UTC", "2025-03-08T10:17:00Z", "2025-03-10T03:00:00Z"),
        ("day", "UTC", "2025-03-08T00:00:00Z", "2025-03-11T00:00:00Z"),
        ("day", "America/New_York", "2025-03-07T12:00:00Z", "2025-03-11T12:00:00Z"),
        ("day", "Asia/Kolkata", "2025-03-07T12:00:00Z", "2025-03-11T12:00:00Z"),
        ("week", "Europe/Paris", "2025-03-01T00:00:00Z", "2025-03-20T00:00:00Z"),
        ("month", "UTC", "2025-02-15T00:00:00Z", "2025-04-02T00:00:00Z"),
        ("hour", "UTC", "2025-03-08T10:17:30Z", "2025-03-08T20:00:00Z"),  # not on a minute: raw edges
        ("day", "Europe/Paris", "2025-03-07T09:13:07.25Z", "2025-03-10T17:44:59Z"),
    ],
)
def test_series_match_an_independent_computation(rows, granularity, tz, start, end):
    response = get("timeseries/", {"granularity": granularity, "tz": tz, "start": start, "end": end})
    assert response.status_code == 200, response.json()
    body = response.json()
    buckets = body["buckets"]
    lo, hi = datetime.fromisoformat(start), datetime.fromisoformat(end)
    zone = ZoneInfo(tz)
    assert datetime.fromisoformat(body["start"]) == lo and datetime.fromisoformat(body["end"]) == hi
    for bucket in buckets:
        b_lo, b_hi = datetime.fromisoformat(bucket["bucket"]), datetime.fromisoformat(bucket["bucket_end"])
        # Labels are in the zone's offset at that moment (Z for UTC), on its calendar.
        assert b_lo.utcoffset() == b_lo.astimezone(zone).utcoffset()
        assert bucket["bucket"].endswith("Z") == (tz == "UTC")
        local = b_lo.astimezone(zone)
        assert local.second == 0 and (granularity == "minute" or local.minute == 0)
        if granularity in ("day", "week", "month"):
            assert local.hour == 0
        assert bucket["partial"] == (b_lo < lo or b_hi > hi)
        inside = [r for r in rows if b_lo <= r["auction_timestamp"] < b_hi and lo <= r["auction_timestamp"] < hi]
        wins = [r for r in inside if r["win_status"]]
        assert bucket["outcomes"] == len(inside)
        assert bucket["wins"] == len(wins)
        assert bucket["revenue"] == float(sum((r["win_price"] for r in wins), Decimal(0)))
    assert datetime.fromisoformat(buckets[0]["bucket"]) <= lo < datetime.fromisoformat(buckets[0]["bucket_end"])
    assert datetime.fromisoformat(buckets[-1]["bucket"]) < hi <= datetime.fromisoformat(buckets[-1]["bucket_end"])
    assert sum(b["outcomes"] for b in buckets) == sum(1 for r in rows if lo <= r["auction_timestamp"] < hi)
    source = response["X-Report-Source"]
    assert source.startswith("rollup:"), source
    unaligned = lo.second != 0 or lo.microsecond != 0 or hi.second != 0
    assert ("raw edges" in source or "raw trims" in source) == unaligned, source


def test_series_label_buckets_in_the_zone_and_mark_partial_ones(outcome_factory):
    outcome_factory(1, auction_timestamp=datetime(2026, 11, 3, 0, 30, tzinfo=ZoneInfo("Europe/Paris")))
    params = {"granularity": "day", "tz": "Europe/Paris", "start": "2026-11-02T15:04:44.463202Z"}
    body = get("timeseries/", {**params, "end": "2026-11-04T23:00:00Z"}).json()
    assert [b["bucket"] for b in body["buckets"]] == [
        "2026-11-02T00:00:00+01:00",
        "2026-11-03T00:00:00+01:00",
        "2026-11-04T00:00:00+01:00",
    ]
    assert [b["partial"] for b in body["buckets"]] == [True, False, False]
    assert [b["outcomes"] for b in body["buckets"]] == [0, 1, 0]
    assert body["start"] == "2026-11-02T16:04:44.463202+01:00" and body["end"] == "2026-11-05T00:00:00+01:00"


def test_minute_series_without_filters_read_the_total_grain(rows):
    window = {"granularity": "minute", "start": "2025-03-08T10:00:00Z", "end": "2025-03-08T13:00:00Z"}
    plain = get("timeseries/", window)
    assert plain["X-Report-Source"] == "rollup:total:minute"
    currencies = {r["currency"] for r in rows}
    by_currency = [get("timeseries/", {**window, "currency": c}) for c in currencies]
    assert {r["X-Report-Source"] for r in by_currency} == {"rollup:outcomes:minute"}
    # The per-currency series add up to the dimensionless one, bucket by bucket.
    for index, bucket in enumerate(plain.json()["buckets"]):
        assert bucket["outcomes"] == sum(r.json()["buckets"][index]["outcomes"] for r in by_currency)
        assert bucket["wins"] == sum(r.json()["buckets"][index]["wins"] for r in by_currency)
    won = get("timeseries/", {**window, "win_status": "true"})
    assert won["X-Report-Source"] == "rollup:total:minute"
    assert [b["outcomes"] for b in won.json()["buckets"]] == [b["wins"] for b in plain.json()["buckets"]]


def _walk(granularity, start, end, tz):
    """Bucket boundaries the slow way: step through local time one bucket at a time."""
    from outcomes.queries.calendar import floor_local as _floor_local
    from outcomes.queries.calendar import next_local as _next_local

    out, moment = [start], _floor_local(start, granularity, tz)
    while (moment := _next_local(moment, granularity, tz)) < end:
        out.append(moment)
    return [*out, end]


@pytest.mark.parametrize("granularity", ["minute", "hour", "day", "week", "month"])
@pytest.mark.parametrize("tz", ["UTC", "Asia/Kolkata", "America/New_York"])
def test_bucket_boundaries_match_a_walk_through_local_time(granularity, tz):
    from outcomes.queries import timeseries_buckets

    rng = random.Random(f"{granularity}{tz}")
    span = {"minute": 1500, "hour": 24 * 60, "day": 60 * 24 * 90}.get(granularity, 60 * 24 * 400)
    for _ in range(25):
        start = BASE + timedelta(seconds=rng.randrange(-(10**7), 10**7), microseconds=rng.randrange(10**6))
        end = start + timedelta(minutes=rng.randrange(1, span), seconds=rng.choice([0, 17]))
        got = timeseries_buckets(granularity=granularity, start=start, end=end, tz=ZoneInfo(tz))
        assert got == _walk(granularity, start, end, ZoneInfo(tz))


def test_the_bucket_limit_is_exact():
    from outcomes.queries import MAX_BUCKETS, timeseries_buckets

    start = BASE
    ok = timeseries_buckets(
        granularity="minute", start=start, end=start + timedelta(minutes=MAX_BUCKETS), tz=ZoneInfo("UTC")
    )
    assert len(ok) - 1 == MAX_BUCKETS
    with pytest.raises(ValueError, match="More than"):
        timeseries_buckets(
            granularity="minute", start=start, end=start + timedelta(minutes=MAX_BUCKETS, seconds=1), tz=ZoneInfo("UTC")
        )


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"granularity": "fortnight"}, "granularity"),
        ({"granularity": "minute", "start": "2025-01-01T00:00:00Z", "end": "2025-01-03T00:00:00Z"}, "granularity"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"start": "2025-01-02T00:00:00Z", "end": "2025-01-01T00:00:00Z"}, "start"),
        ({"ordering": "-win_price"}, "ordering"),
        ({"page": "2"}, "page"),
    ],
)
def test_series_refuse_bad_parameters(params, name):
    response = get("timeseries/", params)
    assert response.status_code == 400
    assert name in response.json()


# ---------------------------------------------------------------------------- breakdown
@pytest.mark.parametrize("by", ["site_domain", "currency", "enriched", "interest"])
@pytest.mark.parametrize("order", ["revenue", "wins", "outcomes", "win_rate"])
def test_breakdown_top_n_and_others_add_up_to_the_total(rows, by, order):
    body = get("breakdown/", {"by": by, "order": order, "limit": 2}).json()
    groups: dict = {}
    for r in rows:
        keys = (r["user_interests"] or [""]) if by == "interest" else [r[by] if r[by] is not None else ""]
        for key in keys:
            groups.setdefault(key, []).append(r)

    def measure(members):
        wins = [m for m in members if m["win_status"]]
        return {
            "outcomes": len(members),
            "wins": len(wins),
            "win_rate": round(len(wins) * 100 / len(members), 2),
            "revenue": float(sum((m["win_price"] for m in wins), Decimal(0))),
        }

    expected = {key: measure(members) for key, members in groups.items()}
    exact_rate = {key: Fraction(expected[key]["wins"], expected[key]["outcomes"]) for key in expected}

    def rank(key):  # win rate by its exact value, not the rounded figure shown
        value = exact_rate[key] if order == "win_rate" else expected[key][order]
        return (-value, -expected[key]["outcomes"], str(key))

    ranked = sorted(expected, key=rank)
    assert [row[by] for row in body["rows"]] == ranked[:2]
    for row in body["rows"]:
        assert {k: row[k] for k in ("outcomes", "wins", "win_rate", "revenue")} == expected[row[by]]
    for measure_name in ("outcomes", "wins"):
        assert sum(r[measure_name] for r in body["rows"]) + body["others"][measure_name] == body["total"][measure_name]
    assert body["total"]["outcomes"] == sum(len(m) for m in groups.values())
    assert body["others"]["values"] == len(groups) - 2 and body["total"]["values"] == len(groups)
    assert round(sum(r["revenue"] for r in body["rows"]) + body["others"]["revenue"], 2) == body["total"]["revenue"]


def test_breakdown_with_a_filter_the_rollup_lacks_uses_the_raw_table(rows):
    response = get("breakdown/", {"by": "site_domain", "enriched": "true"})
    assert response["X-Report-Source"] == "raw"
    assert response.json()["total"]["outcomes"] == sum(1 for r in rows if r["enriched"])
    assert get("breakdown/", {"by": "site_domain"})["X-Report-Source"].startswith("rollup:domain")
    # The domain rollups keep the currency: a domain breakdown of one currency reads them.
    response = get("breakdown/", {"by": "site_domain", "currency": "EUR"})
    assert response["X-Report-Source"].startswith("rollup:domain")
    assert response.json()["total"]["outcomes"] == sum(1 for r in rows if r["currency"] == "EUR")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({}, "by"),
        ({"by": "user_id"}, "by"),
        ({"by": "currency", "limit": "0"}, "limit"),
        ({"by": "x", "order": "y"}, "order"),
    ],
)
def test_breakdown_refuses_bad_parameters(params, name):
    response = get("breakdown/", params)
    assert response.status_code == 400 and name in response.json()


# ---------------------------------------------------------------------------- prices
def test_histogram_counts_every_price_once(rows):
    body = get("histogram/", {"price": "bid_price", "bins": 7}).json()
    assert body["count"] == len(rows) == sum(b["count"] for b in body["bins"])
    assert len(body["bins"]) == 7 and body["bins"][-1]["upper"] is None
    for b in body["bins"][:-1]:
        assert b["count"] == sum(1 for r in rows if b["lower"] <= float(r["bid_price"]) < b["upper"])
    wins = get("histogram/", {"price": "win_price", "win_status": "true"}).json()
    assert wins["count"] == sum(1 for r in rows if r["win_status"])
    assert get("histogram/", {"bins": "500"}).status_code == 400


# ---------------------------------------------------------------------------- reach
def test_reach_small_is_exact_and_filtered_reach_is_exact(rows):
    users = {r["user_id"] for r in rows}
    body = get("reach/").json()
    assert body["reach"] == len(users)  # a sketch of a few users is exact
    assert body["lower_bound"] <= len(users) <= body["upper_bound"]
    eur = get("reach/", {"currency": "EUR"})
    assert eur["X-Report-Source"] == "raw"
    assert eur.json() == {
        "reach": len({r["user_id"] for r in rows if r["currency"] == "EUR"}),
        "exact": True,
        "lower_bound": eur.json()["reach"],
        "upper_bound": eur.json()["reach"],
    }


def test_reach_of_many_users_is_within_its_documented_bounds():
    rng = random.Random(5)
    users = [f"u-{uuid.UUID(int=rng.getrandbits(128))}" for _ in range(20_000)]
    picks = [rng.choice(users) for _ in range(40_000)]
    for start in range(0, len(picks), 10_000):
        _bulk(picks[start : start + 10_000], start)
    distinct = len(set(picks))
    response = get("reach/", {"start": "2025-03-08T00:00:00Z", "end": "2025-03-09T00:00:00Z"})
    body = response.json()
    assert response["X-Report-Source"].startswith("rollup")
    assert body["exact"] is False
    assert body["lower_bound"] <= distinct <= body["upper_bound"]
    assert abs(body["reach"] - distinct) / distinct < 3 * body["relative_standard_error"]


def _bulk(users, offset):
    from outcomes import writes
    from tests.factories import parse_document

    batch = writes.Batch()
    for i, user in enumerate(users):
        at = BASE + timedelta(seconds=offset + i)
        document = {"bid_id": f"reach-{offset + i}", "user_id": user, "bid_price": "1.00", "win_status": False}
        document["auction_timestamp"] = at.isoformat()
        batch.events.append((parse_document(document), writes.Position("reach", 0, offset + i)))
    assert writes.write_batch(batch, consumer_group="reach").stored == len(users)


def test_counts_in_reach_match_breakdown(rows):
    by_currency = Counter(r["currency"] for r in rows)
    body = get("breakdown/", {"by": "currency", "order": "outcomes", "limit": 10}).json()
    assert {row["currency"]: row["outcomes"] for row in body["rows"]} == dict(by_currency)


def test_report_responses_have_the_fields_their_schema_declares(rows):
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]

    def declared(path):
        response = schema["paths"][f"/api/outcomes/{path}"]["get"]["responses"]["200"]["content"]["application/json"]
        ref = response["schema"].get("$ref") or response["schema"]["items"]["$ref"]
        return components[ref.rsplit("/", 1)[-1]]

    for path, params in [
        ("stats/", {}),
        ("daily_stats/", {}),
        ("timeseries/", {"granularity": "day", "start": "2025-03-08T00:00:00Z", "end": "2025-03-11T00:00:00Z"}),
        ("breakdown/", {"by": "currency"}),
        ("histogram/", {}),
        ("reach/", {}),
        ("reach/", {"currency": "EUR"}),
    ]:
        body = get(path, params).json()
        item = body[0] if isinstance(body, list) else body
        component = declared(path)
        properties = set(component["properties"])
        assert set(item) <= properties, (path, set(item) - properties)
        assert set(component.get("required", [])) <= set(item), path
