"""The consumer loop: polling and rebalances; the work is done by small steps.

Shaped like Sentry's arroyo: the loop owns poll, assign, revoke and commit; each record goes
through a chain of steps, each testable alone —

* ``parsing.ParseStep``: bytes → outcome or dead letter, with the dead-letter cap;
* ``batching.BatchBuilder``: a batch when it is full or old enough;
* ``writing.WriteStep``: the write service on one writer thread, retrying outages, while
  the loop polls and prepares the next batch;
* ``committing.CommitStep``: Kafka's committed offsets (for lag tools) and lag gauges.

Exactly once: the write service stores each partition's next offset in the batch's own
transaction, and every assignment seeks to those stored offsets; a batch written under
offsets that moved meanwhile is refused whole (``OffsetConflict``: fenced), and the loop
then reads the stored offsets again. Kafka's committed offsets are never read back.

kafka-python 3 calls the rebalance listener on its I/O thread. The state both threads touch
— the assigned partitions' stored offsets, the held batch, a generation counter bumped by
every assignment change — is guarded by a lock held only for those few assignments: never
while parsing, preparing a batch or waiting for a write. On revoke the held messages of the
revoked partitions are dropped and the write in flight is allowed to finish before the
partitions are handed over (the fence stays the safety net); records polled across a
rebalance are dropped and every partition is sought back to what is held.

The Kafka consumer is made by ``kafka_factory`` (an in-memory fake in fast tests).
SIGTERM/SIGINT finish the batch in hand, commit, leave the group and return. Must not import
the API layer.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from kafka import ConsumerRebalanceListener
from kafka.errors import KafkaError, OffsetOutOfRangeError
from kafka.structs import TopicPartition

from analytics.consumer_settings import ConsumerSettings
from outcomes.ingest.accounting import RunSummary, account
from outcomes.ingest.batching import BatchBuilder, next_offsets
from outcomes.ingest.committing import CommitStep
from outcomes.ingest.compaction import Compactor
from outcomes.ingest.health import HealthFiles
from outcomes.ingest.kafka_client import Rebalance, connect, kafka_consumer
from outcomes.ingest.limits import RunLimits
from outcomes.ingest.metrics import ConsumerMetrics
from outcomes.ingest.parsing import DeadLetterLimit, DeadLetterLimitExceeded, ParseStep
from outcomes.ingest.positions import PositionGuard
from outcomes.ingest.publishing import LivePublisher
from outcomes.ingest.retry import Abandoned
from outcomes.ingest.writing import WriteStep
from outcomes.writes import PartitionProgress, PreparedBatch, WriteResult, prepare_batch, stored_offsets

__all__ = ["DeadLetterLimitExceeded", "OutcomeConsumer", "RunSummary", "kafka_consumer"]

logger = logging.getLogger("outcomes.consumer")


class OutcomeConsumer:
    def __init__(
        self,
        settings: ConsumerSettings,
        *,
        max_messages: int | None = None,
        idle_timeout_ms: int | None = None,
        metrics: ConsumerMetrics | None = None,
        install_signal_handlers: bool = True,
        kafka_factory: Callable[[ConsumerSettings, ConsumerRebalanceListener], object] = kafka_consumer,
    ) -> None:
        self.settings = settings
        self.max_messages = max_messages
        self.idle_timeout_ms = idle_timeout_ms
        self.metrics = metrics or ConsumerMetrics()
        self.install_signal_handlers = install_signal_handlers
        self.kafka_factory = kafka_factory
        self.summary = RunSummary()
        self.stop_requested = threading.Event()
        self.health = HealthFiles(health_file=settings.health_file, ready_file=settings.ready_file)
        self.parse = ParseStep(
            max_bytes=settings.max_message_bytes,
            max_price=settings.max_price,
            limit=DeadLetterLimit(
                max_consecutive=settings.dlq_max_consecutive,
                max_ratio=settings.dlq_max_ratio,
                window=settings.dlq_window,
            ),
        )
        publisher = (
            LivePublisher(settings.live_redis_url, settings.live_stream, settings.live_stream_length)
            if settings.live_redis_url
            else None
        )
        self.writer = WriteStep(settings, self.metrics, self.health, self.stop_requested, publisher)
        self.compactor = Compactor(settings.rollup_compact_seconds, self.stop_requested)
        self.positions = PositionGuard(settings, self.metrics, self.writer)
        self.kafka = None
        self.committer: CommitStep | None = None
        # Shared with the rebalance listener, guarded by _lock (held briefly):
        self._lock = threading.Lock()
        self._builder = BatchBuilder(max_size=settings.batch_size, max_time_s=settings.batch_time_ms / 1000)
        # assigned partition → next offset stored in PostgreSQL (None: nothing stored yet)
        self._stored: dict[TopicPartition, int | None] = {}
        self._generation = 0
        self._unchecked: set[TopicPartition] = set()  # assigned, stored offset not yet checked against Kafka
        self._refetch = False  # a fetch was out of range: re-seek to the stored offsets after the check

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self, *_args) -> None:
        if not self.stop_requested.is_set():
            logger.info("stop requested; finishing the current batch")
        self.stop_requested.set()

    def run(self) -> RunSummary:
        if self.install_signal_handlers:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        self.health.touch()
        self.health.set_ready(False)  # a file left by an earlier run says nothing about this one
        try:
            self.kafka = self._connect()
        except Abandoned:
            self.writer.close()
            return self.summary
        self.committer = CommitStep(self.kafka, self.metrics)
        logger.info(
            "consumer started",
            extra={
                "topic": self.settings.topic,
                "group": self.settings.group,
                "brokers": list(self.settings.brokers),
                "batch_size": self.settings.batch_size,
                "batch_time_ms": self.settings.batch_time_ms,
            },
        )
        self.compactor.start()
        try:
            self._loop()
            self._flush()
            self._finish_write()
        finally:
            self.health.set_ready(False)
            self._close()
            self.compactor.stop()
        logger.info("consumer stopped", extra=vars(self.summary))
        return self.summary

    def _connect(self):
        consumer = connect(
            self.kafka_factory,
            self.settings,
            Rebalance(self._on_revoked, self._on_assigned),
            self.stop_requested,
            self.health,
        )
        self.health.set_ready(True)
        return consumer

    def _close(self) -> None:
        try:
            if self.kafka is not None:
                self.kafka.close(autocommit=False)  # leaves the group at once
        except KafkaError:
            logger.warning("error while closing the Kafka consumer", exc_info=True)
        self.writer.close()

    # ------------------------------------------------------------------ main loop
    def _loop(self) -> None:
        limits = RunLimits(max_messages=self.max_messages, idle_timeout_ms=self.idle_timeout_ms, now=time.monotonic())
        while not self.stop_requested.is_set():
            self.health.touch()
            if self.writer.done():
                self._finish_write()
            remaining = limits.remaining(self.taken())
            if remaining == 0:
                break
            self._check_positions()
            with self._lock:
                generation = self._generation
                room = self._builder.room()
                wait_ms = self._builder.wait_ms(time.monotonic(), idle_ms=min(self.settings.batch_time_ms, 500))
            try:
                records = self.kafka.poll(timeout_ms=wait_ms, max_records=max(1, min(room, remaining or room)))
            except OffsetOutOfRangeError as exc:  # a log moved under a position (retention, a recreated topic)
                with self._lock:
                    self._unchecked |= set(exc.args[0]) if exc.args and isinstance(exc.args[0], dict) else set()
                    self._refetch = True  # whatever the check finds, fetch again from what is stored
                continue
            except KafkaError:
                logger.warning("Kafka poll failed; retrying", exc_info=True)
                self.stop_requested.wait(1.0)
                continue
            # Parsed without the lock: the listener never waits for it.
            parsed = [(tp, m.offset, self.parse(m)) for tp, messages in records.items() for m in messages]
            now = time.monotonic()
            with self._lock:
                if parsed and generation != self._generation:
                    # The assignment changed while polling: these records may predate the seeks
                    # the rebalance made. Drop them; put every partition back where we stand.
                    logger.info("discarding records polled across a rebalance")
                    self._reposition()
                    parsed = []
                for tp, offset, item in parsed:
                    if tp in self._stored:
                        self._builder.add(tp, offset, item, now)
                due = self._builder.due(now) or (len(self._builder) and limits.remaining(self.taken()) == 0)
            if parsed:
                limits.saw_messages(now)
            if due:
                self._flush()
            if limits.idle(now):
                logger.info("no message within the timeout; stopping", extra={"timeout_ms": self.idle_timeout_ms})
                break

    def taken(self) -> int:
        """Messages this run has taken on: written, in flight, or held for the next batch
        (what ``--max-messages`` counts). A batch dropped or fenced is simply no longer held,
        and will be read again."""
        in_flight = self.writer.in_flight
        return self.summary.consumed + (len(in_flight.batch) if in_flight else 0) + len(self._builder)

    # ------------------------------------------------------------------ writing
    def _flush(self) -> None:
        """Hand the held batch to the writer once the previous one is written. The batch is
        prepared (de-duplicated, rendered for COPY) while the previous one is still in the
        database: the two overlap."""
        with self._lock:
            if not len(self._builder):
                return
            batch = self._builder.take()
            generation = self._generation
        prepared = prepare_batch(batch, live=self.writer.publisher is not None)
        self._finish_write()
        with self._lock:
            if generation != self._generation:
                # A rebalance or a fenced write since it was read: its partitions were sought
                # back to their stored offsets (or handed over), so it will be read again.
                logger.info("dropped a batch read before the assignment changed", extra={"messages": len(batch)})
                return
            for (topic, partition), next_offset in next_offsets(batch).items():
                expected = self._stored.get(TopicPartition(topic, partition))
                prepared.progress[(topic, partition)] = PartitionProgress(expected, next_offset)
        self.writer.submit(prepared, generation)

    def _finish_write(self) -> None:
        """Wait for the write in flight, then account for it (or re-read the offsets if fenced)."""
        written = self.writer.wait()
        if written is None:
            return
        if written.fenced is not None:
            logger.warning("batch fenced off; re-reading stored offsets", extra={"error": str(written.fenced)})
            self._resync()  # read again after the offsets
        elif written.result is not None:  # (None: abandoned on shutdown during an outage)
            self._account(written.batch, written.result, written.generation)

    def _account(self, batch: PreparedBatch, result: WriteResult, generation: int) -> None:
        account(self.summary, self.metrics, batch, result)
        commit: dict[TopicPartition, int] = {}
        with self._lock:
            # After a rebalance the offsets read at assignment win; if they are older than this
            # batch, the next write is fenced and re-reads them.
            if generation == self._generation:
                for (topic, partition), progress in batch.progress.items():
                    tp = TopicPartition(topic, partition)
                    if tp in self._stored:
                        self._stored[tp] = progress.next_offset
                        commit[tp] = progress.next_offset
        self.committer.commit(commit)

    # ------------------------------------------------------------------ positions
    def _check_positions(self) -> None:
        """Stored offsets of newly assigned (or out-of-range) partitions against Kafka's logs,
        and blocked partitions an operator may have reset meanwhile (``positions``)."""
        for tp, offset in self.positions.recheck(self.kafka, time.monotonic(), self._read_offsets).items():
            with self._lock:
                if tp in self._stored:
                    self._stored[tp] = offset
                    self._seek({tp})
                    self._unchecked.add(tp)
                    self._generation += 1
        with self._lock:
            if not self._unchecked:
                return
            partitions, self._unchecked = self._unchecked, set()
            refetch, self._refetch = self._refetch, False
            stored = {tp: self._stored[tp] for tp in partitions if tp in self._stored}
        try:
            moved = self.positions.check(self.kafka, stored, before_write=self._finish_write)
        except KafkaError:
            logger.warning("cannot read the partitions' offset ranges from Kafka; retrying", exc_info=True)
            with self._lock:
                self._unchecked |= partitions
                self._refetch = self._refetch or refetch
            self.stop_requested.wait(1.0)
            return
        if moved or refetch:
            self._resync()

    # ------------------------------------------------------------------ rebalancing
    # on_partitions_revoked/assigned run on kafka-python's I/O thread (see the module docstring).
    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        logger.info("partitions revoked", extra={"partitions": sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked)})
        with self._lock:
            # Unwritten messages of these partitions will be read again by their next owner.
            dropped = self._builder.drop(revoked)
            self._unchecked -= revoked
            self.positions.forget(revoked)
            for tp in revoked:
                self._stored.pop(tp, None)
                if self.committer is not None:
                    self.committer.forget(tp)
            self._generation += 1
        if dropped:
            logger.info("dropped unwritten messages of revoked partitions", extra={"messages": dropped})
        # Let the write in flight land before the partitions go: their next owner then starts
        # from offsets that include it. Not for longer than half a session (this blocks the
        # heartbeats): a write that lands later is fenced, never doubled.
        if not self.writer.settle(timeout_s=self.settings.session_timeout_ms / 2000):
            logger.warning("a write was still in flight when the partitions were handed over; the fence guards it")

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        # Read on the writer thread: after any write in flight, on its connection.
        offsets = self.writer.call(self._read_offsets)
        with self._lock:
            for tp in assigned:
                self._stored[tp] = offsets.get(tp.partition)
            self._seek(assigned)
            self._unchecked |= assigned
            self._generation += 1
        logger.info(
            "partitions assigned",
            extra={"partitions": {f"{tp.topic}[{tp.partition}]": offsets.get(tp.partition) for tp in assigned}},
        )

    def _read_offsets(self) -> dict[int, int]:
        return stored_offsets(consumer_group=self.settings.group, topic=self.settings.topic)

    def _seek(self, partitions: set[TopicPartition]) -> None:
        """Position each partition at the stored offset, or by CONSUMER_AUTO_OFFSET_RESET if none.
        PostgreSQL is the only source of truth for positions."""
        unstored = []
        for tp in partitions:
            stored = self._stored.get(tp)
            if stored is None:
                unstored.append(tp)
            else:
                self.kafka.seek(tp, stored)
        if unstored:
            if self.settings.auto_offset_reset == "earliest":
                self.kafka.seek_to_beginning(*unstored)
            else:
                self.kafka.seek_to_end(*unstored)

    def _reposition(self) -> None:
        """Seek every assigned partition to just after what we hold (held, else stored)."""
        held = {tp for tp in self._stored if tp in self._builder.read_to}
        for tp in held:
            self.kafka.seek(tp, self._builder.read_to[tp])
        self._seek(set(self._stored) - held)

    def _resync(self) -> None:
        """After a fenced batch: forget what is held and seek to what PostgreSQL holds."""
        offsets = self.writer.call(self._read_offsets)
        with self._lock:
            self._builder.drop(set(self._stored))
            for tp in self._stored:
                self._stored[tp] = offsets.get(tp.partition)
            self._seek(set(self._stored))
            self._generation += 1
