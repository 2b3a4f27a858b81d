"""Stored offsets that Kafka no longer has: detected, reported, and handled by one policy.

PostgreSQL holds each partition's next offset; Kafka holds a log from its first offset (log
start, which retention moves forward) to its end. A stored offset outside that range means
something happened to the topic behind the consumer's back. Detected when partitions are
assigned (the stored offsets against ``beginning_offsets``/``end_offsets``) and whenever a
fetch is answered ``OFFSET_OUT_OF_RANGE`` (kafka-python runs with ``auto_offset_reset="none"``:
it must never reset a position silently). The policy:

* **before the beginning** — retention deleted messages this group never stored. They are
  gone; the range is recorded as lost (``LostOffsets``, in the transaction that moves the
  stored offset to the partition's first offset), logged as an error, counted in
  ``analytics_consumer_lost_messages_total``, and reading continues from the first offset.
* **beyond the end** — the topic was deleted and recreated, or truncated: the stored offset
  names messages that no longer exist, and the new ones at lower offsets may or may not have
  been stored under their old numbers. Guessing would lose or duplicate outcomes, so the
  partition is paused (the others go on), logged as an error and flagged in
  ``analytics_consumer_partition_blocked`` until an operator decides with
  ``manage.py reset_consumer_offsets`` (to the earliest, the latest or a given offset); the
  consumer notices the new stored offset within ``RECHECK_SECONDS`` and resumes.

A recreated topic that already holds more messages than the stored offset cannot be told
apart from the old one by offsets alone; such a recreation needs the reset too.
"""

from __future__ import annotations

import logging

from outcomes.offsets import BEFORE_BEGINNING, LogRange, classify

logger = logging.getLogger("outcomes.consumer")

RECHECK_SECONDS = 5.0


def log_ranges(kafka, partitions) -> dict:
    """{TopicPartition: LogRange} from the broker (raises ``KafkaError`` when it cannot say)."""
    partitions = list(partitions)
    if not partitions:
        return {}
    first = kafka.beginning_offsets(partitions)
    end = kafka.end_offsets(partitions)
    return {tp: LogRange(first[tp], end[tp]) for tp in partitions}


class PositionGuard:
    """Applies the policy above for one consumer. Runs on the loop's thread (it calls the
    Kafka consumer, which only that thread may), with database work on the writer thread."""

    def __init__(self, settings, metrics, writer) -> None:
        self.settings = settings
        self.metrics = metrics
        self.writer = writer
        self.blocked: dict = {}  # TopicPartition → the stored offset beyond its end
        self._next_recheck = 0.0

    def check(self, kafka, stored: dict, *, before_write) -> bool:
        """Check stored offsets ({tp: next offset}) against Kafka's logs and apply the policy.
        Returns True when stored offsets moved (the loop re-reads them). ``before_write`` is
        called before the first database change (the loop lands its write in flight first)."""
        stored = {tp: offset for tp, offset in stored.items() if offset is not None and tp not in self.blocked}
        moved = False
        for tp, log in log_ranges(kafka, stored).items():
            offset = stored[tp]
            kind = classify(offset, log)
            if kind is None:
                continue
            where = {
                "topic": tp.topic,
                "partition": tp.partition,
                "stored_offset": offset,
                "first_offset": log.first,
                "end_offset": log.end,
            }
            self.metrics.offset_out_of_range.labels(tp.topic, tp.partition, kind).inc()
            if kind == BEFORE_BEGINNING:
                if not moved:
                    before_write()
                if self.writer.call(lambda tp=tp, offset=offset, log=log: self._skip_lost(tp, offset, log.first)):
                    self.metrics.lost_messages.labels(tp.topic, tp.partition).inc(log.first - offset)
                    logger.error(
                        "messages were deleted from Kafka before they were stored; recorded as lost, "
                        "reading resumes at the partition's first offset",
                        extra={**where, "kind": kind, "lost_messages": log.first - offset},
                    )
                moved = True
            else:
                kafka.pause(tp)
                self.blocked[tp] = offset
                self.metrics.partition_blocked.labels(tp.topic, tp.partition).set(1)
                logger.error(
                    "stored offset is beyond the end of the partition (was the topic deleted and recreated?); "
                    "the partition is paused until an operator resets its offset with "
                    f"`manage.py reset_consumer_offsets --partition {tp.partition} "
                    "--to-earliest|--to-latest|--to-offset N`",
                    extra={**where, "kind": kind},
                )
        return moved

    def _skip_lost(self, tp, stored: int, first: int) -> bool:
        from outcomes.writes import offsets_skip_lost

        return offsets_skip_lost(
            consumer_group=self.settings.group,
            topic=tp.topic,
            partition=tp.partition,
            stored=stored,
            first_available=first,
        )

    def recheck(self, kafka, now: float, read_offsets) -> dict:
        """Every ``RECHECK_SECONDS`` while a partition is blocked: has an operator stored a new
        offset? Returns {tp: new offset} of the partitions resumed (the loop seeks them)."""
        if not self.blocked or now < self._next_recheck:
            return {}
        self._next_recheck = now + RECHECK_SECONDS
        offsets = self.writer.call(read_offsets)
        resumed = {}
        for tp, offset in list(self.blocked.items()):
            new = offsets.get(tp.partition)
            if new != offset:
                self.forget([tp])
                kafka.resume(tp)
                resumed[tp] = new
                logger.info(
                    "stored offset reset by an operator; partition resumed",
                    extra={"topic": tp.topic, "partition": tp.partition, "stored_offset": new},
                )
        return resumed

    def forget(self, partitions) -> None:
        for tp in partitions:
            if self.blocked.pop(tp, None) is not None:
                self.metrics.partition_blocked.labels(tp.topic, tp.partition).set(0)
