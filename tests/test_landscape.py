"""The bid landscape: buckets, the fitted W(b), the market price's Kaplan–Meier estimate and
the optimal bid — pure first, then through the real pipeline (Kafka → consumer → PostgreSQL →
``fit_bid_models`` → API) with market prices drawn from a known distribution."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient
from scipy import stats as scipy_stats

from outcomes import grains, landscape
from outcomes.landscape import Bucket
from tests.factories import encode, message

MARKET = scipy_stats.lognorm(s=0.4, scale=1.0)  # the highest competing bid: median 1.00
BID_LEVELS = [round(0.3 + 0.1 * i, 2) for i in range(18)]  # bids on a 10-cent grid, 0.30 to 2.00


def simulated_buckets(rng: np.random.Generator, per_level: int) -> list[Bucket]:
    """Second-price outcomes: each bid level ``per_level`` times against a market price drawn
    from MARKET; a bid above it wins and pays it (to the cent)."""
    paid: dict[int, int] = {}
    out = []
    for bid in BID_LEVELS:
        market = MARKET.rvs(size=per_level, random_state=rng)
        won = bid > market
        for price in np.maximum(np.round(market[won] * 100), 1).astype(int):
            lower = grains.price_bucket(int(price))[0]
            paid[lower] = paid.get(lower, 0) + 1
        out.append(Bucket(int(round(bid * 100)), per_level, int(won.sum()), 0, 1))
    cents = {b.cents: b for b in out}
    for lower, count in paid.items():
        b = cents.get(lower, Bucket(lower, 0, 0, 0, grains.price_bucket(lower)[1]))
        cents[lower] = Bucket(b.cents, b.bids, b.bid_wins, b.paid + count, b.width)
    return sorted(cents.values(), key=lambda b: b.cents)


@pytest.mark.fast
def test_price_buckets_are_one_cent_where_bids_are_and_wider_above():
    assert grains.price_bucket(0) == (0, 1) and grains.price_bucket(499) == (499, 1)
    assert grains.price_bucket(503) == (500, 5) and grains.price_bucket(1999) == (1995, 5)
    assert grains.price_bucket(2049) == (2000, 50) and grains.price_bucket(123456) == (120000, 10000)
    assert Bucket(1995, 1, 0, 0, 5).mid == pytest.approx(19.97)  # the middle of 19.95–19.99
    coarse = grains.DOMAIN_PRICE_STEPS  # per site domain: ten cents below 5.00
    assert grains.price_bucket(137, coarse) == (130, 10) and grains.price_bucket(2049, coarse) == (2000, 500)


@pytest.mark.fast
def test_the_fitted_curve_is_the_true_cdf_where_buckets_are_full():
    buckets = simulated_buckets(np.random.default_rng(1), 2000)
    fit = landscape.fit_curve(buckets, seed=1)
    for b in buckets:
        if b.bids >= 1000:
            assert abs(fit.curve([b.mid])[0] - MARKET.cdf(b.mid)) <= 0.03, b
    assert np.all(np.diff(fit.curve.y) >= 0)  # a higher bid never wins less often
    assert fit.holdout_outcomes == pytest.approx(0.2 * fit.outcomes, rel=0.05)
    assert fit.log_loss < fit.baseline_log_loss  # better than one rate for every bid
    assert fit.log_loss <= fit.empirical_log_loss + 0.005  # and as good as the raw rates


@pytest.mark.fast
def test_a_sparse_segment_is_shrunk_toward_its_parent():
    parent = landscape.Curve([0.0, 2.0], [0.0, 1.0])
    sparse = [Bucket(100, 3, 3, 0), Bucket(150, 3, 0, 0)]  # noisy: all won at 1.00, none at 1.50
    alone = landscape.fit_curve(sparse, seed=2)
    shrunk = landscape.fit_curve(sparse, parent=parent, seed=2)
    assert alone.curve([1.0])[0] > 0.45  # its own data say 1.00 wins more than 1.50: pooled to ~0.5
    assert abs(shrunk.curve([1.25])[0] - 0.625) < abs(alone.curve([1.25])[0] - 0.625)


@pytest.mark.fast
def test_kaplan_meier_finds_the_market_median_that_averaging_wins_misses():
    buckets = simulated_buckets(np.random.default_rng(3), 3000)
    found = landscape.market_price(buckets)
    assert found.median == pytest.approx(MARKET.median(), rel=0.05)
    assert found.p25 == pytest.approx(MARKET.ppf(0.25), rel=0.05)
    assert found.p75 == pytest.approx(MARKET.ppf(0.75), rel=0.05)
    naive = sum(b.mid * b.paid for b in buckets) / sum(b.paid for b in buckets)  # wins only
    assert naive < 0.93 * MARKET.mean()
    assert found.censored == sum(b.bids - b.bid_wins for b in buckets)


@pytest.mark.fast
def test_the_optimal_bid_is_the_analytic_optimum():
    buckets = simulated_buckets(np.random.default_rng(4), 3000)
    curve = landscape.fit_curve(buckets, seed=4).curve
    value = 2.0
    best, others = landscape.optimal_bid(curve, value, "first_price")
    assert best.bid == pytest.approx(landscape.analytic_first_price_optimum(MARKET.cdf, value), rel=0.05)
    assert best.expected_surplus == max(c.expected_surplus for c in others)
    assert [c.bid for c in others] == sorted(c.bid for c in others) and value in [c.bid for c in others]
    assert best.expected_cost == pytest.approx(best.bid * best.win_probability)
    # Second price: bidding the value is optimal (truthful), and costs less than the bid.
    second, _ = landscape.optimal_bid(curve, value, "second_price")
    assert second.bid == pytest.approx(value, abs=0.02)
    assert second.expected_cost < second.bid * second.win_probability
    with pytest.raises(ValueError, match="first_price, second_price"):
        landscape.bid_choices(curve, value, "vickrey")


# ---------------------------------------------------------------------------- database
@pytest.mark.django_db
def test_the_bucket_sql_is_the_bucket_rule():
    from django.db import connection

    samples = [0, 1, 499, 500, 503, 1999, 2000, 2049, 9999, 10000, 10499, 99999, 100000, 123456, 9_999_999]
    with connection.cursor() as cursor:
        for steps in (grains.PRICE_STEPS, grains.DOMAIN_PRICE_STEPS):
            lower = grains.price_bucket_sql("c", steps)
            cursor.execute(
                f"SELECT c, {lower}, {grains.price_width_sql(lower, steps)} FROM unnest(%s::bigint[]) c", [samples]
            )
            assert {c: (lo, width) for c, lo, width in cursor.fetchall()} == {
                c: grains.price_bucket(c, steps) for c in samples
            }


@pytest.mark.django_db
def test_a_window_gives_the_raw_rows_counts_and_filters_answer(outcome_factory):
    from dataclasses import replace
    from decimal import Decimal

    from outcomes.queries import OutcomeQuery
    from outcomes.queries.landscape import landscape_counts

    rng = random.Random(9)
    t0 = datetime(2026, 10, 5, tzinfo=UTC)
    for i in range(150):
        bid = Decimal(rng.choice([50, 75, 120, 730, 2510])) / 100
        won = rng.random() < 0.5
        outcome_factory(
            1,
            site_domain="a.example" if i % 3 else "b.example",
            currency="EUR" if i % 5 == 0 else "USD",
            bid_price=bid,
            win_status=won,
            win_price=(bid * Decimal("0.8")).quantize(Decimal("0.01")) if won else Decimal(0),
            auction_timestamp=t0 + timedelta(seconds=rng.randint(0, 3 * 86400)),
        )
    for query in (
        OutcomeQuery(),
        OutcomeQuery(start=t0 + timedelta(hours=5, seconds=7), end=t0 + timedelta(days=2, minutes=13)),
        OutcomeQuery(site_domain="a.example", currency="USD", start=t0 + timedelta(hours=30)),
    ):
        from_rollups = landscape_counts(query=query)
        from_raw = landscape_counts(query=replace(query, max_price=Decimal("99999999")))
        assert from_rollups.source.startswith("rollup:landscape"), from_rollups.source
        assert from_raw.source == "raw" and from_rollups.buckets == from_raw.buckets
        assert sum(b.bids for b in from_rollups.buckets) > 0
    every = landscape_counts(query=OutcomeQuery())
    assert every.currencies == 2 and every.currency is None
    assert {b.cents for b in every.buckets if b.bids} == {50, 75, 120, 730, 2500}


@pytest.mark.parametrize(
    ("path", "params", "field", "says"),
    [
        ("bid_landscape", {"win_status": "true"}, "win_status", "wins and losses alike"),
        ("bid_landscape", {"convert_to": "x"}, "convert_to", ""),
        ("optimal_bid", {}, "value", "required"),
        ("optimal_bid", {"value": "-1"}, "value", "greater than or equal to 0.01"),
        ("optimal_bid", {"value": "1", "currency": "EURO"}, "currency", ""),
        ("optimal_bid", {"value": "1", "start": "2026-01-01"}, "start", "Unknown query parameter"),
    ],
)
@pytest.mark.django_db
def test_a_bad_parameter_is_a_400_naming_it(path, params, field, says):
    response = APIClient().get(f"/api/insights/{path}/", params)
    assert response.status_code == 400, response.content
    assert says in str(response.json()[field])


@pytest.mark.django_db
def test_without_a_model_the_landscape_says_so_and_the_optimal_bid_is_a_409(outcome_factory):
    outcome_factory(3, currency="USD")
    answer = APIClient().get("/api/insights/bid_landscape/").json()
    assert answer["model"] is None and "no_model" in {w["code"] for w in answer["warnings"]}
    response = APIClient().get("/api/insights/optimal_bid/", {"value": "1.5", "currency": "USD"})
    assert response.status_code == 409 and "fit_bid_models" in response.json()["model"][0]


# ---------------------------------------------------------------------------- the real pipeline
def second_price_stream(rng: random.Random, n: int, start: datetime) -> list[bytes]:
    out = []
    for i in range(n):
        bid = BID_LEVELS[i % len(BID_LEVELS)]
        market = float(MARKET.ppf(rng.random()))
        won = bid > market
        out.append(
            encode(
                message(
                    bid_price=bid,
                    win_status=won,
                    win_price=max(round(market, 2), 0.01) if won else 0.0,
                    currency="USD",
                    site_domain=rng.choice(["news.example", "news.example", "small.example"]),
                    auction_timestamp=(start + timedelta(seconds=rng.randrange(5 * 86400)))
                    .isoformat()
                    .replace("+00:00", "Z"),
                )
            )
        )
    return out


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)  # the consumer commits: the rows are removed after
def test_a_known_market_through_kafka_the_job_and_the_api(
    make_topic, produce, consumer_settings, run_consumer, settings
):
    start = datetime(2026, 11, 1, tzinfo=UTC)
    stream = second_price_stream(random.Random(12), 45_000, start)
    topic = make_topic(2)
    produce(topic, stream)
    config = consumer_settings(topic, batch_size=5000, rollup_compact_seconds=0)
    assert run_consumer(config, max_messages=len(stream), timeout_ms=30000).stored == len(stream)
    call_command("fit_bid_models", "--end", "2026-11-06", "--days", "5")
    api = APIClient()

    settings.AUCTION_TYPE = "second_price"
    answer = api.get("/api/insights/bid_landscape/").json()
    assert answer["currency"] == "USD" and answer["model"]["version"] == 1
    full = [(p, w) for p, w in zip(answer["points"], answer["model"]["win_probability"], strict=True)]
    assert sum(p["outcomes"] for p, _w in full) == len(stream)
    checked = [(p, w) for p, w in full if p["outcomes"] >= 1000]
    assert len(checked) == len(BID_LEVELS)
    for point, fitted in checked:
        assert abs(fitted - MARKET.cdf(point["bid_price"])) <= 0.03, point
        assert point["ci_low"] <= point["win_rate"] <= point["ci_high"]
    market = answer["market_price"]
    assert market["median"] == pytest.approx(MARKET.median(), rel=0.05), market
    assert market["observed"] + market["censored"] == len(stream)
    holdout = answer["model"]["holdout"]
    assert holdout["log_loss"] < holdout["baseline_log_loss"]

    # One domain: its own model (enough outcomes), its own points.
    news = api.get("/api/insights/bid_landscape/", {"site_domain": "news.example"}).json()
    assert news["model"]["site_domain"] == "news.example" and not news["model"]["pooled"]
    assert sum(p["outcomes"] for p in news["points"]) < len(stream)

    settings.AUCTION_TYPE = "first_price"
    best = api.get("/api/insights/optimal_bid/", {"value": "2.00"}).json()
    optimum = landscape.analytic_first_price_optimum(MARKET.cdf, 2.0)
    assert best["optimal"]["bid"] == pytest.approx(optimum, rel=0.05), (best, optimum)
    assert best["currency"] == "USD" and best["auction_type"] == "first_price"
    assert len(best["alternatives"]) >= 5
    assert api.get("/api/insights/bid_landscape/").json()["market_price"] is None  # not observed in first price

    call_command("fit_bid_models", "--end", "2026-11-06", "--days", "5")
    assert api.get("/api/insights/bid_landscape/").json()["model"]["version"] == 2  # the latest is served
