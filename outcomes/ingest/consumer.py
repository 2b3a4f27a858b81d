"""The consumer loop: poll → parse → batch → write → commit Kafka offsets.

Shaped like Sentry's arroyo pipelines: small steps, never auto-commit, Kafka offsets are
committed only after PostgreSQL has committed the batch (they are for lag tools; the
source of truth is the offsets table the writer updates in the batch's own transaction).
On every partition assignment the consumer seeks to those stored offsets, so a crash, a
``kill -9`` or a rebalance neither loses nor duplicates an outcome.

Writes overlap with reading: while one batch is being written by a single writer thread,
the main thread polls and parses the next one. All database access happens on that writer
thread. kafka-python 3 runs rebalance callbacks on its own I/O thread, so the state they
share with the main thread (pending messages, stored offsets) is guarded by a lock, and a
generation counter tells the main thread when records it polled straddle a rebalance.
Bad messages become dead letters; a cap stops the consumer when too many arrive,
like arroyo's ``DlqLimit``. SIGTERM/SIGINT finish the batch in hand, commit, leave the group
and return normally. A third thread, with its own connection, compacts the rollups' partial
rows every ``rollup_compact_seconds`` (in parallel with the writes; one compactor at a time
across all consumers, by advisory lock).

Must not import the API layer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import InterfaceError, OperationalError, close_old_connections, connection
from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from analytics.consumer_settings import ConsumerSettings
from outcomes import rollups
from outcomes.ingest.messages import InvalidOutcome, parse_outcome
from outcomes.ingest.metrics import ConsumerMetrics
from outcomes.writes import (
    Batch,
    OffsetConflict,
    PartitionProgress,
    Position,
    PreparedBatch,
    Rejected,
    WriteResult,
    prepare_batch,
    stored_offsets,
    write_batch,
)

logger = logging.getLogger("outcomes.consumer")

_TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
# After a batch met duplicates, this many batches go straight to the staging path.
STAGE_FIRST_BATCHES = 8


class DeadLetterLimitExceeded(Exception):
    """Too many invalid messages: stop rather than dead-letter a whole topic."""


@dataclass
class RunSummary:
    consumed: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0


class DeadLetterLimit:
    """Trips after ``max_consecutive`` invalid messages in a row, or when more than
    ``max_ratio`` of the last ``window`` messages were invalid. 0 disables a check."""

    def __init__(self, *, max_consecutive: int, max_ratio: float, window: int) -> None:
        self.max_consecutive = max_consecutive
        self.max_ratio = max_ratio
        self.window = deque(maxlen=window)
        self.invalid_in_window = 0
        self.consecutive = 0

    def record(self, invalid: bool) -> None:
        if len(self.window) == self.window.maxlen and self.window[0]:
            self.invalid_in_window -= 1
        self.window.append(invalid)
        self.invalid_in_window += invalid
        self.consecutive = self.consecutive + 1 if invalid else 0
        if self.max_consecutive and self.consecutive >= self.max_consecutive:
            raise DeadLetterLimitExceeded(
                f"{self.consecutive} invalid messages in a row (CONSUMER_DLQ_MAX_CONSECUTIVE={self.max_consecutive})"
            )
        if (
            self.max_ratio < 1.0
            and len(self.window) == self.window.maxlen
            and self.invalid_in_window / len(self.window) > self.max_ratio
        ):
            raise DeadLetterLimitExceeded(
                f"{self.invalid_in_window} of the last {len(self.window)} messages were invalid "
                f"(CONSUMER_DLQ_MAX_RATIO={self.max_ratio}, CONSUMER_DLQ_WINDOW={self.window.maxlen})"
            )


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: OutcomeConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked):
        self.owner._on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned):
        self.owner._on_assigned(set(assigned))


class OutcomeConsumer:
    def __init__(
        self,
        settings: ConsumerSettings,
        *,
        max_messages: int | None = None,
        idle_timeout_ms: int | None = None,
        metrics: ConsumerMetrics | None = None,
        install_signal_handlers: bool = True,
    ) -> None:
        self.settings = settings
        self.max_messages = max_messages
        self.idle_timeout_ms = idle_timeout_ms
        self.metrics = metrics or ConsumerMetrics()
        self.install_signal_handlers = install_signal_handlers
        self.summary = RunSummary()
        self.stop_requested = threading.Event()
        self.limit = DeadLetterLimit(
            max_consecutive=settings.dlq_max_consecutive, max_ratio=settings.dlq_max_ratio, window=settings.dlq_window
        )
        self._consumer: KafkaConsumer | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcome-writer")
        self._compactor = _Compactor(settings.rollup_compact_seconds, self.stop_requested)
        self._in_flight: tuple[Future, PreparedBatch, int] | None = None
        self._stage_first_batches = 0
        self._pending = Batch()
        self._pending_started = 0.0
        # Guarded by _lock (shared with the rebalance callbacks on kafka-python's I/O thread):
        # assigned partitions → next offset stored in PostgreSQL (None: nothing stored yet),
        self._stored: dict[TopicPartition, int | None] = {}
        # next offset after the messages read so far (pending included),
        self._read_to: dict[TopicPartition, int] = {}
        # and a counter bumped by every assignment change.
        self._generation = 0
        self._lock = threading.RLock()
        self._ready: bool | None = None

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self, *_args) -> None:
        if not self.stop_requested.is_set():
            logger.info("stop requested; finishing the current batch")
        self.stop_requested.set()

    def run(self) -> RunSummary:
        if self.install_signal_handlers:
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        self._touch_health()
        self._set_ready(False)  # a file left by an earlier run says nothing about this one
        self._consumer = self._connect()
        if self._consumer is None:
            return self.summary
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
        self._compactor.start()
        try:
            self._loop()
            self._flush()
            self._wait_in_flight()
        finally:
            self._set_ready(False)
            self._close()
            self._compactor.stop()
        logger.info("consumer stopped", extra=vars(self.summary))
        return self.summary

    def _connect(self) -> KafkaConsumer | None:
        backoff = _Backoff(self.settings)
        while not self.stop_requested.is_set():
            try:
                consumer = KafkaConsumer(
                    bootstrap_servers=list(self.settings.brokers),
                    group_id=self.settings.group,
                    client_id=f"analytics-consumer-{os.getpid()}",
                    enable_auto_commit=False,
                    auto_offset_reset=self.settings.auto_offset_reset,
                    max_poll_records=self.settings.batch_size,
                    session_timeout_ms=self.settings.session_timeout_ms,
                    heartbeat_interval_ms=max(300, self.settings.session_timeout_ms // 4),
                    fetch_max_bytes=32 * 1024 * 1024,
                    max_partition_fetch_bytes=8 * 1024 * 1024,
                )
                # Load the topic's partitions first: joining with metadata that lacks them gives
                # an empty first assignment ("No partition metadata for topic"), and the rejoin
                # that follows can stall for many seconds (seen on brand-new topics).
                consumer.partitions_for_topic(self.settings.topic)
                consumer.subscribe([self.settings.topic], listener=_Rebalance(self))
                self._set_ready(True)
                return consumer
            except KafkaError as exc:
                delay = backoff.next()
                self._set_ready(False)
                self._touch_health()
                logger.warning("cannot reach Kafka; retrying", extra={"error": repr(exc), "retry_in_s": delay})
                self.stop_requested.wait(delay)
        return None

    def _close(self) -> None:
        try:
            if self._consumer is not None:
                self._consumer.close(autocommit=False)  # leaves the group at once
        except KafkaError:
            logger.warning("error while closing the Kafka consumer", exc_info=True)
        # The writer thread's database connection is thread-local: close it from that thread.
        self._executor.submit(_discard_connection).result()
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ main loop
    def _loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        batch_time = self.settings.batch_time_ms / 1000
        last_message_at = time.monotonic()
        while not self.stop_requested.is_set():
            self._touch_health()
            self._reap_in_flight()
            remaining = self._remaining_messages()
            if remaining == 0:
                break
            with self._lock:
                generation = self._generation
                room = self.settings.batch_size - len(self._pending)
                if len(self._pending):
                    wait_ms = max(0, int((self._pending_started + batch_time - time.monotonic()) * 1000))
                else:
                    wait_ms = min(self.settings.batch_time_ms, 500)
            try:
                records = consumer.poll(timeout_ms=wait_ms, max_records=max(1, min(room, remaining or room)))
            except KafkaError:
                logger.warning("Kafka poll failed; retrying", exc_info=True)
                self.stop_requested.wait(1.0)
                continue
            now = time.monotonic()
            with self._lock:
                if records and generation != self._generation:
                    # The assignment changed while polling: these records may predate the seeks the
                    # rebalance made. Drop them and put every partition back where we stand.
                    logger.info("discarding records polled across a rebalance")
                    self._reposition()
                elif records:
                    last_message_at = now
                    for tp, messages in records.items():
                        if tp in self._stored:
                            for message in messages:
                                self._add(tp, message)
                if len(self._pending) and (
                    len(self._pending) >= self.settings.batch_size
                    or now - self._pending_started >= batch_time
                    or self._remaining_messages() == 0
                ):
                    self._flush()
            if self.idle_timeout_ms is not None and now - last_message_at >= self.idle_timeout_ms / 1000:
                logger.info("no message within the timeout; stopping", extra={"timeout_ms": self.idle_timeout_ms})
                break

    def _remaining_messages(self) -> int | None:
        if self.max_messages is None:
            return None
        return max(0, self.max_messages - self.summary.consumed)

    def _add(self, tp: TopicPartition, message) -> None:
        if not len(self._pending):
            self._pending_started = time.monotonic()
        self.summary.consumed += 1
        position = Position(message.topic, message.partition, message.offset, message.timestamp)
        parsed = parse_outcome(
            message.value,
            message.key,
            max_bytes=self.settings.max_message_bytes,
            max_price=self.settings.max_price,
        )
        invalid = isinstance(parsed, InvalidOutcome)
        if invalid:
            logger.warning(
                "invalid message; dead-lettering it",
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                    "reason": parsed.reason,
                    "detail": parsed.detail,
                },
            )
            self._pending.rejected.append(Rejected(position, message.key, message.value, parsed.reason, parsed.detail))
        else:
            self._pending.events.append((parsed, position))
        self._read_to[tp] = message.offset + 1
        self.limit.record(invalid)

    # ------------------------------------------------------------------ writing
    def _flush(self) -> None:
        """Hand the pending batch to the writer thread (after the previous one has finished).

        The batch is prepared (de-duplicated, rendered for COPY) here, while the previous
        batch may still be in the database: the two overlap.
        """
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not len(self._pending):
            return
        batch = self._pending
        self._pending = Batch()
        prepared = prepare_batch(batch)
        generation = self._generation
        self._wait_in_flight()
        if generation != self._generation:
            # The previous write was fenced off and every partition was sought back to its
            # stored offset: this batch lies beyond it and will be read again.
            self.summary.consumed -= len(batch)
            logger.info("dropped a batch read before the offsets were re-read", extra={"messages": len(batch)})
            return
        for tp in {TopicPartition(p.topic, p.partition) for p in _positions(batch)}:
            prepared.progress[(tp.topic, tp.partition)] = PartitionProgress(self._stored.get(tp), self._read_to[tp])
        stage_first = self._stage_first_batches > 0
        self._stage_first_batches = max(0, self._stage_first_batches - 1)
        future = self._executor.submit(self._write_with_retry, prepared, stage_first)
        self._in_flight = (future, prepared, self._generation)

    def _reap_in_flight(self) -> None:
        if self._in_flight is not None and self._in_flight[0].done():
            self._wait_in_flight()

    def _wait_in_flight(self) -> None:
        if self._in_flight is None:
            return
        future, batch, generation = self._in_flight
        self._in_flight = None
        try:
            # The write may be waiting out a database outage: stay visibly alive meanwhile.
            while True:
                try:
                    result = future.result(timeout=1.0)
                    break
                except FutureTimeout:
                    self._touch_health()
        except OffsetConflict as conflict:
            logger.warning("batch fenced off; re-reading stored offsets", extra={"error": str(conflict)})
            self._resync()
            return
        if result is None:  # abandoned on shutdown during an outage; nothing was written
            return
        with self._lock:
            self._after_write(batch, result, same_assignment=generation == self._generation)

    def _write_with_retry(self, batch: PreparedBatch, stage_first: bool) -> WriteResult | None:
        backoff = _Backoff(self.settings)
        while True:
            started = time.monotonic()
            try:
                result = write_batch(batch, consumer_group=self.settings.group, stage_first=stage_first)
            except _TRANSIENT_DB_ERRORS as exc:
                self.metrics.write_retries.inc()
                self._set_ready(False)
                _discard_connection()
                if self.stop_requested.is_set():
                    logger.error(
                        "database unavailable during shutdown; batch abandoned (it will be read again)",
                        extra={"error": str(exc).strip()},
                    )
                    return None
                delay = backoff.next()
                self._touch_health()
                logger.warning(
                    "database unavailable; retrying the batch",
                    extra={"error": str(exc).strip(), "retry_in_s": delay, "messages": len(batch)},
                )
                time.sleep(delay)
                continue
            elapsed = time.monotonic() - started
            self._set_ready(True)
            self.metrics.batch_seconds.observe(elapsed)
            result.duration_ms = round(elapsed * 1000, 1)
            return result

    def _after_write(self, batch: PreparedBatch, result: WriteResult, *, same_assignment: bool) -> None:
        if result.used_fallback and not self._stage_first_batches:
            # Duplicates are arriving: skip the doomed fast path for the next few batches.
            self._stage_first_batches = STAGE_FIRST_BATCHES
        messages = len(batch)
        dead = sum(result.dead_lettered.values())
        self.summary.stored += result.stored
        self.summary.duplicates += result.duplicates
        self.summary.dead_lettered += dead
        self.summary.batches += 1
        self.metrics.consumed.inc(messages)
        self.metrics.stored.inc(result.stored)
        self.metrics.duplicates.inc(result.duplicates)
        for reason, count in result.dead_lettered.items():
            self.metrics.dead_lettered.labels(reason=reason).inc(count)
        self.metrics.batches.inc()
        if result.newest_event_time is not None:
            age = (datetime.now(UTC) - result.newest_event_time).total_seconds()
            self.metrics.last_outcome_age.set(max(0.0, age))
        commit: dict[TopicPartition, OffsetAndMetadata] = {}
        for (topic, partition), progress in batch.progress.items():
            tp = TopicPartition(topic, partition)
            # After a rebalance the offsets read at assignment win; if they are older than
            # this batch, the next write is fenced and re-reads them.
            if same_assignment and tp in self._stored:
                self._stored[tp] = progress.next_offset
                commit[tp] = OffsetAndMetadata(progress.next_offset, "", -1)
                self._update_lag(tp, progress.next_offset)
        logger.info(
            "batch written",
            extra={
                "messages": messages,
                "stored": result.stored,
                "duplicates": result.duplicates,
                "dead_lettered": dead,
                "dead_letter_reasons": dict(result.dead_lettered),
                "duration_ms": result.duration_ms,
                "offsets": {f"{t}[{p}]": [pr.expected, pr.next_offset] for (t, p), pr in batch.progress.items()},
            },
        )
        if logger.isEnabledFor(logging.DEBUG):
            for event, _position in batch.events:
                logger.debug(
                    "Auction outcome saved",
                    extra={"bid_id": event.bid_id, "win_status": event.win_status, "win_price": str(event.win_price)},
                )
        self._commit_kafka(commit)

    def _commit_kafka(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        assigned = {tp: om for tp, om in offsets.items() if tp in self._stored}
        if not assigned or self._consumer is None:
            return
        try:
            self._consumer.commit_async(offsets=assigned, callback=_log_commit_failure)
        except KafkaError as exc:
            # Only lag tools read these; PostgreSQL holds the offsets that matter.
            logger.warning("Kafka offset commit failed", extra={"error": repr(exc)})

    def _update_lag(self, tp: TopicPartition, next_offset: int) -> None:
        if self._consumer is None:
            return
        highwater = self._consumer.highwater(tp)
        if highwater is not None:
            self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, highwater - next_offset))

    # ------------------------------------------------------------------ rebalancing
    # on_partitions_revoked/assigned run on kafka-python's I/O thread (see module docstring).
    def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        logger.info("partitions revoked", extra={"partitions": sorted(f"{tp.topic}[{tp.partition}]" for tp in revoked)})
        with self._lock:
            # Unwritten messages of these partitions will be read again by their next owner.
            self._drop_pending(revoked)
            for tp in revoked:
                self._stored.pop(tp, None)
                with contextlib.suppress(KeyError):
                    self.metrics.lag.remove(tp.topic, str(tp.partition))
            self._generation += 1

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        # Read on the writer thread: after any write in flight, on its connection.
        offsets = self._executor.submit(self._read_stored_offsets).result()
        with self._lock:
            for tp in assigned:
                self._stored[tp] = offsets.get(tp.partition)
            self._seek(assigned)
            self._generation += 1
        logger.info(
            "partitions assigned",
            extra={"partitions": {f"{tp.topic}[{tp.partition}]": offsets.get(tp.partition) for tp in assigned}},
        )

    def _seek(self, partitions: set[TopicPartition]) -> None:
        """Position each partition at the stored offset, or by CONSUMER_AUTO_OFFSET_RESET if none.

        PostgreSQL is the only source of truth for positions: offsets committed to Kafka are
        never read back (they exist for lag tools).
        """
        consumer = self._consumer
        unstored = []
        for tp in partitions:
            stored = self._stored.get(tp)
            if stored is None:
                unstored.append(tp)
            else:
                consumer.seek(tp, stored)
        if unstored:
            if self.settings.auto_offset_reset == "earliest":
                consumer.seek_to_beginning(*unstored)
            else:
                consumer.seek_to_end(*unstored)

    def _reposition(self) -> None:
        """Seek every assigned partition to just after what we hold (pending, else stored)."""
        with_pending = {tp for tp in self._stored if tp in self._read_to}
        for tp in with_pending:
            self._consumer.seek(tp, self._read_to[tp])
        self._seek(set(self._stored) - with_pending)

    def _read_stored_offsets(self) -> dict[int, int]:
        backoff = _Backoff(self.settings)
        while True:
            try:
                return stored_offsets(consumer_group=self.settings.group, topic=self.settings.topic)
            except _TRANSIENT_DB_ERRORS as exc:
                _discard_connection()
                if self.stop_requested.is_set():
                    raise
                delay = backoff.next()
                self._touch_health()
                logger.warning(
                    "database unavailable while reading offsets; retrying",
                    extra={"error": str(exc).strip(), "retry_in_s": delay},
                )
                time.sleep(delay)

    def _resync(self) -> None:
        """After a fenced batch: forget what is pending and seek to what PostgreSQL holds."""
        offsets = self._executor.submit(self._read_stored_offsets).result()
        with self._lock:
            self._drop_pending(set(self._stored))
            for tp in self._stored:
                self._stored[tp] = offsets.get(tp.partition)
            self._seek(set(self._stored))
            self._generation += 1

    def _drop_pending(self, partitions: set[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        kept = Batch()
        dropped = 0
        for event, position in self._pending.events:
            if (position.topic, position.partition) in keys:
                dropped += 1
            else:
                kept.events.append((event, position))
        for rejected in self._pending.rejected:
            if (rejected.position.topic, rejected.position.partition) in keys:
                dropped += 1
            else:
                kept.rejected.append(rejected)
        if dropped:
            self.summary.consumed -= dropped
            logger.info("dropped unwritten messages of revoked partitions", extra={"messages": dropped})
        self._pending = kept
        for tp in partitions:
            self._read_to.pop(tp, None)

    # ------------------------------------------------------------------ health
    def _set_ready(self, ready: bool) -> None:
        path = self.settings.ready_file
        if not path or self._ready == ready:
            return
        try:
            if ready:
                with open(path, "a"):
                    pass
            elif os.path.exists(path):
                os.remove(path)
            self._ready = ready
        except OSError:
            logger.warning("cannot update the readiness file", extra={"path": path})

    def _touch_health(self) -> None:
        path = self.settings.health_file
        if not path:
            return
        try:
            with open(path, "a"):
                os.utime(path, None)
        except OSError:
            logger.warning("cannot touch the health file", extra={"path": path})


def _positions(batch: Batch):
    for _event, position in batch.events:
        yield position
    for rejected in batch.rejected:
        yield rejected.position


class _Compactor:
    """Merges the rollups' partial rows now and then, on its own thread and connection."""

    def __init__(self, interval_s: float, stop_requested: threading.Event) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._outer_stop = stop_requested
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="rollup-compactor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s) and not self._outer_stop.is_set():
                try:
                    merged = rollups.compact()
                    if any(merged.values()):
                        logger.debug("rollups compacted", extra={"merged": merged})
                except _TRANSIENT_DB_ERRORS as exc:
                    logger.warning("rollup compaction failed; retrying later", extra={"error": str(exc).strip()})
                    _discard_connection()
        finally:
            _discard_connection()


def _discard_connection() -> None:
    # The connection is broken already; a new one is opened on the next query.
    with contextlib.suppress(Exception):
        connection.close()
    close_old_connections()


def _log_commit_failure(offsets, response) -> None:
    if isinstance(response, Exception):
        logger.warning("Kafka offset commit failed (lag tools only)", extra={"error": repr(response)})


class _Backoff:
    def __init__(self, settings: ConsumerSettings) -> None:
        self.delay = settings.retry_initial_backoff_ms / 1000
        self.maximum = settings.retry_max_backoff_ms / 1000

    def next(self) -> float:
        current = self.delay
        self.delay = min(self.maximum, self.delay * 2)
        return round(current, 3)
