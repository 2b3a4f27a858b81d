"""The real Kafka consumer the loop polls (tests pass an in-memory one instead)."""

from __future__ import annotations

import os

from kafka import ConsumerRebalanceListener, KafkaConsumer

from analytics.consumer_settings import ConsumerSettings


def kafka_consumer(settings: ConsumerSettings, listener: ConsumerRebalanceListener) -> KafkaConsumer:
    """Subscribed, auto-commit off: PostgreSQL holds the offsets that matter."""
    consumer = KafkaConsumer(
        bootstrap_servers=list(settings.brokers),
        group_id=settings.group,
        client_id=f"analytics-consumer-{os.getpid()}",
        enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset,
        max_poll_records=settings.batch_size,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(300, settings.session_timeout_ms // 4),
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    # Load the topic's partitions first: joining with metadata that lacks them gives an empty
    # first assignment ("No partition metadata for topic"), and the rejoin that follows can
    # stall for many seconds (seen on brand-new topics).
    consumer.partitions_for_topic(settings.topic)
    consumer.subscribe([settings.topic], listener=listener)
    return consumer
