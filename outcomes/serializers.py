"""JSON shapes of the outcomes API (the service specification's "API Response").

Output shapes only: writes are validated by the write service (``outcomes.writes``) with
the consumer's parsing rules, so there is one definition of a valid outcome. Report
parameters are validated by the small ``*Params`` serializers below.
"""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from outcomes.buckets import iso_utc
from outcomes.models import AuctionOutcome
from outcomes.queries import BREAKDOWN_DIMENSIONS, BREAKDOWN_ORDERS, GRANULARITIES, MAX_BUCKETS
from outcomes.validation import (
    CURRENCY_PATTERN,
    DEFAULT_CURRENCY,
    MAX_INTERESTS,
    MAX_TEXT_LENGTH,
    PRICE_DIGITS,
    PRICE_PLACES,
)

# ---------------------------------------------------------------------------- write body (schema)
# What the write service accepts (``outcomes.messages``' rules), written out for the
# OpenAPI schema: validation itself stays in the write service, so there is one definition.
# Rules across fields the schema cannot state: a won auction needs a win_price no greater
# than its bid_price.
_NO_NUL = "^[^\\u0000]*$"
_NOT_BLANK = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"  # at least one non-space character


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": MAX_TEXT_LENGTH, "pattern": _NOT_BLANK})
class _NonBlankText(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "maxLength": MAX_TEXT_LENGTH, "pattern": _NO_NUL, "nullable": True})
class _OptionalText(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "pattern": _NO_NUL})
class _Interest(serializers.CharField):
    pass


class _Price(serializers.DecimalField):
    def __init__(self, **kwargs):
        super().__init__(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, **kwargs)


def _price_schema() -> dict:
    return {
        "type": "number",
        "minimum": 0,
        "maximum": float(settings.CONSUMER.max_price),
        "description": f"0 to CONSUMER_MAX_PRICE ({settings.CONSUMER.max_price}), rounded half-up to cents "
        "(as a message's prices are); a decimal string is accepted too.",
    }


extend_schema_field(_price_schema())(_Price)


@extend_schema_field({"type": "string", "pattern": CURRENCY_PATTERN, "default": DEFAULT_CURRENCY})
class _Currency(serializers.CharField):
    pass


def _example_bid_id() -> str:
    return f"manual-{uuid.uuid4()}"


class OutcomeWriteSerializer(serializers.Serializer):
    """The body of POST, PUT and PATCH (PATCH: any subset). Unknown fields are refused.

    The ``initial`` values make the browsable API's form a valid outcome as shown (a fresh
    bid id each time), to edit before sending."""

    closed = True  # additionalProperties: false in the schema

    bid_id = _NonBlankText(
        initial=_example_bid_id,
        help_text="Unique per auction; cannot change once stored. The Kafka message's bid_request_id is "
        "accepted in its place.",
    )
    user_id = _NonBlankText(initial="user-1")
    site_domain = _OptionalText(required=False, allow_blank=True, allow_null=True, initial="news.example")
    win_status = serializers.BooleanField(initial=True)
    win_price = _Price(
        required=False,
        allow_null=True,
        initial="0.50",
        help_text="Required for a won auction, and at most bid_price; null or absent for a lost one: 0.00.",
    )
    bid_price = _Price(initial="0.80")
    currency = _Currency(
        required=False,
        allow_null=True,
        initial=DEFAULT_CURRENCY,
        help_text="ISO 4217 code in any case, stored upper-case (`eur` is stored as EUR); null or absent: USD.",
    )
    enriched = serializers.BooleanField(
        required=False, allow_null=True, default=False, help_text="null or absent: false (as in a Kafka message)."
    )
    user_interests = serializers.ListField(
        child=_Interest(allow_blank=True),
        required=False,
        allow_null=True,
        max_length=MAX_INTERESTS,
        initial=list,
        help_text=f"At most {MAX_INTERESTS}; null or absent: none.",
    )
    auction_timestamp = serializers.DateTimeField(required=False, allow_null=True)


