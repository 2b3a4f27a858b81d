"""Rebalance and failure sequences of the consumer loop, driven by the in-memory broker
(tests/fake_kafka.py) against the real PostgreSQL: each runs in about a second. The same
guarantees are tested end to end with the real broker in tests/test_faults.py."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import Counter

import pytest
from django.conf import settings as django_settings
from django.db import OperationalError
from kafka.structs import TopicPartition

from outcomes.ingest import consumer as consumer_module
from outcomes.ingest import writing
from outcomes.ingest.consumer import OutcomeConsumer
from outcomes.messages import parse_outcome
from outcomes.models import AuctionOutcome, ConsumerOffset, LostOffsets
from outcomes.writes import Batch, PartitionProgress, Position, write_batch
from tests.factories import encode, message, wait_until
from tests.fake_kafka import FakeKafkaFactory, FakeTopic

pytestmark = [pytest.mark.fast, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def topic():
    return FakeTopic(f"fake-{uuid.uuid4().hex[:8]}", partitions=2)


def settings_for(topic: FakeTopic, tmp_path, **overrides):
    values = {
        "topic": topic.name,
        "group": f"fake-group-{uuid.uuid4().hex[:8]}",
        "metrics_port": 0,
        "health_file": str(tmp_path / "alive"),
        "ready_file": str(tmp_path / "ready"),
        "batch_size": 1000,
        "batch_time_ms": 50,
        "retry_initial_backoff_ms": 5,
        "retry_max_backoff_ms": 20,
        "rollup_compact_seconds": 0,
    }
    return dataclasses.replace(django_settings.CONSUMER, **{**values, **overrides})


def fill(topic: FakeTopic, per_partition: int) -> list[str]:
    bids = []
    for partition in range(len(topic.logs)):
        for _ in range(per_partition):
            body = message()
            bids.append(body["bid_request_id"])
            topic.produce(partition, encode(body))
    return bids


def run(config, factory, *, max_messages=None, timeout_ms=400):
    consumer = OutcomeConsumer(
        config,
        max_messages=max_messages,
        idle_timeout_ms=timeout_ms,
        install_signal_handlers=False,
        kafka_factory=factory,
    )
    return consumer, consumer.run()


def assert_exactly_once(config, topic: FakeTopic, bids: list[str]) -> None:
    stored = Counter(AuctionOutcome.objects.values_list("bid_id", flat=True))
    assert set(stored) == set(bids) and max(stored.values()) == 1
    offsets = dict(
        ConsumerOffset.objects.filter(consumer_group=config.group, topic=topic.name).values_list(
            "partition", "next_offset"
        )
    )
    assert offsets == {p: len(log) for p, log in enumerate(topic.logs)}


def test_everything_once_with_no_rebalance(topic, tmp_path):
    bids = fill(topic, 30)
    config = settings_for(topic, tmp_path)
    factory = FakeKafkaFactory(topic)
    consumer, summary = run(config, factory, max_messages=60)
    assert (summary.consumed, summary.stored) == (60, 60)
    assert_exactly_once(config, topic, bids)
    assert factory.made.committed == {TopicPartition(topic.name, p): 30 for p in (0, 1)}
    assert factory.made.closed


def test_revoke_mid_batch_drops_the_held_messages_and_they_are_read_again(topic, tmp_path):
    bids = fill(topic, 20)
    config = settings_for(topic, tmp_path, batch_time_ms=60_000)  # held until the run ends
    p1 = TopicPartition(topic.name, 1)
    events = []

    def hook(kafka):
        # Poll 1 assigns (its records straddle that rebalance: dropped, read again); poll 2
        # reads all 40 into the held batch.
        if kafka.polls == 3:
            kafka.rebalance(revoke={p1})
            events.append(("revoked", consumer.taken()))
        elif kafka.polls == 4:
            kafka.rebalance(assign={p1})  # back, from its stored offset (none: the beginning)
            events.append(("assigned", consumer.taken()))

    consumer = OutcomeConsumer(
        config, idle_timeout_ms=400, install_signal_handlers=False, kafka_factory=FakeKafkaFactory(topic, hooks=[hook])
    )
    summary = consumer.run()
    assert events == [("revoked", 20), ("assigned", 20)]  # held: partition 1's 20 were dropped
    assert summary.consumed == 40 and summary.stored == 40 and summary.batches == 1
    assert_exactly_once(config, topic, bids)


def test_revoke_waits_for_the_write_in_flight(topic, tmp_path, monkeypatch):
    bids = fill(topic, 15)
    config = settings_for(topic, tmp_path)
    release = threading.Event()
    order = []
    real_write = writing.write_batch

    def slow_write(batch, **kwargs):
        if not order:
            order.append("write started")
            release.wait(5)
        result = real_write(batch, **kwargs)
        order.append("write done")
        return result

    monkeypatch.setattr(writing, "write_batch", slow_write)
    real_settle = writing.WriteStep.settle

    def settle(self, timeout_s):
        order.append("listener waits")
        return real_settle(self, timeout_s)

    monkeypatch.setattr(writing.WriteStep, "settle", settle)
    factory = FakeKafkaFactory(topic)
    consumer = OutcomeConsumer(
        config, max_messages=30, idle_timeout_ms=600, install_signal_handlers=False, kafka_factory=factory
    )
    worker = threading.Thread(target=consumer.run)
    worker.start()
    assert wait_until(lambda: order == ["write started"], timeout=5)
    # kafka-python's I/O thread revokes everything while the batch is being written.
    everything = {TopicPartition(topic.name, p) for p in (0, 1)}
    revoker = threading.Thread(target=lambda: (factory.made.rebalance(revoke=everything), order.append("revoked")))
    revoker.start()
    wait_until(lambda: "listener waits" in order, timeout=5)
    assert "revoked" not in order  # the listener waits for the write in flight…
    release.set()
    revoker.join(5)
    worker.join(20)
    assert not worker.is_alive()
    assert order == ["write started", "listener waits", "write done", "revoked"]  # …until it lands
    assert_exactly_once(config, topic, bids)


def stored_by_another_consumer(config, topic: FakeTopic, partition: int, count: int) -> None:
    """What another member of the group wrote: the first ``count`` messages and the offset after them."""
    batch = Batch()
    for offset, record in enumerate(topic.logs[partition][:count]):
        batch.events.append((parse_outcome(record.value), Position(topic.name, partition, offset, record.timestamp)))
    batch.progress[(topic.name, partition)] = PartitionProgress(None, count)
    write_batch(batch, consumer_group=config.group)


def test_an_assigned_partition_starts_at_its_stored_offset(topic, tmp_path):
    bids = fill(topic, 10)
    config = settings_for(topic, tmp_path)
    stored_by_another_consumer(config, topic, 0, 6)
    consumer, summary = run(config, FakeKafkaFactory(topic), max_messages=14)
    assert summary.consumed == 14 and summary.stored == 14  # 4 of partition 0, 10 of partition 1
    assert_exactly_once(config, topic, bids)


def test_a_fenced_write_rereads_the_stored_offsets(topic, tmp_path):
    bids = fill(topic, 10)
    config = settings_for(topic, tmp_path)

    def another_owner_writes_first(kafka):
        # Assigned to us and sought to "nothing stored" — then, before our write, another
        # member that owned partition 0 a moment ago stores its first 4.
        if kafka.polls == 1:
            stored_by_another_consumer(config, topic, 0, 4)

    consumer, summary = run(config, FakeKafkaFactory(topic, hooks=[another_owner_writes_first]), timeout_ms=500)
    # Our first batch (all 20) was fenced and dropped; 16 were read again from the stored offsets.
    assert summary.stored == 16 and summary.consumed == 16
    assert_exactly_once(config, topic, bids)


def test_a_database_outage_during_a_rebalance_is_waited_out(topic, tmp_path, monkeypatch, caplog):
    bids = fill(topic, 5)
    config = settings_for(topic, tmp_path)
    failures = iter([True, True])
    real = consumer_module.stored_offsets

    def flaky(**kwargs):
        if next(failures, False):
            raise OperationalError("server closed the connection unexpectedly")
        return real(**kwargs)

    monkeypatch.setattr(consumer_module, "stored_offsets", flaky)
    with caplog.at_level("WARNING", logger="outcomes.consumer"):
        consumer, summary = run(config, FakeKafkaFactory(topic), max_messages=10)
    assert sum("database unavailable" in r.getMessage() for r in caplog.records) == 2
    assert summary.stored == 10
    assert_exactly_once(config, topic, bids)


def test_a_stop_mid_batch_writes_what_is_held_and_returns(topic, tmp_path):
    bids = fill(topic, 10)
    config = settings_for(topic, tmp_path, batch_time_ms=60_000)

    def stop_on_the_third_poll(kafka):
        if kafka.polls == 3:
            consumer.request_stop()

    factory = FakeKafkaFactory(topic, hooks=[stop_on_the_third_poll])
    consumer = OutcomeConsumer(config, idle_timeout_ms=None, install_signal_handlers=False, kafka_factory=factory)
    summary = consumer.run()  # no max_messages, no idle timeout: only the stop ends it
    assert summary.consumed == 20 and summary.stored == 20 and summary.batches == 1
    assert_exactly_once(config, topic, bids)
    assert factory.made.closed


def test_a_stored_offset_before_the_log_start_records_the_lost_messages_and_goes_on(topic, tmp_path, caplog):
    bids = fill(topic, 10)
    config = settings_for(topic, tmp_path)
    stored_by_another_consumer(config, topic, 0, 3)
    topic.delete_records(0, 7)  # retention removed offsets 3–6 before anyone stored them
    with caplog.at_level("ERROR", logger="outcomes.consumer"):
        consumer, summary = run(config, FakeKafkaFactory(topic), timeout_ms=500)
    lost = LostOffsets.objects.get()
    assert (lost.consumer_group, lost.topic, lost.partition, lost.first_offset, lost.end_offset) == (
        config.group,
        topic.name,
        0,
        3,
        7,
    )
    assert summary.stored == 3 + 10  # offsets 7–9 of partition 0, all of partition 1
    stored = set(AuctionOutcome.objects.values_list("bid_id", flat=True))
    assert stored == set(bids[:3] + bids[7:])
    offsets = dict(ConsumerOffset.objects.filter(consumer_group=config.group).values_list("partition", "next_offset"))
    assert offsets == {0: 10, 1: 10}
    [record] = [r for r in caplog.records if "deleted from Kafka before they were stored" in r.getMessage()]
    assert (record.partition, record.stored_offset, record.first_offset, record.end_offset) == (0, 3, 7, 10)
    assert record.lost_messages == 4
    metrics = consumer.metrics
    assert metrics.lost_messages.labels(topic.name, 0)._value.get() == 4
    assert metrics.offset_out_of_range.labels(topic.name, 0, "before_beginning")._value.get() == 1


def test_a_stored_offset_beyond_the_end_pauses_the_partition_until_an_operator_resets_it(
    topic, tmp_path, monkeypatch, caplog
):
    from outcomes.ingest import positions
    from outcomes.writes import offsets_reset

    monkeypatch.setattr(positions, "RECHECK_SECONDS", 0.05)
    old = fill(topic, 10)
    config = settings_for(topic, tmp_path)
    run(config, FakeKafkaFactory(topic), max_messages=20)
    topic.recreate()  # deleted and created again: offsets restart at 0
    new = fill(topic, 4)
    factory = FakeKafkaFactory(topic)
    consumer = OutcomeConsumer(config, idle_timeout_ms=None, install_signal_handlers=False, kafka_factory=factory)
    worker = threading.Thread(target=consumer.run)
    with caplog.at_level("ERROR", logger="outcomes.consumer"):
        worker.start()
        blocked = consumer.metrics.partition_blocked
        assert wait_until(lambda: all(blocked.labels(topic.name, p)._value.get() == 1 for p in (0, 1)), timeout=5)
        polls = factory.made.polls
        wait_until(lambda: factory.made.polls >= polls + 3, timeout=5, what="the loop to poll on, blocked")
        # Nothing guessed: the new messages wait, the stored offsets stay.
        assert set(AuctionOutcome.objects.values_list("bid_id", flat=True)) == set(old)
        messages = [r for r in caplog.records if "beyond the end of the partition" in r.getMessage()]
        assert {(r.partition, r.stored_offset, r.end_offset) for r in messages} == {(0, 10, 4), (1, 10, 4)}
        # The operator decides partition 0 starts over (manage.py reset_consumer_offsets --to-earliest).
        assert offsets_reset(consumer_group=config.group, topic=topic.name, partition=0, to=0, expected=10)
        assert wait_until(lambda: AuctionOutcome.objects.count() == 24, timeout=5)
        assert blocked.labels(topic.name, 0)._value.get() == 0 and blocked.labels(topic.name, 1)._value.get() == 1
        consumer.request_stop()
        worker.join(10)
    assert not worker.is_alive()
    assert set(AuctionOutcome.objects.values_list("bid_id", flat=True)) == set(old) | set(new[:4])
    offsets = dict(ConsumerOffset.objects.filter(consumer_group=config.group).values_list("partition", "next_offset"))
    assert offsets == {0: 4, 1: 10}
