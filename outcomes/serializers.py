"""JSON shapes of the outcomes API (the service specification's "API Response")."""

from __future__ import annotations

import re

from django.conf import settings
from rest_framework import serializers

from outcomes.models import AuctionOutcome

_CURRENCY_RE = re.compile(r"[A-Z]{3}")


class AuctionOutcomeSerializer(serializers.ModelSerializer):
    is_winner = serializers.BooleanField(read_only=True)
    profit_margin = serializers.FloatField(
        read_only=True,
        allow_null=True,
        help_text="(bid_price - win_price) / bid_price * 100 for a won auction; null for a lost one.",
    )
    win_price = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0, required=False, default=0)
    bid_price = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0)

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
        data = super().to_representation(instance)
        if data.get("site_domain") is None:
            data["site_domain"] = ""  # as the specification's example response shows
        return data

    def validate_currency(self, value: str) -> str:
        if not _CURRENCY_RE.fullmatch(value):
            raise serializers.ValidationError("Must be a 3-letter ISO 4217 code such as USD.")
        return value

    def validate_user_interests(self, value):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise serializers.ValidationError("Must be a list of strings.")
        return value

    def validate_site_domain(self, value):
        return value or None

    def validate(self, attrs):
        max_price = settings.CONSUMER.max_price
        for field in ("win_price", "bid_price"):
            value = attrs.get(field, getattr(self.instance, field, None))
            if value is not None and value > max_price:
                raise serializers.ValidationError({field: [f"Must not exceed {max_price}."]})
        win_status = attrs.get("win_status", getattr(self.instance, "win_status", False))
        win_price = attrs.get("win_price", getattr(self.instance, "win_price", 0))
        bid_price = attrs.get("bid_price", getattr(self.instance, "bid_price", 0))
        if win_status and win_price > bid_price:
            raise serializers.ValidationError({"win_price": ["A won auction cannot pay more than its bid."]})
        return attrs

    def create(self, validated_data):
        raw = {key: value for key, value in self.initial_data.items() if key in self.fields}
        validated_data.setdefault("raw_data", raw)
        return super().create(validated_data)


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