class AuctionOutcomeSerializer(serializers.ModelSerializer):
    complete_output = True  # to_representation writes every field: all required in the schema
    # Always a string in answers ("" when the message had none), as to_representation writes it.
    site_domain = serializers.CharField(max_length=MAX_TEXT_LENGTH, required=False, allow_blank=True, default="")
    is_winner = serializers.BooleanField(read_only=True)
    profit_margin = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="(bid_price - win_price) / bid_price * 100 for a won auction; null for a lost one.",
    )
    win_price = serializers.DecimalField(max_digits=10, decimal_places=2, required=False, default=0)
    bid_price = serializers.DecimalField(max_digits=10, decimal_places=2)

    class Meta:
        model = AuctionOutcome
        fields = [
            "id",
            "bid_id",
            "user_id",
            "site_domain",
            "win_status",
            "win_price",
            "bid_price",
            "currency",
            "enriched",
            "user_interests",
            "is_winner",
            "profit_margin",
            "timestamp",
            "auction_timestamp",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "timestamp", "created_at", "updated_at"]

    def to_representation(self, instance):
        """The fields above, written out directly: DRF's generic field-by-field path costs
        ~80 µs a row (a 100-row page: 8 ms), this ~10 µs. Same JSON: decimals as 2-place
        strings, times in ISO 8601 with Z (the database hands them over in UTC)."""
        o = instance
        return {
            "id": o.id,
            "bid_id": o.bid_id,
            "user_id": o.user_id,
            "site_domain": o.site_domain or "",  # as the specification's example response shows
            "win_status": o.win_status,
            "win_price": _decimal(o.win_price),
            "bid_price": _decimal(o.bid_price),
            "currency": o.currency,
            "enriched": o.enriched,
            "user_interests": o.user_interests,
            "is_winner": o.is_winner,
            "profit_margin": o.profit_margin,
            "timestamp": _time(o.timestamp),
            "auction_timestamp": _time(o.auction_timestamp),
            "created_at": _time(o.created_at),
            "updated_at": _time(o.updated_at),
        }


def _decimal(value) -> str | None:
    return None if value is None else f"{value:.2f}"


_time = iso_utc


class OutcomeStatsSerializer(serializers.Serializer):
    total_outcomes = serializers.IntegerField()
    total_wins = serializers.IntegerField()
    total_losses = serializers.IntegerField()
    win_rate = serializers.FloatField(help_text="Percent of outcomes that were won.")
    total_revenue = serializers.FloatField(help_text="Sum of win_price over won auctions.")
    average_win_price = serializers.FloatField()
    average_bid_price = serializers.FloatField()
    enriched_count = serializers.IntegerField()


class DailyStatsSerializer(OutcomeStatsSerializer):
    date = serializers.DateField(help_text="UTC day of the auction.")
    ecpm = serializers.FloatField(help_text="Revenue per 1,000 won impressions.")
    shading_ratio = serializers.FloatField(help_text="Sum of win_price / sum of bid_price over won auctions.")


class PercentilesSerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p90 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)


class PriceSampleSerializer(serializers.Serializer):
    fraction = serializers.FloatField(help_text="The share of the matching outcomes in the sample (k/1024).")
    outcomes = serializers.IntegerField(help_text="Outcomes in the sample.")
    wins = serializers.IntegerField(help_text="Won auctions in the sample.")
    rank_error = serializers.FloatField(
        allow_null=True,
        help_text="With 99% confidence, each percentile's rank among all matching outcomes is within "
        "this fraction of its nominal rank (the DKW bound for the smaller of the two samples).",
    )


