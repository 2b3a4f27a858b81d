"""The synthetic producer makes messages the consumer accepts, with a realistic shape."""

from collections import Counter

import orjson

from outcomes.ingest.messages import OutcomeEvent, parse_outcome
from outcomes.simulation import OutcomeSimulator


def test_simulated_outcomes_are_valid_and_realistic():
    messages = list(OutcomeSimulator(seed=3).stream(count=20000, days=7))
    events = [parse_outcome(orjson.dumps(m)) for m in messages]
    assert all(isinstance(e, OutcomeEvent) for e in events)
    assert len({e.bid_id for e in events}) == len(events)
    win_rate = sum(e.win_status for e in events) / len(events)
    assert 0.65 < win_rate < 0.75
    domains = Counter(e.site_domain for e in events)
    top_share = domains.most_common(1)[0][1] / len(events)
    assert 0.08 < top_share < 0.20  # skewed, as real traffic is
    assert len(domains) > 500
    assert all(e.win_price <= e.bid_price for e in events if e.win_status)
    assert {e.currency for e in events} >= {"USD", "EUR"}
    assert 0.8 < sum(e.enriched for e in events) / len(events) < 0.9
    days = {e.auction_timestamp.date() for e in events}
    assert len(days) >= 7


def test_same_seed_same_stream():
    first = [m["bid_request_id"] for m in OutcomeSimulator(seed=5).stream(count=50, days=1)]
    second = [m["bid_request_id"] for m in OutcomeSimulator(seed=5).stream(count=50, days=1)]
    assert first == second
