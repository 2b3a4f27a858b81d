"""JSON shapes of the reports and of ``/api/ingestion/``, and the reports' own parameters.

Every answer carries every field its serializer declares (``Answer``): the OpenAPI schema
lists them all as required, and the contract tests check each answer against it, so a field
can neither go missing nor appear undeclared.
"""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from outcomes.queries import BREAKDOWN_DIMENSIONS, BREAKDOWN_ORDERS, GRANULARITIES, MAX_BUCKETS
from outcomes.validation import currency_code


class Answer(serializers.Serializer):
    """A response shape whose answers always carry every field (``complete_output``)."""

    complete_output = True


def _currency():
    return serializers.CharField(
        allow_null=True,
        help_text="The currency of the money figures: the one converted to (`convert_to`, or the "
        "REPORTING_CURRENCY setting); unconverted, the one currency of the matching outcomes, or null when "
        "they have several (see `mixed_currencies`).",
    )


def _mixed():
    return serializers.BooleanField(
        help_text="true when the money figures add amounts of several currencies as they are (not converted): "
        "filter by `currency`, or ask for `convert_to`. Daily rows say it of the whole window."
    )


class OutcomeStatsSerializer(Answer):
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
    currency = _currency()
    mixed_currencies = _mixed()


class PercentilesSerializer(Answer):
    p50 = serializers.FloatField(allow_null=True)
    p90 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)


class PriceSampleSerializer(Answer):
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
    currency = _currency()
    mixed_currencies = _mixed()
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


class Figures(Answer):
    """What a bucket of a series and a row of a breakdown both say."""

    outcomes = serializers.IntegerField()
    wins = serializers.IntegerField()
    win_rate = serializers.FloatField()
    revenue = serializers.FloatField()
    average_win_price = serializers.FloatField()


class TimeseriesBucketSerializer(Figures):
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
    average_bid_price = serializers.FloatField()


class TimeseriesSerializer(Answer):
    granularity = serializers.CharField()
    tz = serializers.CharField()
    currency = _currency()
    mixed_currencies = _mixed()
    start = serializers.DateTimeField(help_text="The window's start, in `tz` (as the buckets).")
    end = serializers.DateTimeField(help_text="The window's end (exclusive), in `tz`.")
    buckets = TimeseriesBucketSerializer(many=True)


class BreakdownRowSerializer(Figures):
    ecpm = serializers.FloatField()


class BreakdownGroupSerializer(BreakdownRowSerializer):
    values = serializers.IntegerField(help_text="How many distinct values this row sums.")


class BreakdownSerializer(Answer):
    by = serializers.CharField()
    order = serializers.CharField()
    limit = serializers.IntegerField()
    currency = _currency()
    mixed_currencies = _mixed()
    rows = BreakdownRowSerializer(many=True, help_text="Each row also has the `by` field with its value.")
    others = BreakdownGroupSerializer()
    total = BreakdownGroupSerializer()


class HistogramBinSerializer(Answer):
    lower = serializers.FloatField()
    upper = serializers.FloatField(allow_null=True, help_text="null for the last, open-ended bin.")
    count = serializers.IntegerField()


class HistogramSerializer(Answer):
    price = serializers.CharField()
    count = serializers.IntegerField()
    sample = PriceSampleSerializer(
        allow_null=True,
        help_text="null when the counts are exact; else they are this sample's counts divided by its fraction.",
    )
    bins = HistogramBinSerializer(many=True)


class ReachSerializer(Answer):
    optional_output = ("relative_standard_error",)

    reach = serializers.IntegerField(help_text="Distinct user ids.")
    exact = serializers.BooleanField()
    lower_bound = serializers.IntegerField()
    upper_bound = serializers.IntegerField()
    relative_standard_error = serializers.FloatField(
        required=False, help_text="The sketch's relative standard error (estimates only)."
    )


# ---------------------------------------------------------------------------- ingestion
class IngestionPartitionSerializer(Answer):
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


class DeadLetterReasonSerializer(Answer):
    reason = serializers.CharField(help_text="The code, as `replay_dead_letters --reason` takes it.")
    label = serializers.CharField()
    count = serializers.IntegerField(help_text="Dead letters not replayed yet.")
    last_hour = serializers.IntegerField()


class DeadLettersSerializer(Answer):
    unreplayed = serializers.IntegerField()
    last_hour = serializers.IntegerField()
    last_at = serializers.DateTimeField(allow_null=True)
    by_reason = DeadLetterReasonSerializer(many=True)


class BrokerSerializer(Answer):
    reachable = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)


class LostRangeSerializer(Answer):
    partition = serializers.IntegerField()
    first_offset = serializers.IntegerField()
    end_offset = serializers.IntegerField(help_text="Exclusive: reading resumed here.")
    detected_at = serializers.DateTimeField()


