"""``OutcomeQuery``: the validated filters of a list, report or export (pure)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class OutcomeQuery:
    """The filters of a list or report, already validated (``outcomes.filters``)."""

    bid_id: str | None = None  # lists and exports only (the count of a list by bid id)
    user_id: str | None = None
    site_domain: str | None = None
    win_status: bool | None = None
    enriched: bool | None = None
    currency: str | None = None
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

    def untimed(self) -> OutcomeQuery:
        """The same filters without the window (a plan's edges bring their own ranges)."""
        return replace(self, start=None, end=None)
