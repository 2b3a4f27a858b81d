"""Query-parameter filters for the outcomes API.

Declarative (django-filter) and strict: a value that does not parse is a 400 naming the
parameter, never silently ignored — including booleans, which django-filter's own
``BooleanFilter`` would drop when given e.g. ``maybe``. Ordering accepts only the listed
fields (each served by an index, see ``outcomes.models``) and always ends with ``id`` in the
direction of the last field, so the order is total: pages and cursors are stable.
"""

from __future__ import annotations

import copy
from datetime import UTC

from django import forms
from django.core.exceptions import ValidationError
from django_filters import rest_framework as filters

from outcomes.queries.query import lookup
from outcomes.validation import COLUMN_MAX_PRICE, currency_code, slug

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


class RuleField(forms.CharField):
    """A value checked by a rule of ``outcomes.validation``: what it returns is the filter's
    value, and its ``ValueError`` the 400's message (a value no outcome can carry is refused,
    not matched)."""

    def rule(self, value: str) -> str:
        raise NotImplementedError

    def message(self, error: ValueError) -> str:
        text = str(error)
        return f"{text[0].upper()}{text[1:]}."

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return value
        try:
            return self.rule(value)
        except ValueError as exc:
            raise ValidationError(self.message(exc), code="invalid") from None


class CurrencyField(RuleField):
    """Three letters, either case (codes are stored upper-case: ``usd`` means ``USD``)."""

    def rule(self, value: str) -> str:
        return currency_code(value)


class SlugField(RuleField):
    """An experiment key or variant name."""

    def rule(self, value: str) -> str:
        return slug(value)

    def message(self, error: ValueError) -> str:
        return f"The value {error}."


class CurrencyFilter(filters.CharFilter):
    field_class = CurrencyField


class SlugFilter(filters.CharFilter):
    field_class = SlugField


class StableOrderingFilter(filters.OrderingFilter):
    def filter(self, qs, value):
        if not value:
            return qs
        return qs.order_by(*total_ordering([self.get_ordering_value(param) for param in value]))


def total_ordering(ordering: list[str]) -> list[str]:
    """``ordering`` with ``id`` appended (same direction as the last field) unless present."""
    if any(field.lstrip("-") == "id" for field in ordering):
        return list(ordering)
    return [*ordering, "-id" if ordering and ordering[-1].startswith("-") else "id"]


# What a time parameter takes, said when one is refused (``start=yesterday``).
DATETIME_FORMAT_HELP = (
    "Not an ISO 8601 date-time. Use e.g. 2026-12-02T14:00:00Z, 2026-12-02T15:00:00+01:00 or 2026-12-02 "
    "(midnight UTC); without an offset the time is UTC."
)

ORDERING_FIELDS = ("timestamp", "event_time", "win_price", "bid_price", "user_id", "site_domain", "id")


class OutcomeFilterForm(forms.Form):
    """Rules across parameters (django-filter builds its form from this class)."""

    def clean(self):
        data = super().clean()
        for name in ("start", "end"):
            # Any valid ISO 8601 offset (Python allows ±24 h, PostgreSQL ±16 h): compare in UTC.
            if data.get(name) is not None:
                try:
                    data[name] = data[name].astimezone(UTC)
                except OverflowError:
                    self.add_error(name, f"{name} is out of range.")
        low, high = data.get("min_price"), data.get("max_price")
        if low is not None and high is not None and low > high:
            self.add_error("min_price", "min_price must not be greater than max_price.")
        if data.get("start") and data.get("end") and "start" not in self.errors and data["start"] >= data["end"]:
            self.add_error("start", "start must be before end.")
        return data


class OutcomeFilter(filters.FilterSet):
    bid_id = filters.CharFilter(help_text="Exact bid id (the message's bid_request_id). Lists and exports only.")
    user_id = filters.CharFilter(help_text="Exact user id.")
    site_domain = filters.CharFilter(help_text="Exact site domain.")
    win_status = StrictBooleanFilter(help_text="true for won auctions, false for lost ones.")
    enriched = StrictBooleanFilter(help_text="true for outcomes enriched with user data.")
    currency = CurrencyFilter(help_text="ISO 4217 code, e.g. USD (either case).")
    experiment = SlugFilter(help_text="Exact experiment key: the outcomes an experiment tagged.")
    variant = SlugFilter(help_text="Exact variant name (with `experiment`, that variant's outcomes).")
    min_price = filters.NumberFilter(
        *lookup("min_price"), min_value=0, max_value=COLUMN_MAX_PRICE, help_text="Minimum win price."
    )
    max_price = filters.NumberFilter(
        *lookup("max_price"), min_value=0, max_value=COLUMN_MAX_PRICE, help_text="Maximum win price."
    )
    start = filters.IsoDateTimeFilter(
        *lookup("start"),
        label="start",
        error_messages={"invalid": DATETIME_FORMAT_HELP},
        help_text="Outcomes at or after this ISO 8601 time (event time: auction time, else storage time).",
    )
    end = filters.IsoDateTimeFilter(
        *lookup("end"),
        label="end",
        error_messages={"invalid": DATETIME_FORMAT_HELP},
        help_text="Outcomes before this ISO 8601 time (event time: auction time, else storage time).",
    )
    ordering = StableOrderingFilter(
        fields=ORDERING_FIELDS,
        error_messages={
            "invalid_choice": "'%(value)s' is not an ordering field; use "
            + ", ".join(ORDERING_FIELDS)
            + " ('-' before one for descending)."
        },
        help_text="Comma-separated fields, '-' for descending: " + ", ".join(ORDERING_FIELDS) + ".",
    )

    class Meta:
        form = OutcomeFilterForm

    # django-filter deep-copies every filter and builds a new form class on each request
    # (~1.5 ms, most of a rollup report's time). These filters keep no per-request state
    # beyond ``parent``, so each instance gets shallow copies and the class builds its form
    # class once.
    def __init__(self, data=None, queryset=None, *, request=None, prefix=None):
        if queryset is None:
            queryset = self._meta.model._default_manager.all()
        self.is_bound = data is not None
        self.data = data or {}
        self.queryset = queryset
        self.request = request
        self.form_prefix = prefix
        self.filters = {name: copy.copy(base) for name, base in self.base_filters.items()}
        for filter_ in self.filters.values():
            filter_.model = queryset.model
            filter_.parent = self

    def get_form_class(self):
        form_class = type(self).__dict__.get("_form_class")
        if form_class is None:
            form_class = super().get_form_class()
            type(self)._form_class = form_class
        return form_class


FILTER_PARAMS = frozenset(OutcomeFilter.base_filters)