class ReportStatsSerializer(OutcomeStatsSerializer):
    ecpm = serializers.FloatField(help_text="Revenue per 1,000 won impressions: total_revenue / total_wins * 1000.")
    shading_ratio = serializers.FloatField(help_text="Sum of win_price / sum of bid_price over won auctions.")
    win_price_percentiles = PercentilesSerializer(
        help_text="Nearest rank, over won auctions: exact unless percentiles_sample is set."
    )
    bid_price_percentiles = PercentilesSerializer(
        help_text="Nearest rank, over all outcomes: exact unless percentiles_sample is set."
    )
    percentiles_sample = PriceSampleSerializer(
        allow_null=True,
        help_text="null when the percentiles are exact; else they come from this uniform sample of the "
        "matching outcomes (more than 20,000 match filters the price rollups lack; about 10,000 sampled).",
    )


class TimeseriesBucketSerializer(serializers.Serializer):
    bucket = serializers.DateTimeField(
        help_text="Start of the calendar bucket, ISO 8601 in `tz`: `Z` for UTC, else the zone's offset at that "
        "moment (`2026-11-03T00:00:00+01:00`). The first bucket may start before the window (see `partial`)."
    )
    bucket_end = serializers.DateTimeField(help_text="End of the calendar bucket (exclusive), in the same form.")
    partial = serializers.BooleanField(
        help_text="True when the window covers only part of this bucket (the first bucket when `start` is not "
        "on a bucket boundary, the last when `end` is not): its figures are of [`start`, `bucket_end`) or "
        "[`bucket`, `end`)."
    )
    outcomes = serializers.IntegerField()
    wins = serializers.IntegerField()
    win_rate = serializers.FloatField()
    revenue = serializers.FloatField()
    average_win_price = serializers.FloatField()
    average_bid_price = serializers.FloatField()


class TimeseriesSerializer(serializers.Serializer):
    granularity = serializers.CharField()
    tz = serializers.CharField()
    start = serializers.DateTimeField(help_text="The window's start, in `tz` (as the buckets).")
    end = serializers.DateTimeField(help_text="The window's end (exclusive), in `tz`.")
    buckets = TimeseriesBucketSerializer(many=True)


class BreakdownRowSerializer(serializers.Serializer):
    outcomes = serializers.IntegerField()
    wins = serializers.IntegerField()
    win_rate = serializers.FloatField()
    revenue = serializers.FloatField()
    average_win_price = serializers.FloatField()
    ecpm = serializers.FloatField()


class BreakdownGroupSerializer(BreakdownRowSerializer):
    values = serializers.IntegerField(help_text="How many distinct values this row sums.")


class BreakdownSerializer(serializers.Serializer):
    by = serializers.CharField()
    order = serializers.CharField()
    limit = serializers.IntegerField()
    rows = BreakdownRowSerializer(many=True, help_text="Each row also has the `by` field with its value.")
    others = BreakdownGroupSerializer()
    total = BreakdownGroupSerializer()


class HistogramBinSerializer(serializers.Serializer):
    lower = serializers.FloatField()
    upper = serializers.FloatField(allow_null=True, help_text="null for the last, open-ended bin.")
    count = serializers.IntegerField()


class HistogramSerializer(serializers.Serializer):
    price = serializers.CharField()
    count = serializers.IntegerField()
    sample = PriceSampleSerializer(
        allow_null=True,
        help_text="null when the counts are exact; else they are this sample's counts divided by its fraction.",
    )
    bins = HistogramBinSerializer(many=True)


class ReachSerializer(serializers.Serializer):
    reach = serializers.IntegerField(help_text="Distinct user ids.")
    exact = serializers.BooleanField()
    lower_bound = serializers.IntegerField()
    upper_bound = serializers.IntegerField()
    relative_standard_error = serializers.FloatField(
        required=False, help_text="The sketch's relative standard error (estimates only)."
    )


