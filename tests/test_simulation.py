"""The synthetic producer makes messages the consumer accepts, with a realistic shape."""

import io
import signal
from collections import Counter

import orjson
import pytest

from outcomes.messages import OutcomeEvent, parse_outcome
from outcomes.simulation import OutcomeSimulator
from tests.factories import BROKERS


@pytest.mark.fast
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


@pytest.mark.fast
def test_the_simulated_bidder_runs_an_experiment_with_a_known_effect():
    from outcomes.experiments import plan_errors
    from outcomes.simulation import EFFECT_BID, EFFECT_WIN_RATE, EXPERIMENT

    events = [parse_outcome(orjson.dumps(m)) for m in OutcomeSimulator(seed=9).stream(count=60000)]
    tagged = [e for e in events if e.experiment is not None]
    assert {e.experiment for e in tagged} == {"shading-v2"}
    assert 0.17 < len(tagged) / len(events) < 0.23  # one user in five
    by_variant = {v: [e for e in tagged if e.variant == v] for v in ("control", "B")}
    assert 0.45 < len(by_variant["B"]) / len(tagged) < 0.55
    users = {}
    for e in tagged:
        users.setdefault(e.user_id, set()).add(e.variant)
    assert all(len(seen) == 1 for seen in users.values())  # a user sees one variant
    win_rate = {v: sum(e.win_status for e in es) / len(es) for v, es in by_variant.items()}
    assert abs(win_rate["B"] - win_rate["control"] - EFFECT_WIN_RATE) < 0.02
    mean_bid = {v: sum(float(e.bid_price) for e in es) / len(es) for v, es in by_variant.items()}
    assert abs(mean_bid["B"] / mean_bid["control"] - EFFECT_BID) < 0.04
    assert (
        plan_errors(
            **{k: EXPERIMENT.get(k) for k in ("variants", "primary_metric", "guardrail_metrics")}, start=None, end=None
        )
        == {}
    )


@pytest.mark.fast
def test_same_seed_same_stream():
    first = [m["bid_request_id"] for m in OutcomeSimulator(seed=5).stream(count=50, days=1)]
    second = [m["bid_request_id"] for m in OutcomeSimulator(seed=5).stream(count=50, days=1)]
    assert first == second


@pytest.mark.kafka
def test_create_topic_is_idempotent(kafka_admin, settings):
    import dataclasses
    import uuid

    from django.core.management import call_command

    topic = f"test-created-{uuid.uuid4().hex[:8]}"
    settings.CONSUMER = dataclasses.replace(settings.CONSUMER, brokers=(BROKERS,))
    out = io.StringIO()
    call_command("create_topic", "--topic", topic, "--partitions", "2", stdout=out)
    call_command("create_topic", "--topic", topic, "--partitions", "2", stdout=out)
    assert out.getvalue().splitlines() == [f"created topic {topic} (2 partitions)", f"topic {topic} exists"]
    described = kafka_admin.describe_topics([topic])
    assert len(described[0]["partitions"]) == 2
    kafka_admin.delete_topics([topic])


@pytest.mark.kafka
@pytest.mark.django_db
def test_the_simulator_reports_progress_every_few_seconds(make_topic, settings, monkeypatch):
    import dataclasses

    from django.core.management import call_command

    from outcomes.management.commands import simulate_auctions

    monkeypatch.setattr(simulate_auctions, "REPORT_EVERY_S", 0.1)
    settings.CONSUMER = dataclasses.replace(settings.CONSUMER, brokers=(BROKERS,))
    topic = make_topic(1)
    out = io.StringIO()
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        call_command(
            "simulate_auctions", "--topic", topic, "--count", "60", "--rate", "200", "--register-experiment", stdout=out
        )
    finally:  # the command stops on SIGINT/SIGTERM by its own handlers: give pytest its own back
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    lines = out.getvalue().splitlines()
    from outcomes.models import Experiment

    assert lines[0] == "experiment shading-v2 registered"  # what make run asks for: its experiment known
    assert Experiment.objects.get(key="shading-v2").full_clean() is None
    progress = [line for line in lines if line.startswith("sent ") and "/s)" in line]
    assert len(progress) >= 2, lines  # ~0.3 s at 200/s: a line every 0.1 s, not every 10,000 messages
    assert lines[-1].startswith(f"sent 60 outcomes to {topic} in ")


@pytest.mark.fast
def test_bidding_matters_in_the_simulated_auctions():
    """Second-price auctions against a market price: a higher bid wins more often, a win pays
    the market price (at most the bid), so the bid landscape has a real shape."""
    events = [parse_outcome(orjson.dumps(m)) for m in OutcomeSimulator(seed=4).stream(count=20000)]
    ordered = sorted(events, key=lambda e: e.bid_price)
    fifth = len(ordered) // 5
    low, high = ordered[:fifth], ordered[-fifth:]
    low_rate = sum(e.win_status for e in low) / len(low)
    high_rate = sum(e.win_status for e in high) / len(high)
    assert low_rate < 0.45 and high_rate > 0.9
    won = [e for e in events if e.win_status]
    assert all(e.win_price <= e.bid_price for e in won)
    assert 0.3 < sum(float(e.win_price) for e in won) / sum(float(e.bid_price) for e in won) < 0.7
