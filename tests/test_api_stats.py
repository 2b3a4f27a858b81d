"""``stats`` and ``daily_stats`` on known data, computed independently here.

The data goes in through the write service, so these answers come from the rollups
(``X-Report-Source: rollup…``) unless a filter needs the raw table; both must equal what
this file computes from the rows themselves.
"""

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
STATS_KEYS = [
    "total_outcomes",
    "total_wins",
    "total_losses",
    "win_rate",
    "total_revenue",
    "average_win_price",
    "average_bid_price",
    "enriched_count",
]


def expected_stats(rows):
    wins = [r for r in rows if r["win_status"]]
    total = len(rows)
    return {
        "total_outcomes": total,
        "total_wins": len(wins),
        "total_losses": total - len(wins),
        "win_rate": round(len(wins) * 100 / total, 2) if total else 0.0,
        "total_revenue": float(sum((r["win_price"] for r in wins), Decimal(0))),
        "average_win_price": float(round(sum((r["win_price"] for r in wins), Decimal(0)) / len(wins), 4))
        if wins
        else 0.0,
        "average_bid_price": float(round(sum((r["bid_price"] for r in rows), Decimal(0)) / total, 4)) if total else 0.0,
        "enriched_count": sum(1 for r in rows if r["enriched"]),
        "ecpm": float(round(sum((r["win_price"] for r in wins), Decimal(0)) * 1000 / len(wins), 4)) if wins else 0.0,
        "shading_ratio": float(
            round(sum((r["win_price"] for r in wins), Decimal(0)) / sum((r["bid_price"] for r in wins), Decimal(0)), 4)
        )
        if wins and sum(r["bid_price"] for r in wins)
        else 0.0,
    }


def nearest_rank(values, percent):
    """The smallest value with at least percent% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[math.ceil(Decimal(percent) * len(ordered) / 100) - 1])


def expected_full_stats(rows):
    wins = [r["win_price"] for r in rows if r["win_status"]]
    bids = [r["bid_price"] for r in rows]
    return {
        **expected_stats(rows),
        "win_price_percentiles": {f"p{p}": nearest_rank(wins, p) for p in (50, 90, 99)},
        "bid_price_percentiles": {f"p{p}": nearest_rank(bids, p) for p in (50, 90, 99)},
        "percentiles_omitted": None,
    }


@pytest.fixture
def dataset(outcome_factory):
    rng = random.Random(7)
    start = datetime(2025, 10, 20, tzinfo=UTC)
    rows = []
    for i in range(240):
        won = rng.random() < 0.7
        bid = Decimal(rng.randint(10, 300)) / 100
        row = {
            "user_id": rng.choice(["alice", "bob", "carol"]),
            "site_domain": rng.choice(["a.example", "b.example"]),
            "win_status": won,
            "bid_price": bid,
            "win_price": (bid * Decimal(rng.choice(["0.5", "0.75", "1"]))).quantize(Decimal("0.01"))
            if won
            else Decimal("0.00"),
            "enriched": rng.random() < 0.8,
            # five days, including times near midnight on both sides
            "auction_timestamp": start
            + timedelta(days=i % 5, hours=rng.choice([0, 12, 23]), minutes=rng.choice([0, 59])),
        }
        outcome_factory(1, **row)
        rows.append(row)
    return rows


def test_empty_stats_are_zeros():
    assert APIClient().get("/api/outcomes/stats/").json() == expected_full_stats([])
    assert expected_full_stats([])["total_revenue"] == 0.0
    assert APIClient().get("/api/outcomes/daily_stats/").json() == []


def test_stats_match_an_independent_computation(dataset):
    response = APIClient().get("/api/outcomes/stats/")
    body = response.json()
    assert list(body)[: len(STATS_KEYS)] == STATS_KEYS  # the specification's keys come first
    assert body == expected_full_stats(dataset)
    assert response["X-Report-Source"].startswith("rollup:outcomes:day")


@pytest.mark.parametrize(
    "params",
    [
        {"user_id": "bob"},
        {"site_domain": "a.example", "enriched": "true"},
        {"min_price": "0.5"},
        {"win_status": "false"},
        {"win_status": "true", "currency": "USD"},
        {"site_domain": "b.example", "win_status": "true"},
        {"start": "2025-10-21T12:00:00Z", "end": "2025-10-23T23:59:00Z"},
        {"start": "2025-10-21T00:30:00Z", "enriched": "false"},
        {"end": "2025-10-22T12:00:00.5Z"},
    ],
)
def test_filtered_stats_match(dataset, params):
    def keep(row):
        return all(
            (name == "user_id" and row["user_id"] == value)
            or (name == "site_domain" and row["site_domain"] == value)
            or (name == "enriched" and row["enriched"] == (value == "true"))
            or (name == "win_status" and row["win_status"] == (value == "true"))
            or (name == "min_price" and row["win_price"] >= Decimal(value))
            or (name == "currency" and value == "USD")
            or (name == "start" and row["auction_timestamp"] >= datetime.fromisoformat(value))
            or (name == "end" and row["auction_timestamp"] < datetime.fromisoformat(value))
            for name, value in params.items()
        )

    response = APIClient().get("/api/outcomes/stats/", params)
    assert response.json() == expected_full_stats([r for r in dataset if keep(r)])
    needs_raw = {"user_id", "min_price"} & set(params) or ("site_domain" in params and "enriched" in params)
    needs_raw = needs_raw or params.get("end", "").endswith(".5Z")  # not on a whole minute
    assert (response["X-Report-Source"] == "raw") == bool(needs_raw), response["X-Report-Source"]


def test_daily_stats_across_days(dataset):
    by_day = defaultdict(list)
    for row in dataset:
        by_day[row["auction_timestamp"].date().isoformat()].append(row)
    body = APIClient().get("/api/outcomes/daily_stats/").json()
    assert [entry["date"] for entry in body] == sorted(by_day)
    assert len(body) == 5
    for entry in body:
        assert entry == {"date": entry["date"], **expected_stats(by_day[entry["date"]])}


def test_daily_stats_use_storage_day_when_auction_time_is_missing(outcome_factory):
    outcome_factory(2, auction_timestamp=None)
    body = APIClient().get("/api/outcomes/daily_stats/").json()
    assert len(body) == 1
    assert body[0]["date"] == datetime.now(UTC).date().isoformat()
    assert body[0]["total_outcomes"] == 2


def test_percentiles_beyond_the_raw_limit_are_omitted_and_say_why(dataset, monkeypatch):
    from outcomes import queries

    monkeypatch.setattr(queries, "RAW_PERCENTILE_LIMIT", 10)
    body = APIClient().get("/api/outcomes/stats/", {"site_domain": "a.example"}).json()
    assert body["win_price_percentiles"] is None and body["bid_price_percentiles"] is None
    assert "site_domain" in body["percentiles_omitted"]
    rows = [r for r in dataset if r["site_domain"] == "a.example"]
    assert body["total_outcomes"] == len(rows) > 10
    # the price rollups answer windows and win_status at any size
    assert APIClient().get("/api/outcomes/stats/", {"win_status": "true"}).json()["percentiles_omitted"] is None
