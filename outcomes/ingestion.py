"""Is ingestion keeping up? The answer ``/api/ingestion/`` and the dashboard give.

Everything comes from what is already stored, plus one cheap question to Kafka:

* the consumer's positions are the offsets it stores with every batch (``ConsumerOffset``),
  so their ``updated_at`` says when it last made progress, dead-lettered messages included;
* the topic's end offsets come from the broker (one client per process, answers kept for
  ``_KAFKA_TTL_S``, a broker that does not answer is remembered as such for as long);
* throughput is read off the outcome id sequence over the last minute (one index probe
  each end, whatever the rate), and the last stored outcome from the storage-time index.

``status`` then says which of these holds: ``flowing`` (the consumer is storing messages, or
outcomes arrive through the API),
``idle`` (caught up and nothing new arrives: no traffic), ``stalled`` (messages wait in
Kafka and the consumer has not moved for ``STALL_AFTER_S``) or ``unknown`` (the broker did
not answer, so lag cannot be told).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings as django_settings
from django.db.models import Count, F, Max, Q, Sum
from django.utils import timezone
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from analytics.consumer_settings import ConsumerSettings
from outcomes.buckets import iso_utc
from outcomes.models import AuctionOutcome, ConsumerOffset, DeadLetter, LostOffsets
from outcomes.offsets import BEYOND_END, LogRange, classify

logger = logging.getLogger(__name__)

STALL_AFTER_S = 30  # messages waiting and no progress for this long: stalled
RECENT_S = 60  # progress within this long, nothing waiting: flowing rather than idle
_KAFKA_TTL_S = 2.0


@dataclass(frozen=True)
class TopicOffsets:
    reachable: bool
    end: dict[int, int]
    beginning: dict[int, int]
    error: str = ""


class _TopicOffsetsClient:
    """A group-less Kafka client that asks for a topic's first and next offsets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: KafkaConsumer | None = None
        self._brokers: tuple[str, ...] = ()
        self._answer: tuple[float, tuple, TopicOffsets] | None = None

    def offsets(self, settings: ConsumerSettings) -> TopicOffsets:
        with self._lock:
            now = time.monotonic()
            asked = (tuple(settings.brokers), settings.topic)
            if self._answer and now - self._answer[0] < _KAFKA_TTL_S and self._answer[1] == asked:
                return self._answer[2]
            if self._brokers != asked[0]:
                self._close()
                self._brokers = asked[0]
            try:
                answer = self._ask(settings)
            except (KafkaError, OSError, AssertionError) as exc:  # kafka-python asserts on odd states
                self._close()
                logger.warning("cannot read the topic's end offsets", extra={"error": repr(exc)})
                answer = TopicOffsets(False, {}, {}, f"Kafka did not answer: {type(exc).__name__}")
            self._answer = (time.monotonic(), asked, answer)
            return answer

    def forget(self) -> None:
        """Ask Kafka again next time (after a change of settings)."""
        with self._lock:
            self._answer = None

    def _ask(self, settings: ConsumerSettings) -> TopicOffsets:
        if self._client is None:
            self._client = KafkaConsumer(
                bootstrap_servers=list(settings.brokers),
                group_id=None,
                client_id="analytics-api-lag",
                enable_auto_commit=False,
                allow_auto_create_topics=False,  # asking about a topic must not create it
                request_timeout_ms=3000,
                bootstrap_timeout_ms=2000,
                connections_max_idle_ms=600_000,
            )
        partitions = self._client.partitions_for_topic(settings.topic)
        if not partitions:
            return TopicOffsets(True, {}, {})
        tps = [TopicPartition(settings.topic, p) for p in sorted(partitions)]
        end = self._client.end_offsets(tps)
        beginning = self._client.beginning_offsets(tps)
        return TopicOffsets(True, {tp.partition: end[tp] for tp in tps}, {tp.partition: beginning[tp] for tp in tps})

    def _close(self) -> None:
        if self._client is not None:
            try:
                self._client.close(autocommit=False)
            except Exception:  # noqa: BLE001 - a broken client is dropped whatever it says
                logger.debug("error closing the offsets client", exc_info=True)
            self._client = None


topic_offsets = _TopicOffsetsClient()


_iso = iso_utc


