"""Query-parameter filters for the outcomes API.

Declarative (django-filter) and strict: a value that does not parse is a 400 naming the
parameter, never silently ignored — including booleans, which django-filter's own
``BooleanFilter`` would drop when given e.g. ``maybe``. Ordering accepts only the listed
fields, and always ends with ``-id`` so pages are stable.
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django_filters import rest_framework as filters

from outcomes.queries import event_time

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class StrictBooleanField(forms.Field):
    def to_python(self, value):
        if value in (None, ""):
            return None
        lowered = str(value).strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValidationError(f"'{value}' is not a boolean; use true or false.", code="invalid")


class StrictBooleanFilter(filters.Filter):
    field_class = StrictBooleanField


class StableOrderingFilter(filters.OrderingFilter):
    def filter(self, qs, value):
        if not value:
            return qs
        ordering = [self.get_ordering_value(param) for param in value]
        if not any(field.lstrip("-") == "id" for field in ordering):
            ordering.append("-id")
        return qs.order_by(*ordering)


ORDERING_FIELDS = ("timestamp", "auction_timestamp", "win_price", "bid_price", "user_id", "site_domain", "id")


class OutcomeFilter(filters.FilterSet):
    user_id = filters.CharFilter(help_text="Exact user id.")
    site_domain = filters.CharFilter(help_text="Exact site domain.")
    win_status = StrictBooleanFilter(help_text="true for won auctions, false for lost ones.")
    enriched = StrictBooleanFilter(help_text="true for outcomes enriched with user data.")
    currency = filters.CharFilter(help_text="ISO 4217 code, e.g. USD.")
    min_price = filters.NumberFilter(field_name="win_price", lookup_expr="gte", help_text="Minimum win price.")
    max_price = filters.NumberFilter(field_name="win_price", lookup_expr="lte", help_text="Maximum win price.")
    start = filters.IsoDateTimeFilter(
        method="filter_start", help_text="Outcomes at or after this ISO 8601 time (auction time, else storage time)."
    )
    end = filters.IsoDateTimeFilter(
        method="filter_end", help_text="Outcomes before this ISO 8601 time (auction time, else storage time)."
    )
    ordering = StableOrderingFilter(
        fields=ORDERING_FIELDS,
        help_text="Comma-separated fields, '-' for descending: " + ", ".join(ORDERING_FIELDS) + ".",
    )

    def filter_start(self, queryset, name, value):
        return queryset.alias(event_time=event_time()).filter(event_time__gte=value)

    def filter_end(self, queryset, name, value):
        return queryset.alias(event_time=event_time()).filter(event_time__lt=value)

    def is_valid(self):
        valid = super().is_valid()
        if valid:
            data = self.form.cleaned_data
            if (
                data.get("min_price") is not None
                and data.get("max_price") is not None
                and data["min_price"] > data["max_price"]
            ):
                self.form.add_error("min_price", "min_price must not be greater than max_price.")
                return False
            if data.get("start") and data.get("end") and data["start"] >= data["end"]:
                self.form.add_error("start", "start must be before end.")
                return False
        return valid


FILTER_PARAMS = frozenset(OutcomeFilter.base_filters)
