"""An in-memory stand-in for the part of kafka-python's ``KafkaConsumer`` the consumer loop uses
(like arroyo's ``backends/local``): partitions of records, positions, seeks, commits, and
rebalances the test triggers — from a hook run at each poll, or from another thread, as
kafka-python's I/O thread would. It never replaces the real-broker tests; it lets every
rebalance and failure sequence run in milliseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka.errors import OffsetOutOfRangeError
from kafka.structs import TopicPartition


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class FakeTopic:
    """Partitions as lists indexed by offset; ``starts`` are the log start offsets (what
    retention or ``delete_records`` has removed lies before them)."""

    def __init__(self, name: str, partitions: int) -> None:
        self.name = name
        self.logs: list[list[Record]] = [[] for _ in range(partitions)]
        self.starts = [0] * partitions

    def produce(self, partition: int, value: bytes, key: bytes | None = None) -> None:
        log = self.logs[partition]
        log.append(Record(self.name, partition, len(log), int(time.time() * 1000), key, value))

    def delete_records(self, partition: int, before: int) -> None:
        """Kafka's DeleteRecords (or retention): offsets below ``before`` are gone."""
        self.starts[partition] = max(self.starts[partition], before)

    def recreate(self) -> None:
        """The topic deleted and created again: empty partitions, offsets from 0."""
        self.logs = [[] for _ in self.logs]
        self.starts = [0] * len(self.logs)

    def partitions(self) -> set[TopicPartition]:
        return {TopicPartition(self.name, p) for p in range(len(self.logs))}


class FakeKafka:
    """Made by the consumer through ``kafka_factory``; the test keeps a handle via ``made``."""

    def __init__(self, topic: FakeTopic, listener, *, assign_on_first_poll: bool = True) -> None:
        self.topic = topic
        self.listener = listener
        self.assigned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.closed = False
        self.polls = 0
        self.hooks: list[Callable[[FakeKafka], None]] = []  # run at the start of each poll
        self._assign_on_first_poll = assign_on_first_poll
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- what the loop calls
    def partitions_for_topic(self, name: str):
        return {tp.partition for tp in self.topic.partitions()} if name == self.topic.name else None

    def poll(self, timeout_ms: int = 0, max_records: int | None = None):
        self.polls += 1
        if self._assign_on_first_poll:
            self._assign_on_first_poll = False
            self.rebalance(assign=self.topic.partitions())
        for hook in list(self.hooks):
            hook(self)
        with self._lock:
            records: dict[TopicPartition, list[Record]] = {}
            budget = max_records or 500
            for tp in sorted(self.assigned - self.paused, key=lambda t: t.partition):
                log = self.topic.logs[tp.partition]
                start = self.positions.get(tp, 0)
                if not self.topic.starts[tp.partition] <= start <= len(log):
                    # kafka-python with auto_offset_reset="none" (as the service configures it)
                    raise OffsetOutOfRangeError({tp: start})
                taken = log[start : start + budget]
                if taken:
                    records[tp] = taken
                    self.positions[tp] = start + len(taken)
                    budget -= len(taken)
                if budget <= 0:
                    break
        if not records:
            time.sleep(min(timeout_ms, 5) / 1000)
        return records

    def seek(self, tp: TopicPartition, offset: int) -> None:
        with self._lock:
            self.positions[tp] = offset

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.seek(tp, self.topic.starts[tp.partition])

    def seek_to_end(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.seek(tp, len(self.topic.logs[tp.partition]))

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.topic.logs[tp.partition])

    def beginning_offsets(self, tps) -> dict[TopicPartition, int]:
        return {tp: self.topic.starts[tp.partition] for tp in tps}

    def end_offsets(self, tps) -> dict[TopicPartition, int]:
        return {tp: len(self.topic.logs[tp.partition]) for tp in tps}

    def pause(self, *tps: TopicPartition) -> None:
        with self._lock:
            self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        with self._lock:
            self.paused -= set(tps)

    def commit_async(self, offsets, callback=None) -> None:
        with self._lock:
            for tp, meta in offsets.items():
                self.committed[tp] = meta.offset

    def close(self, autocommit: bool = False) -> None:
        self.closed = True

    # ---------------------------------------------------------------- what the test calls
    def rebalance(self, *, revoke: set[TopicPartition] = frozenset(), assign: set[TopicPartition] = frozenset()):
        """Revoke, then assign, calling the listener as kafka-python does."""
        revoke = set(revoke) & self.assigned
        if revoke:
            self.listener.on_partitions_revoked(revoke)
            with self._lock:
                self.assigned -= revoke
                self.paused -= revoke
        assign = set(assign) - self.assigned
        if assign:
            with self._lock:
                self.assigned |= assign
            self.listener.on_partitions_assigned(assign)


class FakeKafkaFactory:
    """``kafka_factory`` for ``OutcomeConsumer``; ``made`` is the consumer it made."""

    def __init__(self, topic: FakeTopic, *, hooks: list[Callable[[FakeKafka], None]] = (), **options) -> None:
        self.topic = topic
        self.hooks = list(hooks)
        self.options = options
        self.made: FakeKafka | None = None

    def __call__(self, settings, listener) -> FakeKafka:
        self.made = FakeKafka(self.topic, listener, **self.options)
        self.made.hooks.extend(self.hooks)
        return self.made
