"""Django admin for outcomes and dead letters, kept fast on tables of millions of rows.

* No full ``COUNT(*)``: an unfiltered changelist uses PostgreSQL's row estimate
  (``pg_class.reltuples``), and ``show_full_result_count`` is off.
* Search is exact match on bid id, user id or site domain, so each term is an index
  lookup; Django's default ``icontains`` search would scan the whole table.
* The currency filter lists common codes instead of running ``SELECT DISTINCT`` over
  the table.
* API keys are created here (the key is shown once, in a message) and revoked by ticking
  "revoked"; their scopes can be changed until then.
* Outcomes are facts from the auction stream: read-only here. Deleting one (or a
  selection) goes through the write service, so the rollups stay exact.
"""

from __future__ import annotations

import json

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.timezone import localtime
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey as UnusedLibraryAPIKey

from outcomes import deliveries, webhooks, writes
from outcomes.models import (
    Alert,
    AlertEvent,
    APIKey,
    AuctionOutcome,
    BidModel,
    ConsumerOffset,
    DeadLetter,
    Delivery,
    ExchangeRate,
    Experiment,
    LostOffsets,
    SavedReport,
    Subscription,
)
from outcomes.replay import dead_letters_replay
from outcomes.saved_report_serializers import SavedReportSerializer
from outcomes.subscription_serializers import AlertSerializer, SubscriptionSerializer


class EstimatedCountPaginator(Paginator):
    """Uses the planner's row estimate when the queryset is the whole table, and says so
    (``count_is_estimate``: the list's footer reads "about 270,874 … (estimate)")."""

    # Below this many rows an exact COUNT(*) is cheap, and exact is nicer.
    estimate_threshold = 10_000
    count_is_estimate = False

    @cached_property
    def count(self):
        query = getattr(self.object_list, "query", None)
        if query is not None and not query.where:
            table = self.object_list.model._meta.db_table
            with connection.cursor() as cursor:
                cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
                row = cursor.fetchone()
            estimate = row[0] if row else -1
            if estimate is not None and estimate > self.estimate_threshold:
                self.count_is_estimate = True
                return estimate
        return super().count


class EstimatedChangeList(ChangeList):
    """The search bar says "N results" only for a search or a filter; the whole table's
    count (an estimate on a big table) is shown once, labelled, under the list
    (``admin/outcomes/pagination.html``)."""

    def get_results(self, request):
        super().get_results(request)
        if not self.queryset.query.where:
            self.full_result_count = self.result_count  # nothing filtered: no "N results (Show all)"