class LostMessagesSerializer(Answer):
    total = serializers.IntegerField(help_text="Messages Kafka deleted before this consumer group stored them.")
    last_at = serializers.DateTimeField(allow_null=True)
    ranges = LostRangeSerializer(many=True, help_text="The 10 most recent lost offset ranges.")


class IngestionSerializer(Answer):
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


class MoneyParams(serializers.Serializer):
    convert_to = serializers.CharField(
        required=False,
        help_text="ISO 4217 code (either case): money figures in that currency, each outcome's converted at the "
        "reference rate of its UTC day (`manage.py load_fx_rates`); `none` for each outcome's own currency. "
        "Default: the REPORTING_CURRENCY setting (none if unset). A missing rate is a 409 naming the day and "
        "currency.",
    )

    def validate_convert_to(self, value: str) -> str | None:
        if value.strip().lower() == "none":
            return None
        try:
            return currency_code(value)
        except ValueError as exc:
            raise serializers.ValidationError(f"{exc}; or none for no conversion.") from None

    @staticmethod
    def target(validated: dict) -> str | None:
        """The currency to convert to: the request's, else the setting's."""
        if "convert_to" in validated:
            return validated["convert_to"]
        return settings.REPORTING_CURRENCY or None


class HistogramParams(serializers.Serializer):
    price = serializers.ChoiceField(choices=("win_price", "bid_price"), default="win_price")
    bins = serializers.IntegerField(min_value=1, max_value=200, default=20)


# ---------------------------------------------------------------------------- experiment results
class ResultsParams(serializers.Serializer):
    confidence = serializers.FloatField(
        default=0.95,
        min_value=0.8,
        max_value=0.999,
        help_text="The intervals' confidence (1 − alpha), 0.8 to 0.999.",
    )
    inference = serializers.ChoiceField(
        choices=("sequential", "fixed"),
        default="sequential",
        help_text="sequential (default): always-valid intervals (asymptotic confidence sequences), right to read "
        "every day; fixed: fixed-horizon intervals (Newcombe for the win rate by auction, the delta method "
        "otherwise), valid only when read once, at the sample size planned in advance.",
    )


class ResultsVariantSerializer(Answer):
    variant = serializers.CharField()
    planned_share = serializers.FloatField(allow_null=True, help_text="Its planned proportion (null: unregistered).")
    units = serializers.IntegerField(help_text="Units of randomisation: outcomes by auction, distinct users by user.")
    outcomes = serializers.IntegerField()
    wins = serializers.IntegerField()
    win_rate = serializers.FloatField(allow_null=True, help_text="Percent of outcomes won.")
    revenue = serializers.FloatField(help_text="Sum of win_price over won auctions.")
    ecpm = serializers.FloatField(allow_null=True, help_text="Revenue per 1,000 won impressions.")
    avg_win_price = serializers.FloatField(allow_null=True)
    shading_ratio = serializers.FloatField(allow_null=True, help_text="Σ win_price / Σ bid_price over won auctions.")
    revenue_per_outcome = serializers.FloatField(allow_null=True)


class ResultsComparisonSerializer(Answer):
    variant = serializers.CharField(help_text="The treatment compared with the control.")
    metric = serializers.CharField(
        help_text="The plan's primary metric first, then its guardrails, then the others. revenue is compared "
        "per unit (per outcome or per user): the total depends on the traffic split."
    )
    control_value = serializers.FloatField(allow_null=True)
    value = serializers.FloatField(allow_null=True)
    difference = serializers.FloatField(allow_null=True, help_text="value − control_value (win_rate: in points).")
    relative_lift = serializers.FloatField(allow_null=True, help_text="value / control_value − 1.")
    ci_low = serializers.FloatField(allow_null=True, help_text="The difference's interval, at `confidence`.")
    ci_high = serializers.FloatField(allow_null=True)
    relative_lift_ci_low = serializers.FloatField(allow_null=True)
    relative_lift_ci_high = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True, help_text="Always-valid when `inference` is sequential.")
    significant = serializers.BooleanField(help_text="The difference's interval excludes 0.")
    method = serializers.CharField(help_text="newcombe, delta or confidence-sequence ('' when undefined).")


class SampleRatioSerializer(Answer):
    p_value = serializers.FloatField(help_text="Pearson's chi-square of the units per variant against the plan.")
    mismatch = serializers.BooleanField(help_text="p_value < 0.001.")
    observed = serializers.DictField(child=serializers.IntegerField())
    expected = serializers.DictField(child=serializers.FloatField())


class ResultsWarningSerializer(Answer):
    code = serializers.CharField()
    message = serializers.CharField()


