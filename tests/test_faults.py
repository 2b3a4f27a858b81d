"""Faults we can provoke here: kill -9, consumers dying in a group, PostgreSQL and Kafka restarts.

Each test computes the expected final state from the messages it produced and checks the
stored state exactly: rows = distinct valid bid ids, dead letters = bad messages.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from outcomes.models import AuctionOutcome, ConsumerOffset, DeadLetter, OutcomeRollupMinute, TotalRollupMinute
from tests.factories import encode, message, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka, pytest.mark.slow]
SERVICES = Path(__file__).resolve().parent.parent / "scripts" / "services.sh"


def make_stream(count: int, *, seed: int, duplicate_every: int = 17, bad_every: int = 23, conflict_every: int = 31):
    """A stream with upstream duplicates, conflicting duplicates (same bid id, other content)
    and bad messages; returns (values, valid_bids, dead_letter_count).

    A bid id gets either identical copies or one conflicting copy, never both, so the number
    of dead letters does not depend on which copy a group of consumers happens to store first.
    """
    rng = random.Random(seed)
    values: list[bytes] = []
    valid: list[dict] = []
    duplicated: set[str] = set()
    conflicted: set[str] = set()

    def pick(excluded: set[str]) -> dict | None:
        for _ in range(20):
            candidate = rng.choice(valid)
            if candidate["bid_request_id"] not in excluded:
                return candidate
        return None

    bad = 0
    while len(values) < count:
        n = len(values)
        original = None
        if n and n % conflict_every == 0 and (original := pick(duplicated | conflicted)):
            conflicted.add(original["bid_request_id"])
            values.append(encode({**original, "bid_price": 999.0, "win_price": 0.5}))
            bad += 1
        elif n and n % bad_every == 0:
            values.append(
                rng.choice([b"{broken", b"[]", encode(message(bid_price=-1.0)), encode(message(currency="x"))])
            )
            bad += 1
        elif valid and n % duplicate_every == 0 and (original := pick(conflicted)):
            duplicated.add(original["bid_request_id"])
            values.append(encode(original))
        else:
            data = message()
            valid.append(data)
            values.append(encode(data))
    return values, {d["bid_request_id"] for d in valid}, bad


def assert_exact(topics: list[str], total: int, valid_bids: set[str], bad: int) -> None:
    stored = set(AuctionOutcome.objects.values_list("bid_id", flat=True))
    assert len(stored) == AuctionOutcome.objects.count()
    assert stored == valid_bids
    assert DeadLetter.objects.count() == bad
    assert sum(ConsumerOffset.objects.filter(topic__in=topics).values_list("next_offset", flat=True)) == total
    # The rollups were written in the same transactions: exactly what the rows say.
    from outcomes import rollups

    assert rollups.verify() == []
    assert sum(OutcomeRollupMinute.objects.values_list("outcomes", flat=True)) == len(stored)
    assert sum(TotalRollupMinute.objects.values_list("outcomes", flat=True)) == len(stored)


def remaining(topic: str, total: int) -> int:
    return total - sum(ConsumerOffset.objects.filter(topic=topic).values_list("next_offset", flat=True))


def test_kill_9_at_random_points_loses_and_duplicates_nothing(make_topic, produce, consumer_process):
    topic = make_topic()
    values, valid_bids, bad = make_stream(48000, seed=1)
    produce(topic, values)
    rng = random.Random(99)
    args = ("--topic", topic, "--group", "kill9", "--batch-size", "400", "--batch-time", "100")
    kills = 0
    while kills < 10:
        left = remaining(topic, len(values))
        assert left > 0, "the stream ran out before ten kills; make it longer"
        proc = consumer_process(*args, "--max-messages", str(left))
        # Joining the group waits out the killed member's session (3 s), so time the kill from
        # the assignment: its fetches and writes start at once, and a random delay within a
        # few batches lands kills before, during and after writes.
        wait_until(lambda proc=proc: "partitions assigned" in proc.log(), timeout=60, interval=0.02)
        time.sleep(rng.uniform(0.0, 0.4))  # a few 100 ms batches: a run stores ~1,000-3,000
        proc.process.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
    left = remaining(topic, len(values))
    assert 0 < left < len(values), "kills should land mid-stream"
    final = consumer_process(*args, "--max-messages", str(left))
    assert final.wait(timeout=180) == 0, final.log()[-3000:]
    assert_exact([topic], len(values), valid_bids, bad)


def test_three_consumers_in_a_group_one_killed_midway(make_topic, produce, consumer_process):
    topic = make_topic(partitions=6)
    values, valid_bids, bad = make_stream(18000, seed=2)
    produce(topic, [(i % 6, None, value) for i, value in enumerate(values)])
    args = ("--topic", topic, "--group", "trio", "--batch-size", "300", "--batch-time", "100", "--timeout", "8000")
    procs = [consumer_process(*args) for _ in range(3)]
    wait_until(lambda: AuctionOutcome.objects.count() >= 3000, timeout=60)
    procs[0].process.send_signal(signal.SIGKILL)
    for proc in procs[1:]:
        assert proc.wait(timeout=180) == 0, proc.log()[-3000:]
    assert remaining(topic, len(values)) == 0
    assert_exact([topic], len(values), valid_bids, bad)
    # All three took part: each wrote offsets for some partition at some point.
    logs = "".join(p.log() for p in procs)
    assert logs.count("partitions assigned") >= 4  # three initial assignments plus the rebalance


def test_consumers_joining_mid_stream_rebalance_without_loss_or_duplicates(make_topic, produce, consumer_process):
    topic = make_topic(partitions=6)
    values, valid_bids, bad = make_stream(24000, seed=5)
    produce(topic, [(i % 6, None, value) for i, value in enumerate(values)])
    args = ("--topic", topic, "--group", "joiners", "--batch-size", "300", "--batch-time", "100", "--timeout", "8000")
    first = consumer_process(*args)
    wait_until(lambda: AuctionOutcome.objects.count() >= 2000, timeout=60)
    joiners = [consumer_process(*args) for _ in range(2)]
    for proc in [first, *joiners]:
        assert proc.wait(timeout=180) == 0, proc.log()[-3000:]
    assert "partitions revoked" in first.log()  # the first consumer really gave partitions away
    assert all("partitions assigned" in proc.log() for proc in joiners)
    assert_exact([topic], len(values), valid_bids, bad)


def test_postgresql_restart_mid_stream(make_topic, produce, consumer_process, tmp_path):
    topic = make_topic()
    values, valid_bids, bad = make_stream(30000, seed=3)
    produce(topic, values)
    ready = tmp_path / "ready"
    proc = consumer_process(
        "--topic",
        topic,
        "--group",
        "pg-restart",
        "--batch-size",
        "500",
        "--max-messages",
        str(len(values)),
        env={"CONSUMER_READY_FILE": str(ready)},
    )
    wait_until(lambda: AuctionOutcome.objects.count() >= 2000, timeout=60)
    assert ready.exists()  # connected, and writing
    # The readiness file, watched through the outage: it must go, then come back.
    seen: list[bool] = []
    watching = threading.Event()
    watching.set()

    def watch():
        while watching.is_set():
            seen.append(ready.exists())
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    connection.close()
    subprocess.run([str(SERVICES), "pg-restart"], check=True, timeout=120)
    connection.close()

    def ready_after_the_outage() -> bool:
        history = list(seen)
        return False in history and True in history[history.index(False) :]

    wait_until(ready_after_the_outage, timeout=60)
    watching.clear()
    watcher.join()
    # Seen by the watcher: the consumer may finish (and remove the file) soon after recovering.
    assert False in seen, "not ready during the outage"
    assert ready_after_the_outage(), "ready again after it"
    assert proc.wait(timeout=180) == 0, proc.log()[-3000:]
    assert not ready.exists()  # a stopped consumer is not ready
    log = proc.log()
    assert "database unavailable" in log, "the restart should have been noticed and retried"
    assert_exact([topic], len(values), valid_bids, bad)


def test_kafka_restart_mid_stream(make_topic, produce, consumer_process):
    topic = make_topic()
    values, valid_bids, bad = make_stream(30000, seed=4)
    half = len(values) // 2
    produce(topic, values[:half])
    proc = consumer_process(
        "--topic", topic, "--group", "kafka-restart", "--batch-size", "500", "--max-messages", str(len(values))
    )
    wait_until(lambda: AuctionOutcome.objects.count() >= 2000, timeout=60)
    subprocess.run([str(SERVICES), "kafka-restart"], check=True, timeout=180)
    # The second half exists only after the restart: the consumer must reconnect to finish.
    assert proc.process.poll() is None
    produce(topic, values[half:])
    assert proc.wait(timeout=240) == 0, proc.log()[-3000:]
    assert_exact([topic], len(values), valid_bids, bad)
