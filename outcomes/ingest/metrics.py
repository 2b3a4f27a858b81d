"""Prometheus metrics of one consumer process (text format on ``CONSUMER_METRICS_PORT``).

Each consumer gets its own registry, so several consumers in one process (tests) do not
collide and each exposes only its own numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class ConsumerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = Counter("analytics_consumer_messages_consumed", "Messages read from Kafka.", registry=r)
        self.stored = Counter("analytics_consumer_outcomes_stored", "New outcomes written to PostgreSQL.", registry=r)
        self.duplicates = Counter(
            "analytics_consumer_duplicates",
            "Messages whose bid_id was already stored with the same content.",
            registry=r,
        )
        self.dead_lettered = Counter(
            "analytics_consumer_dead_lettered", "Messages written to the dead-letter table.", ["reason"], registry=r
        )
        self.batches = Counter("analytics_consumer_batches", "Batches committed to PostgreSQL.", registry=r)
        self.write_retries = Counter(
            "analytics_consumer_write_retries", "Batch writes retried after a database error.", registry=r
        )
        self.batch_seconds = Histogram(
            "analytics_consumer_batch_write_seconds",
            "Time to write and commit one batch.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.lag = Gauge(
            "analytics_consumer_lag",
            "High-water mark minus the stored next offset, per partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.last_outcome_age = Gauge(
            "analytics_consumer_last_stored_outcome_age_seconds",
            "Age (auction time, else Kafka time) of the newest outcome in the last stored batch.",
            registry=r,
        )

        self.offset_out_of_range = Counter(
            "analytics_consumer_offset_out_of_range",
            "Stored offsets found outside their partition's log in Kafka (kind: before_beginning, beyond_end).",
            ["topic", "partition", "kind"],
            registry=r,
        )
        self.lost_messages = Counter(
            "analytics_consumer_lost_messages",
            "Messages Kafka deleted before they were stored (offsets before the partition's first offset).",
            ["topic", "partition"],
            registry=r,
        )
        self.partition_blocked = Gauge(
            "analytics_consumer_partition_blocked",
            "1 while a partition is paused because its stored offset is beyond the partition's end "
            "(manage.py reset_consumer_offsets decides where to resume).",
            ["topic", "partition"],
            registry=r,
        )

    def serve(self, port: int, addr: str) -> None:
        start_http_server(port, addr=addr, registry=self.registry)
