"""The consumer against the real Kafka broker and PostgreSQL."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections import Counter

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from outcomes import writes
from outcomes.models import AuctionOutcome, ConsumerOffset, DeadLetter
from tests.factories import BROKERS, SPEC_MESSAGE, encode, message, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka]

SPEC_RESPONSE = {
    "bid_id": "req-123",
    "user_id": "user-456",
    "site_domain": "",
    "win_status": True,
    "win_price": "0.80",
    "bid_price": "0.80",
    "currency": "USD",
    "enriched": True,
    "user_interests": ["technology", "sports"],
    "is_winner": True,
    "profit_margin": 0.0,
    "auction_timestamp": "2025-10-25T12:00:02Z",
}


def bad_messages() -> list[tuple[bytes | None, bytes | None, str]]:
    """(key, value, expected reason) for every kind of bad message."""
    without = lambda field: encode({k: v for k, v in message().items() if k != field})  # noqa: E731
    return [
        (None, b"not json at all", "invalid_json"),
        (None, b"[1, 2, 3]", "not_an_object"),
        (None, without("user_id"), "missing_field"),
        (None, encode(message(win_status="yes")), "wrong_type"),
        (None, encode(message(bid_price=-1.0)), "negative_price"),
        (None, encode(message(currency="dollars")), "invalid_currency"),
        (None, encode(message(bid_price=99999.0, win_price=1.0)), "price_above_bound"),
        (None, encode(message(auction_timestamp="25/10/2025 12:00")), "invalid_timestamp"),
        (None, encode(message(user_interests=["x" * 100] * 90, site_domain="y" * 200)) + b" " * 60000, "oversized"),
        (None, b'{"bid_request_id": "\xff\xfe"}', "undecodable_value"),
        (b"\xff\xfe", encode(message()), "undecodable_key"),
        (None, b"", "empty_message"),
    ]


def test_spec_example_flows_from_topic_to_api(make_topic, produce, consumer_settings):
    topic = make_topic()
    produce(topic, [encode(SPEC_MESSAGE)])
    config = consumer_settings(topic)
    call_command("process_outcomes", "--max-messages", "1", "--topic", topic, "--group", config.group)

    row = AuctionOutcome.objects.get()
    assert row.raw_data == SPEC_MESSAGE
    body = APIClient().get(f"/api/outcomes/{row.id}/").json()
    assert {k: body[k] for k in SPEC_RESPONSE} == SPEC_RESPONSE
    assert set(body) == set(SPEC_RESPONSE) | {"id", "timestamp", "created_at", "updated_at", "experiment", "variant"}
    assert body["experiment"] is None and body["variant"] is None  # the spec's message is untagged
    for key in ("timestamp", "created_at", "updated_at"):
        assert body[key].endswith("Z")
    assert APIClient().get("/api/outcomes/").json()["results"] == [body]
    stats = APIClient().get("/api/outcomes/stats/").json()
    assert stats == {
        "total_outcomes": 1,
        "total_wins": 1,
        "total_losses": 0,
        "win_rate": 100.0,
        "total_revenue": 0.8,
        "average_win_price": 0.8,
        "average_bid_price": 0.8,
        "enriched_count": 1,
        "ecpm": 800.0,
        "shading_ratio": 1.0,
        "currency": "USD",
        "mixed_currencies": False,
        "win_price_percentiles": {"p50": 0.8, "p90": 0.8, "p99": 0.8},
        "bid_price_percentiles": {"p50": 0.8, "p90": 0.8, "p99": 0.8},
        "percentiles_sample": None,
    }


def test_bad_messages_and_duplicates_mixed_with_good_ones(make_topic, produce, consumer_settings, run_consumer):
    topic = make_topic()
    good = [message() for _ in range(30)]
    bad = bad_messages()
    stream: list = []
    for i, data in enumerate(good):
        stream.append((None, encode(data)))
        if i < len(bad):
            stream.append(bad[i][:2])
        if i % 4 == 3:
            stream.append((None, encode(good[i - 2])))  # an upstream duplicate
    produce(topic, stream)
    summary = run_consumer(consumer_settings(topic, batch_size=7), max_messages=len(stream))

    duplicates = sum(1 for i in range(30) if i % 4 == 3)
    assert (summary.consumed, summary.stored, summary.duplicates) == (len(stream), len(good), duplicates)
    stored = list(AuctionOutcome.objects.values_list("bid_id", flat=True))
    assert sorted(stored) == sorted(d["bid_request_id"] for d in good)
    letters = list(DeadLetter.objects.order_by("offset"))
    assert [letter.reason for letter in letters] == [reason for _k, _v, reason in bad]
    for letter, (key, value, _reason) in zip(letters, bad, strict=True):
        # A dead letter keeps at most DEAD_LETTER_MAX_BYTES of its message (the oversized one).
        assert bytes(letter.value or b"") == (value or b"")[: writes.DEAD_LETTER_MAX_BYTES]
        assert (bytes(letter.key) if letter.key is not None else None) == key
        assert letter.topic == topic and letter.partition == 0
        assert stream[letter.offset][1] == value  # the recorded offset is the message's position
        assert letter.kafka_timestamp is not None
        assert letter.detail
    assert ConsumerOffset.objects.get(topic=topic).next_offset == len(stream)


def test_debug_logs_one_line_per_stored_outcome(make_topic, produce, consumer_settings, run_consumer, caplog):
    import logging

    topic = make_topic()
    produce(topic, [encode(SPEC_MESSAGE)])
    with caplog.at_level(logging.DEBUG, logger="outcomes.consumer"):
        run_consumer(consumer_settings(topic), max_messages=1)
    saved = [r for r in caplog.records if r.getMessage() == "Auction outcome saved"]
    assert len(saved) == 1
    assert (saved[0].bid_id, saved[0].win_status, saved[0].win_price) == ("req-123", True, "0.80")
    (batch,) = [r for r in caplog.records if r.getMessage() == "batch written"]
    assert (batch.messages, batch.stored, batch.duplicates, batch.dead_lettered) == (1, 1, 0, 0)
    assert batch.offsets == {f"{topic}[0]": [None, 1]}


def test_duplicates_in_the_stream_are_stored_once(make_topic, produce, consumer_settings, run_consumer):
    topic = make_topic()
    originals = [message() for _ in range(20)]
    changed = dict(originals[0], win_price=0.10)
    stream = [encode(m) for m in originals] + [encode(m) for m in originals[:10]] + [encode(changed)]
    produce(topic, stream)
    summary = run_consumer(consumer_settings(topic, batch_size=8), max_messages=len(stream))
    assert (summary.stored, summary.duplicates, summary.dead_lettered) == (20, 10, 1)
    assert AuctionOutcome.objects.count() == 20
    assert DeadLetter.objects.get().reason == "conflicting_duplicate"


def test_max_messages_is_exact_and_the_next_run_continues(make_topic, produce, consumer_settings, run_consumer):
    topic = make_topic()
    produce(topic, [encode(message()) for _ in range(25)])
    config = consumer_settings(topic, batch_size=4)
    assert run_consumer(config, max_messages=10).consumed == 10
    assert AuctionOutcome.objects.count() == 10
    assert run_consumer(config, max_messages=15).consumed == 15
    assert AuctionOutcome.objects.count() == 25
    assert ConsumerOffset.objects.get(topic=topic).next_offset == 25


def test_kafka_committed_offsets_follow_the_database(make_topic, produce, consumer_settings, run_consumer):
    from kafka import KafkaConsumer, TopicPartition

    topic = make_topic()
    produce(topic, [encode(message()) for _ in range(12)])
    config = consumer_settings(topic, batch_size=5)
    run_consumer(config, max_messages=12)
    probe = KafkaConsumer(bootstrap_servers=BROKERS, group_id=config.group, enable_auto_commit=False)
    try:
        assert probe.committed(TopicPartition(topic, 0)) == 12
    finally:
        probe.close()


def test_stored_offsets_win_over_kafka_committed_ones(make_topic, produce, consumer_settings, run_consumer):
    """A consumer resumes from PostgreSQL, whatever Kafka says (e.g. a commit lost in a crash)."""
    topic = make_topic()
    messages = [message() for _ in range(10)]
    produce(topic, [encode(m) for m in messages])
    config = consumer_settings(topic, batch_size=5)
    run_consumer(config, max_messages=10)
    ConsumerOffset.objects.filter(topic=topic).update(next_offset=6)
    AuctionOutcome.objects.filter(bid_id__in=[m["bid_request_id"] for m in messages[6:]]).delete()
    summary = run_consumer(config, timeout_ms=2000)
    assert summary.consumed == 4 and summary.stored == 4
    assert AuctionOutcome.objects.count() == 10


def test_dead_letter_cap_stops_the_consumer(make_topic, produce, consumer_process):
    topic = make_topic()
    produce(topic, [encode(message()) for _ in range(5)] + [b"garbage"] * 20)
    proc = consumer_process(
        "--topic",
        topic,
        "--group",
        "cap-test",
        "--batch-size",
        "5",
        "--timeout",
        "5000",
        env={"CONSUMER_DLQ_MAX_CONSECUTIVE": "8"},
    )
    code = proc.wait(timeout=60)
    assert code != 0
    assert "dead-letter limit exceeded" in proc.log()
    assert "8 invalid messages in a row" in proc.log()
    assert DeadLetter.objects.count() < 20  # it halted instead of dead-lettering everything
    stored_to = ConsumerOffset.objects.get(topic=topic).next_offset
    assert stored_to == AuctionOutcome.objects.count() + DeadLetter.objects.count()


def test_dead_letter_ratio_cap(make_topic, produce, consumer_process):
    topic = make_topic()
    stream = []
    for i in range(60):
        stream.append(encode(message()) if i % 3 == 0 else b"garbage")
    produce(topic, stream)
    proc = consumer_process(
        "--topic",
        topic,
        "--group",
        "ratio-test",
        "--timeout",
        "5000",
        env={"CONSUMER_DLQ_MAX_RATIO": "0.5", "CONSUMER_DLQ_WINDOW": "20"},
    )
    assert proc.wait(timeout=60) != 0
    assert "of the last 20 messages were invalid" in proc.log()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_finishes_the_batch_and_exits_zero(make_topic, produce, consumer_process, signum):
    topic = make_topic()
    total = 30000
    produce(topic, [encode(message()) for _ in range(total)])
    group = f"stop-test-{signum}"
    proc = consumer_process("--topic", topic, "--group", group, "--batch-size", "500", "--timeout", "20000")
    wait_until(lambda: AuctionOutcome.objects.count() > 0, timeout=60)
    proc.signal(signum)
    started = time.monotonic()
    assert proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 10
    stored = AuctionOutcome.objects.count()
    assert 0 < stored < total, "SIGTERM should arrive mid-stream"
    assert ConsumerOffset.objects.get(topic=topic).next_offset == stored
    assert "stop requested" in proc.log()
    # The rest comes with the next run, nothing lost or doubled.
    rest = consumer_process("--topic", topic, "--group", group, "--max-messages", str(total - stored))
    assert rest.wait(timeout=120) == 0
    assert AuctionOutcome.objects.count() == total


def test_metrics_and_health_file(make_topic, produce, consumer_process, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    topic = make_topic()
    produce(topic, [encode(message()) for _ in range(10)] + [b"bad"] + [encode(SPEC_MESSAGE)] * 2)
    health = tmp_path / "alive"
    proc = consumer_process(
        "--topic",
        topic,
        "--group",
        "metrics-test",
        "--timeout",
        "60000",
        env={
            "CONSUMER_METRICS_PORT": str(port),
            "CONSUMER_HEALTH_FILE": str(health),
            "CONSUMER_READY_FILE": str(tmp_path / "ready"),
        },
    )
    text = ""
    was_ready = False

    def all_stored() -> bool:
        nonlocal text, was_ready
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return False
        was_ready = (tmp_path / "ready").exists()
        return "analytics_consumer_outcomes_stored_total 11.0" in text

    wait_until(all_stored, timeout=60, interval=0.2)
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "analytics_consumer_messages_consumed_total 13.0" in text
    assert "analytics_consumer_outcomes_stored_total 11.0" in text
    assert "analytics_consumer_duplicates_total 1.0" in text
    assert 'analytics_consumer_dead_lettered_total{reason="invalid_json"} 1.0' in text
    assert f'analytics_consumer_lag{{partition="0",topic="{topic}"}} 0.0' in text
    assert "analytics_consumer_batch_write_seconds_count" in text
    assert "analytics_consumer_last_stored_outcome_age_seconds" in text
    assert health.exists() and time.time() - health.stat().st_mtime < 30
    assert was_ready and not (tmp_path / "ready").exists()  # ready while consuming, not after stopping


def test_replay_dead_letters_after_a_fix(make_topic, produce, consumer_settings, run_consumer, settings):
    topic = make_topic()
    expensive = message(bid_price=1500.0, win_price=1200.0)
    produce(topic, [encode(expensive), encode(message()), b"still garbage"])
    run_consumer(consumer_settings(topic), max_messages=3)
    assert Counter(DeadLetter.objects.values_list("reason", flat=True)) == {"price_above_bound": 1, "invalid_json": 1}

    # The sanity bound was too low: raise it, dry-run, then replay.
    import dataclasses
    from decimal import Decimal
    from io import StringIO

    settings.CONSUMER = dataclasses.replace(settings.CONSUMER, max_price=Decimal("5000"))
    out = StringIO()
    call_command("replay_dead_letters", "--dry-run", stdout=out)
    assert "examined=2 would_store=1 duplicates=0 conflicting=0 still_invalid=1" in out.getvalue()
    assert AuctionOutcome.objects.count() == 1
    out = StringIO()
    call_command("replay_dead_letters", stdout=out)
    assert "examined=2 stored=1" in out.getvalue()
    assert AuctionOutcome.objects.filter(bid_id=expensive["bid_request_id"]).exists()
    assert DeadLetter.objects.filter(replayed_at__isnull=False).count() == 1
    out = StringIO()
    call_command("replay_dead_letters", stdout=out)  # idempotent: only the still-invalid one is examined
    assert "examined=1 stored=0" in out.getvalue()
    assert AuctionOutcome.objects.count() == 2


def test_a_metrics_port_in_use_is_a_one_line_error_naming_the_setting(tmp_path):
    import socket
    import subprocess
    import sys

    from tests.factories import ROOT

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        env = {**os.environ, "DEBUG": "true", "CONSUMER_METRICS_PORT": str(port), "CONSUMER_METRICS_ADDR": "127.0.0.1"}
        result = subprocess.run(
            [sys.executable, "manage.py", "process_outcomes", "--max-messages", "1", "--timeout", "1000"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.close()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "CONSUMER_METRICS_PORT" in lines[0] and "--metrics-port" in lines[0]
