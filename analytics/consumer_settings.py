"""The Kafka consumer's settings, read once from the environment into a frozen dataclass.

``process_outcomes`` overrides single fields from its command-line options with
``dataclasses.replace``; nothing else mutates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from analytics.env import env_float, env_int, env_list, env_str


@dataclass(frozen=True)
class ConsumerSettings:
    brokers: tuple[str, ...] = ("127.0.0.1:9092",)
    topic: str = "auction_outcomes"
    group: str = "analytics-service-group"
    auto_offset_reset: str = "earliest"
    # Batching: a batch is written when it holds batch_size messages or batch_time_ms has passed.
    batch_size: int = 10000
    batch_time_ms: int = 1000
    # Validation bounds.
    max_message_bytes: int = 65536
    max_price: Decimal = Decimal("1000.00")
    # Dead-letter cap: stop instead of dead-lettering a whole topic after a bad upstream deploy.
    dlq_max_consecutive: int = 1000
    dlq_max_ratio: float = 0.5
    dlq_window: int = 1000
    # Operations.
    metrics_port: int = 9108
    metrics_addr: str = "0.0.0.0"  # noqa: S104 - scraped from outside the pod; make run uses loopback
    health_file: str = "/tmp/analytics-consumer.alive"  # noqa: S108 - a liveness marker, not data
    # Present while the consumer is connected to Kafka and its last write reached PostgreSQL;
    # removed while it retries either, and on stop (the readiness probe's signal).
    ready_file: str = "/tmp/analytics-consumer.ready"  # noqa: S108 - a readiness marker, not data
    session_timeout_ms: int = 10000
    retry_initial_backoff_ms: int = 200
    retry_max_backoff_ms: int = 30000
    # How often the consumer merges the rollups' partial rows (0: never; compact_rollups does it).
    rollup_compact_seconds: float = 10.0
    # Live updates: each committed batch's event goes to this Redis stream ("": none).
    live_redis_url: str = ""
    live_stream: str = "analytics:live"
    live_stream_length: int = 10000

    @classmethod
    def from_env(cls) -> ConsumerSettings:
        defaults = cls()
        reset = env_str("CONSUMER_AUTO_OFFSET_RESET", defaults.auto_offset_reset)
        if reset not in ("earliest", "latest"):
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f"Environment variable CONSUMER_AUTO_OFFSET_RESET={reset!r} must be 'earliest' or 'latest'."
            )
        return cls(
            brokers=tuple(env_list("KAFKA_BROKERS", list(defaults.brokers))),
            topic=env_str("KAFKA_TOPIC_AUCTION_OUTCOMES", defaults.topic),
            group=env_str("KAFKA_CONSUMER_GROUP", defaults.group),
            auto_offset_reset=reset,
            batch_size=env_int("CONSUMER_BATCH_SIZE", defaults.batch_size, minimum=1, maximum=100_000),
            batch_time_ms=env_int("CONSUMER_BATCH_TIME_MS", defaults.batch_time_ms, minimum=1),
            max_message_bytes=env_int("CONSUMER_MAX_MESSAGE_BYTES", defaults.max_message_bytes, minimum=256),
            max_price=Decimal(
                str(env_float("CONSUMER_MAX_PRICE", float(defaults.max_price), minimum=0.01, maximum=99_999_999.99))
            ).quantize(Decimal("0.01")),
            dlq_max_consecutive=env_int("CONSUMER_DLQ_MAX_CONSECUTIVE", defaults.dlq_max_consecutive, minimum=0),
            dlq_max_ratio=env_float("CONSUMER_DLQ_MAX_RATIO", defaults.dlq_max_ratio, minimum=0.0, maximum=1.0),
            dlq_window=env_int("CONSUMER_DLQ_WINDOW", defaults.dlq_window, minimum=1),
            metrics_port=env_int("CONSUMER_METRICS_PORT", defaults.metrics_port, minimum=0, maximum=65535),
            metrics_addr=_ip_address("CONSUMER_METRICS_ADDR", env_str("CONSUMER_METRICS_ADDR", defaults.metrics_addr)),
            health_file=env_str("CONSUMER_HEALTH_FILE", defaults.health_file),
            ready_file=env_str("CONSUMER_READY_FILE", defaults.ready_file),
            session_timeout_ms=env_int(
                "CONSUMER_SESSION_TIMEOUT_MS", defaults.session_timeout_ms, minimum=1000, maximum=300000
            ),
            retry_initial_backoff_ms=env_int(
                "CONSUMER_RETRY_INITIAL_BACKOFF_MS", defaults.retry_initial_backoff_ms, minimum=1
            ),
            retry_max_backoff_ms=env_int("CONSUMER_RETRY_MAX_BACKOFF_MS", defaults.retry_max_backoff_ms, minimum=1),
            rollup_compact_seconds=env_float(
                "CONSUMER_ROLLUP_COMPACT_SECONDS", defaults.rollup_compact_seconds, minimum=0.0, maximum=86400.0
            ),
            live_redis_url=env_str("LIVE_REDIS_URL", env_str("REDIS_URL", "")),
            live_stream=env_str("LIVE_STREAM", defaults.live_stream),
            live_stream_length=env_int("LIVE_STREAM_LENGTH", defaults.live_stream_length, minimum=100),
        )


def _ip_address(name: str, value: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"Environment variable {name}={value!r} must be an IP address to listen on, e.g. 127.0.0.1 or 0.0.0.0."
        ) from None
