"""The Kafka consumer the loop polls: made (the real one here; tests pass an in-memory one),
connected with retries, and the rebalance listener that hands assignments to the loop."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.errors import KafkaError

from analytics.consumer_settings import ConsumerSettings
from outcomes.ingest.health import HealthFiles
from outcomes.ingest.retry import retry

logger = logging.getLogger("outcomes.consumer")


class Rebalance(ConsumerRebalanceListener):
    """Called by kafka-python on its I/O thread."""

    def __init__(self, on_revoked: Callable[[set], None], on_assigned: Callable[[set], None]) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    def on_partitions_revoked(self, revoked):
        self._on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned):
        self._on_assigned(set(assigned))


def connect(factory, settings: ConsumerSettings, listener, stop: threading.Event, health: HealthFiles):
    """``factory(settings, listener)``, retried while Kafka cannot be reached (``Abandoned`` on stop)."""

    def failed(exc: BaseException, delay: float) -> None:
        health.set_ready(False)
        health.touch()
        logger.warning("cannot reach Kafka; retrying", extra={"error": repr(exc), "retry_in_s": delay})

    return retry(
        lambda: factory(settings, listener),
        transient=(KafkaError,),
        initial_ms=settings.retry_initial_backoff_ms,
        max_ms=settings.retry_max_backoff_ms,
        stop=stop,
        on_failure=failed,
    )


def kafka_consumer(settings: ConsumerSettings, listener: ConsumerRebalanceListener) -> KafkaConsumer:
    """Subscribed, auto-commit off: PostgreSQL holds the offsets that matter."""
    consumer = KafkaConsumer(
        bootstrap_servers=list(settings.brokers),
        group_id=settings.group,
        client_id=f"analytics-consumer-{os.getpid()}",
        enable_auto_commit=False,
        # Never reset a position silently: the loop seeks every assigned partition itself
        # (to its stored offset, or by CONSUMER_AUTO_OFFSET_RESET when none is stored), and an
        # out-of-range fetch raises for ``positions`` to handle.
        auto_offset_reset="none",
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
