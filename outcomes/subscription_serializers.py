"""Subscriptions and alerts as the API reads and writes them.

A subscription's rule is parsed as the scheduler will parse it (``outcomes.schedules``), its
webhook address checked as the sender will check it (``outcomes.webhooks``), an alert's
filters by the stats endpoint's own checks (``outcomes.parameters``): what would fail later
is refused now, with the reason. The webhook's signing secret is shown once, in the answer
to the request that created it (as an API key is).
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.validators import EmailValidator
from django.utils import timezone
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from outcomes import parameters, schedules, webhooks
from outcomes.experiment_serializers import NameField
from outcomes.models import Alert, AlertEvent, Delivery, SavedReport, Subscription
from outcomes.saved_report_serializers import TIME_ZONES, Params, query_dict

MAX_RECIPIENTS = 50
# An alert's window: a minute to four weeks.
MAX_WINDOW_MINUTES = 28 * 24 * 60
# What an alert's window replaces (params are the stats report's filters).
NOT_IN_ALERT = ("start", "end", "format", "tz")


class Closed(serializers.ModelSerializer):
    """Unknown fields are refused (the schema says additionalProperties: false)."""

    closed = True

    def to_internal_value(self, data):
        if isinstance(data, dict) and (unknown := sorted(set(data) - set(self.fields))):
            raise ValidationError({name[:60]: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictBoolean(serializers.BooleanField):
    """true or false, as the schema says (DRF would take 0, "yes", "on" …)."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictNumber(serializers.FloatField):
    """A JSON number, as the schema says (DRF would take "0.2")."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictInteger(serializers.IntegerField):
    """A JSON integer, as the schema says (DRF would take "60" and 60.0)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class Recipients(serializers.ListField):
    child = serializers.EmailField(max_length=254)

    def __init__(self, **kwargs):
        super().__init__(max_length=MAX_RECIPIENTS, required=False, **kwargs)

    def to_internal_value(self, data):
        emails = super().to_internal_value(data)
        seen: dict[str, str] = {}
        for email in emails:
            EmailValidator()(email)
            seen.setdefault(email.lower(), email)
        return list(seen.values())


class ChannelsMixin:
    def validate_webhook_url(self, value: str) -> str:
        if value:
            try:
                webhooks.check_url(value, allow_private=settings.WEBHOOK_ALLOW_PRIVATE)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None
        return value

    def validate_count(self, setting: str) -> None:
        limit = getattr(settings, setting)
        if self.instance is None and self.Meta.model.objects.count() >= limit:
            raise ValidationError(
                {"non_field_errors": [f"At most {limit:,} of these ({setting}): delete unused ones."]}
            )

    def validate_channels(self, attrs) -> None:
        recipients = attrs.get("recipients", getattr(self.instance, "recipients", []))
        webhook = attrs.get("webhook_url", getattr(self.instance, "webhook_url", ""))
        if not recipients and not webhook:
            raise ValidationError({"recipients": ["At least one recipient, or a webhook_url."]})

    def create(self, validated_data):
        validated_data["webhook_secret"] = webhooks.new_secret()
        return super().create(validated_data)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if self.context.get("created"):  # shown once, at creation
            data["webhook_secret"] = instance.webhook_secret
        return data


class SubscriptionSerializer(ChannelsMixin, Closed):
    report = serializers.PrimaryKeyRelatedField(queryset=SavedReport.objects.all())
    recipients = Recipients()
    active = StrictBoolean(required=False)
    timezone = serializers.ChoiceField(choices=TIME_ZONES, required=False, help_text="IANA time zone of the rule.")

    class Meta:
        model = Subscription
        fields = [
            "id",
            "report",
            "rrule",
            "timezone",
            "format",
            "recipients",
            "webhook_url",
            "active",
            "failing",
            "consecutive_failures",
            "next_run_at",
            "last_scheduled_for",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "failing",
            "consecutive_failures",
            "next_run_at",
            "last_scheduled_for",
            "created_by",
            "created_at",
            "updated_at",
        ]

    def validate(self, attrs):
        self.validate_count("SUBSCRIPTIONS_MAX")
        self.validate_channels(attrs)
        rule = attrs.get("rrule", getattr(self.instance, "rrule", ""))
        zone = attrs.get("timezone", getattr(self.instance, "timezone", "UTC"))
        try:
            parsed = schedules.parse(rule, schedules.anchor_for(timezone.now(), ZoneInfo(zone)))
        except schedules.InvalidRule as exc:
            raise ValidationError({"rrule": [str(exc)]}) from None
        if schedules.next_after(parsed, ZoneInfo(zone), timezone.now()) is None:
            raise ValidationError({"rrule": ["The rule has no occurrence left (COUNT or UNTIL is spent)."]})
        report = attrs.get("report", getattr(self.instance, "report", None))
        fmt = attrs.get("format", getattr(self.instance, "format", Subscription.Format.XLSX))
        if report is not None and report.report == SavedReport.Report.EXPORT and fmt == Subscription.Format.HTML:
            raise ValidationError({"format": ["An export is sent as a file: xlsx or csv."]})
        return attrs


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = [
            "id",
            "scheduled_for",
            "skipped",
            "window_start",
            "window_end",
            "status",
            "attempts",
            "recipients_sent",
            "webhook_status",
            "bytes",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class AlertSerializer(ChannelsMixin, Closed):
    name = NameField(max_length=200)
    params = Params(required=False)
    recipients = Recipients()
    active = StrictBoolean(required=False)
    window_minutes = StrictInteger(min_value=1, max_value=MAX_WINDOW_MINUTES, required=False)
    threshold = StrictNumber(help_text="With compare_to, a relative change: -0.5 is down 50%.")

    class Meta:
        model = Alert
        fields = [
            "id",
            "name",
            "measure",
            "params",
            "window_minutes",
            "condition",
            "threshold",
            "compare_to",
            "recipients",
            "webhook_url",
            "active",
            "state",
            "state_since",
            "last_value",
            "last_evaluated_at",
            "failing",
            "consecutive_failures",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "state",
            "state_since",
            "last_value",
            "last_evaluated_at",
            "failing",
            "consecutive_failures",
            "created_by",
            "created_at",
            "updated_at",
        ]

    def validate_params(self, value) -> dict:
        return Params.checked(value)

    def validate(self, attrs):
        self.validate_count("ALERTS_MAX")
        self.validate_channels(attrs)
        params = dict(attrs.get("params", getattr(self.instance, "params", {})))
        refused = {name: ["The alert's window_minutes sets its window."] for name in NOT_IN_ALERT if name in params}
        if refused:
            raise ValidationError({"params": refused})
        try:
            parameters.check_all("stats", query_dict(params))
        except ValidationError as exc:
            raise ValidationError({"params": exc.detail}) from None
        return attrs


class AlertEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AlertEvent
        fields = [
            "id",
            "evaluated_at",
            "previous_state",
            "state",
            "value",
            "baseline",
            "status",
            "attempts",
            "recipients_sent",
            "webhook_status",
            "error",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields
