"""``OutcomeQuery``: the validated filters of a list, report or export (pure), and how each
filter reads on the outcomes table: the one table the API's filters (django-filter lookups)
and the raw SQL of lists, edges and counts are both derived from."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal

# filter → (column, operator): how it reads on the raw outcomes table.
CONDITIONS: dict[str, tuple[str, str]] = {
    **{
        name: (name, "=")
        for name in ("bid_id", "user_id", "site_domain", "win_status", "enriched", "currency", "experiment", "variant")
    },
    "min_price": ("win_price", ">="),
    "max_price": ("win_price", "<="),
    "start": ("event_time", ">="),
    "end": ("event_time", "<"),
}
# The same operators as Django lookups (django-filter's ``lookup_expr``).
LOOKUPS = {"=": "exact", ">=": "gte", "<=": "lte", "<": "lt"}
# What the winners list is: the list with this filter.
WINNERS = {"win_status": True}


def lookup(name: str) -> tuple[str, str]:
    """(field name, lookup) of filter ``name``, as django-filter declares them."""
    column, operator = CONDITIONS[name]
    return column, LOOKUPS[operator]


@dataclass(frozen=True)
class OutcomeQuery:
    """The filters of a list or report, already validated (``outcomes.filters``)."""

    bid_id: str | None = None  # lists and exports only (the count of a list by bid id)
    user_id: str | None = None
    site_domain: str | None = None
    win_status: bool | None = None
    enriched: bool | None = None
    currency: str | None = None
    experiment: str | None = None
    variant: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def from_filters(cls, data: dict) -> OutcomeQuery:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names and v not in (None, "")})

    def given(self) -> set[str]:
        return {f.name for f in fields(self) if getattr(self, f.name) is not None}

    def winners(self) -> OutcomeQuery:
        return replace(self, **WINNERS)

    def untimed(self) -> OutcomeQuery:
        """The same filters without the window (a plan's edges bring their own ranges)."""
        return replace(self, start=None, end=None)
