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

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q
from django.utils.functional import cached_property
from django.utils.html import format_html
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey as UnusedLibraryAPIKey

from outcomes import writes
from outcomes.models import APIKey, AuctionOutcome, ConsumerOffset, DeadLetter


class EstimatedCountPaginator(Paginator):
    """Uses the planner's row estimate when the queryset is the whole table."""

    # Below this many rows an exact COUNT(*) is cheap, and exact is nicer.
    estimate_threshold = 10_000

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
                return estimate
        return super().count


class CurrencyFilter(admin.SimpleListFilter):
    title = "currency"
    parameter_name = "currency"
    CODES = ("USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "CNY", "INR", "BRL")

    def lookups(self, request, model_admin):
        return [(code, code) for code in self.CODES]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(currency=value) if value else queryset


def _pretty_json(value) -> str:
    return format_html("<pre style='white-space: pre-wrap'>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


@admin.register(AuctionOutcome)
class AuctionOutcomeAdmin(admin.ModelAdmin):
    list_display = (
        "bid_id",
        "user_id",
        "site_domain",
        "win_status",
        "win_price",
        "bid_price",
        "currency",
        "enriched",
        "auction_timestamp",
        "timestamp",
    )
    list_filter = ("win_status", "enriched", CurrencyFilter, ("timestamp", admin.DateFieldListFilter))
    search_fields = ("bid_id", "user_id", "site_domain")
    search_help_text = "Exact bid id, user id or site domain."
    readonly_fields = ("raw_data_pretty", "timestamp", "created_at", "updated_at")
    exclude = ("raw_data",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 100
    ordering = ("-timestamp", "-id")

    @admin.display(description="raw data")
    def raw_data_pretty(self, obj):
        return _pretty_json(obj.raw_data)

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
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ("id", "reason", "topic", "partition", "offset", "short_detail", "created_at", "replayed_at")
    list_filter = ("reason", ("replayed_at", admin.EmptyFieldListFilter), "topic")
    search_fields = ("detail",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = (
        "topic",
        "partition",
        "offset",
        "kafka_timestamp",
        "reason",
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

    @admin.display(description="key (UTF-8, undecodable bytes shown as \\x..)")
    def key_text(self, obj):
        return _bytes_text(obj.key)

    @admin.display(description="value (UTF-8, undecodable bytes shown as \\x..)")
    def value_text(self, obj):
        return format_html("<pre style='white-space: pre-wrap'>{}</pre>", _bytes_text(obj.value))

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