def ingestion_status(*, settings: ConsumerSettings | None = None, using: str = "default") -> dict:
    settings = settings or django_settings.CONSUMER
    now = timezone.now()
    kafka = topic_offsets.offsets(settings)
    stored = {
        row.partition: row
        for row in ConsumerOffset.objects.using(using).filter(consumer_group=settings.group, topic=settings.topic)
    }
    partitions = []
    blocked: list[tuple[int, int, int]] = []  # (partition, stored offset, end) beyond the end
    total_lag: int | None = 0 if kafka.reachable else None
    for partition in sorted(set(stored) | set(kafka.end)):
        row = stored.get(partition)
        end = kafka.end.get(partition)
        next_offset = row.next_offset if row else None
        lag = None
        if end is not None:
            lag = max(0, end - (next_offset if next_offset is not None else kafka.beginning.get(partition, 0)))
            total_lag += lag
        first = kafka.beginning.get(partition)
        position = None
        if next_offset is not None and end is not None and first is not None:
            position = classify(next_offset, LogRange(first, end))
            if position == BEYOND_END:
                blocked.append((partition, next_offset, end))
        partitions.append(
            {
                "partition": partition,
                "stored_offset": next_offset,
                "first_offset": first,
                "end_offset": end,
                "lag": lag,
                "position": position or "ok",
                "updated_at": _iso(row.updated_at) if row else None,
            }
        )
    last_progress = max((row.updated_at for row in stored.values()), default=None)

    outcomes = AuctionOutcome.objects.using(using)
    newest = outcomes.order_by("-timestamp", "-id").values_list("id", "timestamp").first()
    minute_ago = now - timedelta(seconds=60)
    first_in_minute = (
        outcomes.filter(timestamp__gte=minute_ago).order_by("timestamp", "id").values_list("id", flat=True).first()
    )
    stored_last_minute = 0 if first_in_minute is None or newest is None else newest[0] - first_in_minute + 1

    dead = DeadLetter.objects.using(using)
    by_reason = (
        dead.filter(replayed_at__isnull=True)
        .values("reason")
        .annotate(count=Count("id"), last_hour=Count("id", filter=Q(created_at__gte=now - timedelta(hours=1))))
        .order_by("-count", "reason")
    )
    labels = dict(DeadLetter.Reason.choices)
    reasons = [{**row, "label": labels.get(row["reason"], row["reason"])} for row in by_reason]
    newest_dead = dead.aggregate(at=Max("created_at"))["at"]

    lost = LostOffsets.objects.using(using).filter(consumer_group=settings.group, topic=settings.topic)
    lost_total = lost.aggregate(messages=Sum(F("end_offset") - F("first_offset")), at=Max("detected_at"))

    status, detail = _status(now, kafka, total_lag, last_progress, stored, newest[1] if newest else None)
    if blocked:
        status = "stalled"
        detail = " ".join(
            f"Partition {p}: the stored offset {o:,} is beyond its end {e:,} (was the topic recreated?); "
            "the consumer waits for `manage.py reset_consumer_offsets`."
            for p, o, e in blocked
        )
    return {
        "status": status,
        "status_detail": detail,
        "checked_at": _iso(now),
        "topic": settings.topic,
        "consumer_group": settings.group,
        "broker": {"reachable": kafka.reachable, "error": kafka.error},
        "lag": total_lag,
        "partitions": partitions,
        "last_progress_at": _iso(last_progress),
        "last_stored_at": _iso(newest[1]) if newest else None,
        "last_stored_age_seconds": round((now - newest[1]).total_seconds(), 1) if newest else None,
        "stored_last_minute": stored_last_minute,
        "stored_per_second": round(stored_last_minute / 60, 1),
        "dead_letters": {
            "unreplayed": sum(r["count"] for r in reasons),
            "last_hour": sum(r["last_hour"] for r in reasons),
            "last_at": _iso(newest_dead),
            "by_reason": reasons,
        },
        "lost_messages": {
            "total": lost_total["messages"] or 0,
            "last_at": _iso(lost_total["at"]),
            "ranges": [
                {
                    "partition": r.partition,
                    "first_offset": r.first_offset,
                    "end_offset": r.end_offset,
                    "detected_at": _iso(r.detected_at),
                }
                for r in lost[:10]
            ],
        },
    }


def _status(now, kafka: TopicOffsets, lag, last_progress, stored, last_stored) -> tuple[str, str]:
    if not kafka.reachable:
        return "unknown", f"{kafka.error}; lag cannot be told."
    since = None if last_progress is None else (now - last_progress).total_seconds()
    stored_since = None if last_stored is None else (now - last_stored).total_seconds()
    if lag:
        if not stored:
            return "stalled", f"{lag:,} messages wait in Kafka and no consumer has stored any yet."
        if since is not None and since > STALL_AFTER_S:
            return "stalled", f"{lag:,} messages wait in Kafka; the consumer last stored {since:.0f} s ago."
        return "flowing", f"Consuming; {lag:,} messages to catch up."
    if since is not None and since <= RECENT_S:
        return "flowing", "Caught up with the topic."
    if stored_since is not None and stored_since <= RECENT_S:
        return "flowing", "Caught up with the topic; outcomes also arrive through the API."
    return "idle", "Caught up, and no new messages arrive: there is no traffic on the topic."
