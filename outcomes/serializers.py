"""JSON shapes of the outcomes API (the service specification's "API Response").

Output shapes only: writes are validated by the write service (``outcomes.writes``) with
the consumer's parsing rules, so there is one definition of a valid outcome. The reports'
shapes are in ``outcomes.report_serializers``.
"""

from __future__ import annotations

import uuid
from operator import attrgetter

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from outcomes.buckets import iso_utc
from outcomes.models import AuctionOutcome
from outcomes.validation import (
    CURRENCY_PATTERN,
    DEFAULT_CURRENCY,
    MAX_INTERESTS,
    MAX_TEXT_LENGTH,
    MESSAGE_FIELDS,
    NO_NUL_PATTERN,
    NOT_BLANK_PATTERN,
    PRICE_DIGITS,
    PRICE_PLACES,
    SLUG_PATTERN,
)

# ---------------------------------------------------------------------------- write body (schema)
# What the write service accepts (``outcomes.messages``' rules), written out for the
# OpenAPI schema: validation itself stays in the write service, so there is one definition.
# Rules across fields the schema cannot state: a won auction needs a win_price no greater
# than its bid_price.


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": MAX_TEXT_LENGTH, "pattern": NOT_BLANK_PATTERN})
class _NonBlankText(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "maxLength": MAX_TEXT_LENGTH, "pattern": NO_NUL_PATTERN, "nullable": True})
class _OptionalText(serializers.CharField):
    pass


@extend_schema_field({"type": "string", "pattern": NO_NUL_PATTERN})
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


@extend_schema_field({"type": "string", "pattern": SLUG_PATTERN, "nullable": True})
class _Slug(serializers.CharField):
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
    experiment = _Slug(
        required=False,
        allow_null=True,
        initial=None,
        help_text="The key of the experiment this auction was part of (with `variant`: both or neither).",
    )
    variant = _Slug(
        required=False, allow_null=True, initial=None, help_text="The variant of `experiment` this auction served."
    )


def _decimal(value) -> str | None:
    return None if value is None else f"{value:.2f}"


def _field(name: str):
    """How field ``name`` of a stored outcome is written in an answer: decimals as 2-place
    strings, times in ISO 8601 with Z (the database hands them over in UTC), ``site_domain``
    "" when the message had none (as the specification's example response shows)."""
    if name in ("win_price", "bid_price"):
        return lambda o: _decimal(getattr(o, name))
    if name in ("timestamp", "auction_timestamp", "created_at", "updated_at"):
        return lambda o: iso_utc(getattr(o, name))
    if name == "site_domain":
        return lambda o: o.site_domain or ""
    return attrgetter(name)


# An answer's fields, in the specification's order: the message's fields (its time last),
# what is derived from them, the storage times, then what the specification does not name.
_BEYOND_SPECIFICATION = ("experiment", "variant")
OUTPUT_FIELDS = (
    "id",
    *(name for name in MESSAGE_FIELDS if name not in ("auction_timestamp", *_BEYOND_SPECIFICATION)),
    "is_winner",
    "profit_margin",
    "timestamp",
    "auction_timestamp",
    "created_at",
    "updated_at",
    *_BEYOND_SPECIFICATION,
)
_WRITERS = tuple((name, _field(name)) for name in OUTPUT_FIELDS)


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
    win_price = serializers.DecimalField(
        max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, required=False, default=0
    )
    bid_price = serializers.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)

    class Meta:
        model = AuctionOutcome
        fields = list(OUTPUT_FIELDS)
        read_only_fields = ["id", "timestamp", "created_at", "updated_at"]

    def to_representation(self, instance):
        """``OUTPUT_FIELDS``, each written by its own small function: DRF's generic
        field-by-field path costs ~80 µs a row (a 100-row page: 8 ms), this a few."""
        return {name: write(instance) for name, write in _WRITERS}