class ExperimentResultsSerializer(Answer):
    experiment = serializers.CharField()
    registered = serializers.BooleanField(help_text="false: outcomes carry this key but the registry does not know it.")
    name = serializers.CharField(allow_null=True)
    unit = serializers.ChoiceField(choices=("auction", "user"))
    start = serializers.DateTimeField(allow_null=True, help_text="The window: `start`, else the plan's start.")
    end = serializers.DateTimeField(allow_null=True, help_text="`end`, else the plan's end.")
    confidence = serializers.FloatField()
    inference = serializers.CharField()
    currency = _currency()
    mixed_currencies = _mixed()
    control = serializers.CharField(allow_null=True)
    variants = ResultsVariantSerializer(many=True)
    comparisons = ResultsComparisonSerializer(many=True)
    srm = SampleRatioSerializer(allow_null=True)
    warnings = ResultsWarningSerializer(many=True)


# ---------------------------------------------------------------------------- insights
class LandscapePointSerializer(Answer):
    bid_price = serializers.FloatField(help_text="The bid bucket's lowest price.")
    bid_price_high = serializers.FloatField(help_text="Its highest (the same for a one-cent bucket).")
    outcomes = serializers.IntegerField(help_text="Outcomes that bid in the bucket.")
    wins = serializers.IntegerField()
    win_rate = serializers.FloatField(help_text="Percent of them won.")
    ci_low = serializers.FloatField(help_text="Wilson 95% interval of the win rate, percent.")
    ci_high = serializers.FloatField()


class ModelHoldoutSerializer(Answer):
    outcomes = serializers.IntegerField(help_text="Outcomes held out of the fit they were scored on.")
    log_loss = serializers.FloatField(allow_null=True, help_text="The fitted curve's, on them.")
    empirical_log_loss = serializers.FloatField(allow_null=True, help_text="The empirical win rate per bucket's.")
    baseline_log_loss = serializers.FloatField(allow_null=True, help_text="One win rate for every bid's.")


class BidModelSerializer(Answer):
    site_domain = serializers.CharField(allow_null=True, help_text="null: every domain.")
    currency = serializers.CharField()
    version = serializers.IntegerField()
    fitted_at = serializers.DateTimeField()
    method = serializers.CharField(help_text="isotonic: monotone in the bid, no shape assumed.")
    outcomes = serializers.IntegerField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    pooled = serializers.BooleanField(help_text="true: shrunk toward, or served from, every domain's curve.")
    holdout = ModelHoldoutSerializer()


class LandscapeModelSerializer(BidModelSerializer):
    win_probability = serializers.ListField(
        child=serializers.FloatField(), help_text="W(b) at each point's bid (0–1), in the points' order."
    )


class MarketPriceStepSerializer(Answer):
    price = serializers.FloatField()
    cdf = serializers.FloatField(help_text="P(market price ≤ price).")


class MarketPriceSerializer(Answer):
    method = serializers.CharField()
    observed = serializers.IntegerField(help_text="Wins: the price paid is the market price.")
    censored = serializers.IntegerField(help_text="Losses: the market price was at least the bid.")
    p25 = serializers.FloatField(allow_null=True)
    median = serializers.FloatField(allow_null=True, help_text="null when the losses leave it unknown.")
    p75 = serializers.FloatField(allow_null=True)
    distribution = MarketPriceStepSerializer(many=True)


class BidLandscapeSerializer(Answer):
    currency = _currency()
    mixed_currencies = _mixed()
    auction_type = serializers.CharField(help_text="The AUCTION_TYPE setting.")
    points = LandscapePointSerializer(many=True)
    model = LandscapeModelSerializer(allow_null=True, help_text="The served W(b); null when none applies.")
    market_price = MarketPriceSerializer(allow_null=True, help_text="Second-price auctions only.")
    warnings = ResultsWarningSerializer(many=True)


class BidChoiceSerializer(Answer):
    bid = serializers.FloatField()
    win_probability = serializers.FloatField()
    expected_cost = serializers.FloatField(help_text="Per auction bid in: what is paid times how often.")
    expected_surplus = serializers.FloatField(help_text="value × W(b) − expected_cost.")


class OptimalBidSerializer(Answer):
    value = serializers.FloatField()
    currency = serializers.CharField()
    auction_type = serializers.CharField()
    optimal = BidChoiceSerializer()
    alternatives = BidChoiceSerializer(many=True, help_text="The same at a few fractions of the value.")
    model = BidModelSerializer()


class OptimalBidParams(serializers.Serializer):
    value = serializers.FloatField(
        min_value=0.01,
        max_value=100000,
        help_text="What an impression is worth to you, in the currency (0.01 to 100,000).",
    )
    site_domain = serializers.CharField(
        required=False, max_length=253, help_text="The segment; every domain if absent."
    )
    currency = serializers.CharField(
        required=False, help_text="The value's currency; may be left out when the models are of one currency."
    )

    def validate_value(self, value: float) -> float:
        if not math.isfinite(value):
            raise serializers.ValidationError("A finite number from 0.01 to 100,000.")
        return value

    def validate_currency(self, value: str) -> str:
        try:
            return currency_code(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
