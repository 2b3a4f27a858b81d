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
        # Not converted: the one currency of the outcomes (all USD here), none when empty.
        "currency": "USD" if rows else None,
        "mixed_currencies": False,
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
        "percentiles_sample": None,
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
        rows.append(row)
    outcome_factory.many(rows)
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
    source = response["X-Report-Source"]
    assert (source == "raw") == bool(needs_raw), source
    # An end between minutes: the rollups answer the whole buckets, the raw table the edge
    # (the price rollups' finest grain is the hour: their edges are whatever is not a whole hour).
    measures_source = source.split(";")[0]
    unaligned = not needs_raw and params.get("end", "").endswith(".5Z")
    assert ("raw edges" in measures_source or "raw trims" in measures_source) == unaligned, source


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


def test_percentiles_of_small_raw_sets_are_exact(dataset):
    rows = [r for r in dataset if r["site_domain"] == "a.example"]
    body = APIClient().get("/api/outcomes/stats/", {"site_domain": "a.example"}).json()
    assert body["percentiles_sample"] is None
    assert body == expected_full_stats(rows)


def test_percentiles_of_large_raw_sets_come_from_a_uniform_sample_within_their_bound(monkeypatch):
    """Above the raw limit, a filter the price rollups lack (site_domain) is answered from the
    ``sample < k`` rows; each percentile's true rank must be within the reported DKW bound."""
    from django.db import connection

    from outcomes import writes
    from outcomes.queries import prices
    from tests.factories import parse_document

    rng = random.Random(11)
    batch = writes.Batch()
    for i in range(12_000):
        won = rng.random() < 0.7
        bid = max(Decimal("0.01"), Decimal(round(math.exp(rng.gauss(-0.3, 0.6)), 2)))
        document = {
            "bid_id": f"s-{i}-{rng.random()}",
            "user_id": f"u{rng.randrange(500)}",
            "site_domain": "big.example" if i % 4 else "other.example",
            "win_status": won,
            "bid_price": str(bid),
            "win_price": str((bid * Decimal(rng.uniform(0.55, 1))).quantize(Decimal("0.01")) if won else 0),
            "currency": "USD",
            "auction_timestamp": (datetime(2025, 10, 20, tzinfo=UTC) + timedelta(seconds=i * 7)).isoformat(),
        }
        batch.events.append((parse_document(document), writes.Position("t", 0, i)))
    assert writes.write_batch(batch, consumer_group="t").stored == 12_000
    monkeypatch.setattr(prices, "RAW_PERCENTILE_LIMIT", 1_000)
    monkeypatch.setattr(prices, "PERCENTILE_SAMPLE", 2_000)

    body = APIClient().get("/api/outcomes/stats/", {"site_domain": "big.example"}).json()
    rows = [
        (e.bid_id, e.win_status, e.win_price, e.bid_price) for e, _ in batch.events if e.site_domain == "big.example"
    ]
    assert body["total_outcomes"] == len(rows) == 9_000
    k = math.ceil(1024 * 2_000 / 9_000)  # 228 of 1024 hash buckets
    with connection.cursor() as cursor:  # the sample, from the bid ids alone
        cursor.execute("SELECT b FROM unnest(%s::text[]) b WHERE (hashtext(b) & 1023) < %s", [[r[0] for r in rows], k])
        sampled = {b for (b,) in cursor.fetchall()}
    sample = body["percentiles_sample"]
    assert sample["fraction"] == k / 1024
    assert sample["outcomes"] == len(sampled) and sample["wins"] == sum(1 for r in rows if r[0] in sampled and r[1])
    bound = math.sqrt(math.log(200) / (2 * sample["wins"]))
    assert sample["rank_error"] == pytest.approx(bound, abs=1e-6)
    assert 0.02 < bound < 0.05
    for key, values in (
        ("win_price_percentiles", sorted(r[2] for r in rows if r[1])),
        ("bid_price_percentiles", sorted(r[3] for r in rows)),
    ):
        for p in (50, 90, 99):
            reported = Decimal(str(body[key][f"p{p}"]))
            below = sum(1 for v in values if v < reported) / len(values)
            at_or_below = sum(1 for v in values if v <= reported) / len(values)
            assert below - bound <= p / 100 <= at_or_below + bound, (key, p, reported)

    histogram = APIClient().get("/api/outcomes/histogram/", {"site_domain": "big.example", "price": "bid_price"})
    histogram = histogram.json()
    assert histogram["sample"] == sample
    assert sum(b["count"] for b in histogram["bins"]) == histogram["count"]
    assert abs(histogram["count"] - 9_000) < 9_000 * 0.1  # the sample's size scaled up
    # the price rollups answer windows and win_status at any size, exactly
    assert APIClient().get("/api/outcomes/stats/", {"win_status": "true"}).json()["percentiles_sample"] is None


def test_sample_rank_error_is_the_dkw_bound():
    from outcomes.queries import sample_rank_error

    assert sample_rank_error(20_000) == pytest.approx(0.01151, abs=1e-5)
    assert sample_rank_error(5_000) == pytest.approx(2 * sample_rank_error(20_000))
