"""Selectors: every read and aggregation over auction outcomes lives here.

Keyword-only arguments, plain return values (dicts and lists ready for JSON), no HTTP.
The API layer passes in an already-filtered queryset, so ``stats`` and ``daily_stats``
honour exactly the same filters as the list.

Definitions (also in the README):

* ``win_rate`` — wins / outcomes × 100, rounded to 2 decimals (0.0 with no outcomes);
* ``total_revenue`` — sum of ``win_price`` over won auctions (what was paid), 2 decimals;
* ``average_win_price`` — mean ``win_price`` over won auctions, 4 decimals;
* ``average_bid_price`` — mean ``bid_price`` over all outcomes, 4 decimals;
* a day is the UTC calendar day of the auction (of storage, for outcomes without an
  ``auction_timestamp``).
"""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

from django.db.models import Avg, Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate

from outcomes.models import AuctionOutcome

_WON = Q(win_status=True)


def event_time():
    """When an outcome happened: its auction time, else the time it was stored."""
    return Coalesce(F("auction_timestamp"), F("timestamp"))


def outcome_list(*, winners_only: bool = False) -> QuerySet[AuctionOutcome]:
    queryset = AuctionOutcome.objects.all()
    if winners_only:
        queryset = queryset.filter(win_status=True)
    return queryset


def _measures() -> dict:
    return {
        "total_outcomes": Count("id"),
        "total_wins": Count("id", filter=_WON),
        "total_revenue": Sum("win_price", filter=_WON),
        "average_win_price": Avg("win_price", filter=_WON),
        "average_bid_price": Avg("bid_price"),
        "enriched_count": Count("id", filter=Q(enriched=True)),
    }


def _shape(row: dict) -> dict:
    total = row["total_outcomes"] or 0
    wins = row["total_wins"] or 0
    return {
        "total_outcomes": total,
        "total_wins": wins,
        "total_losses": total - wins,
        "win_rate": round(wins * 100 / total, 2) if total else 0.0,
        "total_revenue": _money(row["total_revenue"], 2),
        "average_win_price": _money(row["average_win_price"], 4),
        "average_bid_price": _money(row["average_bid_price"], 4),
        "enriched_count": row["enriched_count"] or 0,
    }


def _money(value: Decimal | None, places: int) -> float:
    if value is None:
        return 0.0
    return float(round(Decimal(value), places))


def outcome_stats(*, queryset: QuerySet[AuctionOutcome]) -> dict:
    """Totals and averages over ``queryset`` (zeros, never nulls, when it is empty)."""
    return _shape(queryset.order_by().aggregate(**_measures()))


def outcome_daily_stats(*, queryset: QuerySet[AuctionOutcome]) -> list[dict]:
    """The same measures per UTC day, oldest day first."""
    rows = (
        queryset.order_by()
        .annotate(day=TruncDate(event_time(), tzinfo=UTC))
        .values("day")
        .annotate(**_measures())
        .order_by("day")
    )
    return [{"date": row["day"].isoformat(), **_shape(row)} for row in rows]