class EstimatedCount:
    """For the admins of tables of millions of rows: no full count, and an estimate labelled."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_changelist(self, request, **kwargs):
        return EstimatedChangeList


class CurrencyFilter(admin.SimpleListFilter):
    title = "currency"
    parameter_name = "currency"
    CODES = ("USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "CNY", "INR", "BRL")

    def lookups(self, request, model_admin):
        return [(code, code) for code in self.CODES]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(currency=value) if value else queryset


class ReasonFilter(admin.SimpleListFilter):
    """Reasons by code (what logs and ``replay_dead_letters --reason`` use), labels beside."""

    title = "reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        return [(code, f"{code} — {label}") for code, label in DeadLetter.Reason.choices]

    def queryset(self, request, queryset):
        return queryset.filter(reason=self.value()) if self.value() else queryset


class ReplayedFilter(admin.SimpleListFilter):
    title = "replayed"
    parameter_name = "replayed"

    def lookups(self, request, model_admin):
        return [("no", "Not replayed"), ("yes", "Replayed")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(replayed_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(replayed_at__isnull=False)
        return queryset


def _pretty_json(value) -> str:
    return format_html('<pre class="outcomes-json">{}</pre>', json.dumps(value, indent=2, sort_keys=True))


def _seconds(moment) -> str:
    """A time to the second with its zone, as every admin page shows times (DATETIME_FORMAT,
    analytics/formats): at hundreds of outcomes a second, minutes say nothing."""
    if moment is None:
        return "–"
    return date_format(localtime(moment), "DATETIME_FORMAT")


@admin.register(AuctionOutcome)
class AuctionOutcomeAdmin(EstimatedCount, admin.ModelAdmin):
    class Media:
        css = {"all": ["outcomes/admin.css"]}  # no inline styles under the pages' CSP

    # Compact columns (a UUID bid id on one line, the result and its price in one column,
    # enriched as a filter), so every column stays on screen at 1280 px and up.
    list_display = (
        "short_bid_id",
        "auction_time",
        "user_id",
        "site_domain",
        "result",
        "bid_price",
        "currency",
        "stored_at",
    )
    list_filter = ("win_status", "enriched", CurrencyFilter, ("event_time", admin.DateFieldListFilter))
    search_fields = ("bid_id", "user_id", "site_domain")
    search_help_text = "Exact bid id, user id or site domain."
    readonly_fields = ("raw_data_pretty", "timestamp", "created_at", "updated_at")
    exclude = ("raw_data",)
    list_per_page = 100
    ordering = ("-timestamp", "-id")

    @admin.display(description="raw data")
    def raw_data_pretty(self, obj):
        return _pretty_json(obj.raw_data)

    @admin.display(description="bid id", ordering="bid_id")
    def short_bid_id(self, obj):
        # One line, small monospace, cut with an ellipsis after ~16 characters (whole on hover
        # and on the outcome's page): a UUID would take 250 px or wrap over four lines.
        return format_html(
            '<span title="{}" class="outcomes-bid-id">{}</span>',
            obj.bid_id,
            obj.bid_id,
        )

    @admin.display(description="auction time", ordering="event_time")
    def auction_time(self, obj):
        return format_html('<span class="outcomes-nowrap">{}</span>', _seconds(obj.auction_timestamp or obj.timestamp))

    @admin.display(description="result", ordering="win_price")
    def result(self, obj):
        return format_html(
            '<span class="outcomes-nowrap">{}</span>', f"won at {obj.win_price}" if obj.win_status else "lost"
        )

    @admin.display(description="stored", ordering="timestamp")
    def stored_at(self, obj):
        return format_html('<span class="outcomes-nowrap">{}</span>', _seconds(obj.timestamp))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(Q(bid_id=term) | Q(user_id=term) | Q(site_domain=term)), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        writes.outcomes_delete(ids=[obj.pk])

    def delete_queryset(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        for start in range(0, len(ids), 1000):
            writes.outcomes_delete(ids=ids[start : start + 1000])


@admin.register(DeadLetter)
class DeadLetterAdmin(EstimatedCount, admin.ModelAdmin):
    class Media:
        css = {"all": ["outcomes/admin.css"]}  # no inline styles under the pages' CSP

    list_display = ("id", "reason_code", "topic", "partition", "offset", "short_detail", "created_at", "replayed_at")
    list_filter = (ReasonFilter, ReplayedFilter, "topic")
    actions = ["replay_selected"]
    search_fields = ("detail",)
    readonly_fields = (
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
        "reason_code",
        "detail",
        "consumer_group",
        "key_text",
        "value_text",
        "created_at",
        "replayed_at",
    )
    exclude = ("key", "value")

    @admin.display(description="detail")
    def short_detail(self, obj):
        return obj.detail[:120]

    @admin.display(description="reason", ordering="reason")
    def reason_code(self, obj):
        """The code, as logs and ``replay_dead_letters --reason`` spell it; the label as help."""
        return format_html('<code title="{}">{}</code>', obj.get_reason_display(), obj.reason)

    @admin.action(
        description="Replay selected dead letters (parse again, store what is valid now)", permissions=["replay"]
    )
    def replay_selected(self, request, queryset):
        consumer = settings.CONSUMER
        report = dead_letters_replay(
            ids=list(queryset.values_list("id", flat=True)),
            max_bytes=consumer.max_message_bytes,
            max_price=consumer.max_price,
        )
        still = ", ".join(f"{reason}: {count}" for reason, count in sorted(report.still_invalid.items()))
        self.message_user(
            request,
            f"Replayed {report.examined}: {report.stored} stored, {report.duplicates} already stored, "
            f"{report.conflicting} conflicting" + (f"; still invalid (kept) — {still}" if still else "") + ".",
            messages.SUCCESS if not report.still_invalid else messages.WARNING,
        )

    def has_replay_permission(self, request) -> bool:
        """Replaying stores outcomes: a permission of its own, never implied by viewing."""
        return request.user.has_perm("outcomes.replay_deadletter")

    @admin.display(description="key (UTF-8, undecodable bytes shown as \\x..)")
    def key_text(self, obj):
        return _bytes_text(obj.key)

    @admin.display(description="value (UTF-8, undecodable bytes shown as \\x..)")
    def value_text(self, obj):
        return format_html('<pre class="outcomes-json">{}</pre>', _bytes_text(obj.value))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ConsumerOffset)
class ConsumerOffsetAdmin(admin.ModelAdmin):
    list_display = ("consumer_group", "topic", "partition", "next_offset", "updated_at")
    list_filter = ("consumer_group", "topic")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(LostOffsets)
class LostOffsetsAdmin(admin.ModelAdmin):
    """Offsets Kafka deleted before the consumer stored them (a fact to investigate, not to edit)."""

    list_display = ("detected_at", "consumer_group", "topic", "partition", "first_offset", "end_offset", "messages")
    list_filter = ("consumer_group", "topic")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# The library registers its own concrete key model; the service uses ``outcomes.APIKey``
# (with scopes) only, so the admin shows one list of keys.
if admin.site.is_registered(UnusedLibraryAPIKey):
    admin.site.unregister(UnusedLibraryAPIKey)


@admin.register(APIKey)
class ScopedAPIKeyAdmin(APIKeyModelAdmin):
    list_display = ("prefix", "name", "scopes", "created", "expiry_date", "_has_expired", "revoked")
    list_filter = ("created", "revoked")

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "scopes") if obj is not None and obj.revoked else fields


def _bytes_text(value) -> str:
    if value is None:
        return "(none)"
    return bytes(value).decode("utf-8", errors="backslashreplace")


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    """Reference rates (units per euro), usually loaded with ``manage.py load_fx_rates``;
    a correction made here applies to the next report."""

    list_display = ("day", "currency", "per_euro", "source", "loaded_at")
    list_filter = ("currency",)
    search_fields = ("currency",)
    date_hierarchy = "day"
    readonly_fields = ("loaded_at",)
    ordering = ("-day", "currency")


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    """The experiment registry; a plan is validated as the API validates it (the model's ``clean``)."""

    list_display = ("key", "name", "unit", "primary_metric", "start", "end")
    list_filter = ("unit",)
    search_fields = ("key", "name")
    readonly_fields = ("created_at", "updated_at")

    def get_readonly_fields(self, request, obj=None):
        # Outcomes carry the key: it cannot change once the experiment exists.
        return (*self.readonly_fields, "key") if obj is not None else self.readonly_fields


class SavedReportForm(forms.ModelForm):
    class Meta:
        model = SavedReport
        fields = ["name", "report", "params", "window", "timezone"]

    def clean(self):
        cleaned = super().clean()
        checked = SavedReportSerializer(instance=self.instance if self.instance.pk else None, data=cleaned)
        if not checked.is_valid():
            for name, messages in checked.errors.items():
                field = name if name in self.fields else None
                self.add_error(field, [f"{key}: {m}" if key else str(m) for key, ms in _pairs(messages) for m in ms])
        return cleaned


def _pairs(messages):
    """A field's errors as (parameter, messages) pairs: params' errors are per parameter."""
    if isinstance(messages, dict):
        return [(key, value if isinstance(value, list) else [value]) for key, value in messages.items()]
    return [("", messages)]


@admin.register(SavedReport)
class SavedReportAdmin(admin.ModelAdmin):
    """Saved reports; validated as the API validates them (the endpoint's own checks)."""

    form = SavedReportForm

    list_display = ("name", "report", "window", "timezone", "created_by", "updated_at")
    list_filter = ("report", "window")
    search_fields = ("name",)
    readonly_fields = ("created_by", "created_at", "updated_at")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = str(request.user)[:150]
        super().save_model(request, obj, form, change)


def checked_by(serializer_class, names):
    """A form validated by the API's own serializer (one set of rules for both ways in)."""

    class Form(forms.ModelForm):
        webhook_url = forms.URLField(max_length=500, required=False, assume_scheme="https")

        class Meta:
            model = serializer_class.Meta.model
            fields = names

        def clean(self):
            cleaned = super().clean()
            data = {name: value for name, value in cleaned.items() if value is not None}
            if "report" in data and hasattr(data["report"], "pk"):
                data["report"] = data["report"].pk
            checked = serializer_class(instance=self.instance if self.instance.pk else None, data=data, partial=True)
            if not checked.is_valid():
                for name, messages in checked.errors.items():
                    field = name if name in self.fields else None
                    self.add_error(field, [f"{k}: {m}" if k else str(m) for k, ms in _pairs(messages) for m in ms])
            return cleaned

    return Form


class SendoutInline(admin.TabularInline):
    extra = 0
    can_delete = False
    max_num = 0
    ordering = ("-id",)

    def has_change_permission(self, request, obj=None):
        return False


class DeliveryInline(SendoutInline):
    model = Delivery
    fields = readonly_fields = (
        "scheduled_for",
        "skipped",
        "status",
        "attempts",
        "recipients_sent",
        "webhook_status",
        "bytes",
        "error",
        "finished_at",
    )


class AlertEventInline(SendoutInline):
    model = AlertEvent
    fields = readonly_fields = (
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
        "finished_at",
    )


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """Saved reports sent on a schedule; failing ones first (their last deliveries failed)."""

    form = checked_by(
        SubscriptionSerializer, ["report", "rrule", "timezone", "format", "recipients", "webhook_url", "active"]
    )
    list_display = ("report", "rrule", "timezone", "format", "active", "failing", "next_run_at", "created_by")
    list_filter = ("failing", "active", "format")
    search_fields = ("report__name",)
    ordering = ("-failing", "-created_at")
    readonly_fields = ("failing", "consecutive_failures", "next_run_at", "last_scheduled_for", "created_by")
    inlines = [DeliveryInline]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = str(request.user)[:150]
            obj.webhook_secret = obj.webhook_secret or webhooks.new_secret()
        if not change or {"rrule", "timezone", "active"} & set(form.changed_data):
            deliveries.arm(obj, timezone.now())
        super().save_model(request, obj, form, change)


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Thresholds evaluated every minute; notifications on changes of state."""

    form = checked_by(
        AlertSerializer,
        [
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
        ],
    )
    list_display = ("name", "measure", "condition", "threshold", "state", "state_since", "active", "failing")
    list_filter = ("state", "failing", "active", "measure")
    search_fields = ("name",)
    ordering = ("-failing", "name")
    readonly_fields = (
        "state",
        "state_since",
        "last_value",
        "last_evaluated_at",
        "failing",
        "consecutive_failures",
        "created_by",
    )
    inlines = [AlertEventInline]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = str(request.user)[:150]
            obj.webhook_secret = obj.webhook_secret or webhooks.new_secret()
        super().save_model(request, obj, form, change)


@admin.register(BidModel)
class BidModelAdmin(admin.ModelAdmin):
    """Fitted bid models, as ``fit_bid_models`` stored them (facts of a fit: read, or delete a
    bad version so the one before it is served again)."""

    list_display = ("site_domain", "currency", "version", "fitted_at", "outcomes", "pooled", "log_loss")
    list_filter = ("currency", "pooled")
    search_fields = ("site_domain",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
