"""The commit step: after PostgreSQL has committed a batch, tell Kafka too (for lag tools:
PostgreSQL's offsets are the ones the consumer seeks to) and update the lag gauges.
Knows nothing about the database."""

from __future__ import annotations

import contextlib
import logging

from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from outcomes.ingest.metrics import ConsumerMetrics

logger = logging.getLogger("outcomes.consumer")


class CommitStep:
    def __init__(self, kafka, metrics: ConsumerMetrics) -> None:
        self.kafka = kafka
        self.metrics = metrics

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """``offsets``: next offset per partition, stored in PostgreSQL and still assigned."""
        if not offsets:
            return
        for tp, next_offset in offsets.items():
            highwater = self.kafka.highwater(tp)
            if highwater is not None:
                self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    max(0, highwater - next_offset)
                )
        try:
            self.kafka.commit_async(
                offsets={tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()},
                callback=_log_commit_failure,
            )
        except KafkaError as exc:
            # Only lag tools read these; PostgreSQL holds the offsets that matter.
            logger.warning("Kafka offset commit failed", extra={"error": repr(exc)})

    def forget(self, tp: TopicPartition) -> None:
        """A partition revoked: its lag is another consumer's to report."""
        with contextlib.suppress(KeyError):
            self.metrics.lag.remove(tp.topic, str(tp.partition))


def _log_commit_failure(offsets, response) -> None:
    if isinstance(response, Exception):
        logger.warning("Kafka offset commit failed (lag tools only)", extra={"error": repr(response)})