# ---------------------------------------------------------------------------- ingestion
class IngestionPartitionSerializer(serializers.Serializer):
    partition = serializers.IntegerField()
    stored_offset = serializers.IntegerField(allow_null=True, help_text="Next offset the consumer will store.")
    first_offset = serializers.IntegerField(
        allow_null=True, help_text="The partition's first offset still in Kafka (null: unknown)."
    )
    end_offset = serializers.IntegerField(allow_null=True, help_text="The partition's end in Kafka (null: unknown).")
    lag = serializers.IntegerField(allow_null=True, help_text="Messages in Kafka not yet stored (null: unknown).")
    position = serializers.ChoiceField(
        choices=["ok", "before_beginning", "beyond_end"],
        help_text="Where the stored offset lies against the partition's log: beyond_end (the topic was recreated "
        "or truncated: the consumer pauses the partition until `manage.py reset_consumer_offsets`), "
        "before_beginning (retention deleted messages not yet stored: they are recorded as lost).",
    )
    updated_at = serializers.DateTimeField(allow_null=True, help_text="When the consumer last moved this offset.")


class DeadLetterReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(help_text="The code, as `replay_dead_letters --reason` takes it.")
    label = serializers.CharField()
    count = serializers.IntegerField(help_text="Dead letters not replayed yet.")
    last_hour = serializers.IntegerField()


class DeadLettersSerializer(serializers.Serializer):
    unreplayed = serializers.IntegerField()
    last_hour = serializers.IntegerField()
    last_at = serializers.DateTimeField(allow_null=True)
    by_reason = DeadLetterReasonSerializer(many=True)


class BrokerSerializer(serializers.Serializer):
    reachable = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)


class LostRangeSerializer(serializers.Serializer):
    partition = serializers.IntegerField()
    first_offset = serializers.IntegerField()
    end_offset = serializers.IntegerField(help_text="Exclusive: reading resumed here.")
    detected_at = serializers.DateTimeField()


class LostMessagesSerializer(serializers.Serializer):
    total = serializers.IntegerField(help_text="Messages Kafka deleted before this consumer group stored them.")
    last_at = serializers.DateTimeField(allow_null=True)
    ranges = LostRangeSerializer(many=True, help_text="The 10 most recent lost offset ranges.")


class IngestionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["flowing", "idle", "stalled", "unknown"],
        help_text="flowing: storing messages; idle: caught up, no traffic; stalled: messages wait and the "
        "consumer does not move; unknown: Kafka did not answer.",
    )
    status_detail = serializers.CharField()
    checked_at = serializers.DateTimeField()
    topic = serializers.CharField()
    consumer_group = serializers.CharField()
    broker = BrokerSerializer()
    lag = serializers.IntegerField(allow_null=True, help_text="Total over the partitions (null: Kafka unknown).")
    partitions = IngestionPartitionSerializer(many=True)
    last_progress_at = serializers.DateTimeField(allow_null=True)
    last_stored_at = serializers.DateTimeField(allow_null=True)
    last_stored_age_seconds = serializers.FloatField(allow_null=True)
    stored_last_minute = serializers.IntegerField(help_text="Outcomes stored in the last 60 s (from the id sequence).")
    stored_per_second = serializers.FloatField()
    dead_letters = DeadLettersSerializer()
    lost_messages = LostMessagesSerializer()


# ---------------------------------------------------------------------------- report parameters
@extend_schema_field({"type": "string", "enum": sorted(available_timezones()), "default": "UTC"})
class _TimeZone(serializers.CharField):
    pass


class TimeseriesParams(serializers.Serializer):
    granularity = serializers.ChoiceField(choices=GRANULARITIES, default="hour")
    tz = _TimeZone(
        default="UTC", help_text=f"IANA time zone for day/week/month boundaries. At most {MAX_BUCKETS} buckets."
    )

    def validate_tz(self, value: str) -> ZoneInfo:
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(f"Unknown time zone {value[:60]!r}; use an IANA name.") from None


class BreakdownParams(serializers.Serializer):
    by = serializers.ChoiceField(choices=BREAKDOWN_DIMENSIONS)
    order = serializers.ChoiceField(choices=BREAKDOWN_ORDERS, default="revenue")
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)


class HistogramParams(serializers.Serializer):
    price = serializers.ChoiceField(choices=("win_price", "bid_price"), default="win_price")
    bins = serializers.IntegerField(min_value=1, max_value=200, default=20)
