"""Tables of the outcomes app: the auction outcomes themselves and what ingestion owns.

Indexes are chosen for the queries this service runs, because every index is paid for on
each ingested row (on PostgreSQL, ``db_index=True`` on a CharField adds a second ``_like``
index too, so no field here uses it). Each composite index's leading column also serves a
plain equality filter on that column, so no single-column indexes are needed:

=============================  ===========================================================
index                          queries it serves
=============================  ===========================================================
bid_id (unique constraint)     idempotent ingestion (``ON CONFLICT (bid_id)``), search by bid id
-timestamp                     the default list order, deep pages, time-ranged scans
win_status, -timestamp         ``/winners/`` and ``?win_status=`` lists in time order, win counts
user_id, -timestamp            ``?user_id=`` lists and per-user stats
site_domain, -timestamp        ``?site_domain=`` lists and per-domain stats
site_domain, win_status, -ts   per-domain winners/losers lists and their counts (index-only)
=============================  ===========================================================
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class AuctionOutcome(models.Model):
    # Primary identifiers
    bid_id = models.CharField(max_length=255)
    user_id = models.CharField(max_length=255)
    site_domain = models.CharField(max_length=255, null=True, blank=True)

    # Auction results
    win_status = models.BooleanField(default=False)
    win_price = models.DecimalField(max_digits=10, decimal_places=2)
    bid_price = models.DecimalField(max_digits=10, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")

    # Enrichment data
    enriched = models.BooleanField(default=False)
    user_interests = models.JSONField(default=list, blank=True)

    # Timestamps: `timestamp` is when the outcome was stored, `auction_timestamp` when the
    # auction ran (from the message; may be absent).
    timestamp = models.DateTimeField(auto_now_add=True)
    auction_timestamp = models.DateTimeField(null=True, blank=True)

    # Metadata: the complete message as received.
    raw_data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-timestamp", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["bid_id"], name="outcome_bid_id_uniq"),
        ]
        indexes = [
            models.Index(fields=["-timestamp"], name="outcome_ts_idx"),
            models.Index(fields=["win_status", "-timestamp"], name="outcome_win_ts_idx"),
            models.Index(fields=["user_id", "-timestamp"], name="outcome_user_ts_idx"),
            models.Index(fields=["site_domain", "-timestamp"], name="outcome_domain_ts_idx"),
            models.Index(fields=["site_domain", "win_status", "-timestamp"], name="outcome_domain_win_ts_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.bid_id} ({'win' if self.win_status else 'loss'})"

    @property
    def is_winner(self) -> bool:
        return bool(self.win_status)

    @property
    def profit_margin(self) -> float | None:
        """Share of the bid kept by winning below it, in percent: (bid - win) / bid * 100.

        In a first-price auction (win price = bid price) it is 0.0; in a second-price auction
        it is what the clearing price saved. It is None for a lost auction (nothing was bought)
        and for a zero bid.
        """
        if not self.win_status or not self.bid_price:
            return None
        margin = (Decimal(self.bid_price) - Decimal(self.win_price)) / Decimal(self.bid_price) * 100
        return float(round(margin, 2))


class ConsumerOffset(models.Model):
    """Next offset to read, per consumer group and partition.

    Written in the same transaction as each batch of outcomes, so the stored data and the
    position in the stream can never disagree (Druid's Kafka ingestion does the same). The
    consumer seeks here on every partition assignment.
    """

    consumer_group = models.CharField(max_length=255)
    topic = models.CharField(max_length=255)
    partition = models.IntegerField()
    next_offset = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer_group", "topic", "partition"], name="consumer_offset_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer_group} {self.topic}[{self.partition}] @ {self.next_offset}"


class DeadLetter(models.Model):
    """A message the consumer could not store, with why and where it came from.

    The raw key and value are kept byte for byte, so nothing is lost: after a fix,
    ``manage.py replay_dead_letters`` parses them again.
    """

    class Reason(models.TextChoices):
        EMPTY_MESSAGE = "empty_message", "Empty message"
        OVERSIZED = "oversized", "Message too large"
        UNDECODABLE_KEY = "undecodable_key", "Key is not UTF-8"
        UNDECODABLE_VALUE = "undecodable_value", "Value is not UTF-8"
        INVALID_JSON = "invalid_json", "Not JSON"
        NOT_AN_OBJECT = "not_an_object", "JSON is not an object"
        MISSING_FIELD = "missing_field", "Required field missing"
        WRONG_TYPE = "wrong_type", "Field has the wrong type"
        INVALID_VALUE = "invalid_value", "Field has an invalid value"
        NEGATIVE_PRICE = "negative_price", "Negative price"
        PRICE_ABOVE_BOUND = "price_above_bound", "Price above the sanity bound"
        INVALID_CURRENCY = "invalid_currency", "Currency is not a 3-letter code"
        INVALID_TIMESTAMP = "invalid_timestamp", "Timestamp is not ISO 8601"
        CONFLICTING_DUPLICATE = "conflicting_duplicate", "Same bid id, different content"

    topic = models.CharField(max_length=255)
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    kafka_timestamp = models.DateTimeField(null=True, blank=True)
    key = models.BinaryField(null=True, blank=True)
    value = models.BinaryField(null=True, blank=True)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    detail = models.TextField(blank=True, default="")
    consumer_group = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["topic", "partition", "offset"], name="dead_letter_position_uniq"),
        ]
        indexes = [models.Index(fields=["reason", "-id"], name="dead_letter_reason_idx")]

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}: {self.reason}"
