"""The measures every report adds up, and the figures derived from them (pure).

A ``Measures`` is what one rollup row, one raw-table group or one whole report holds: sums
and counts only (never averages), money in cents, so any set of them adds up exactly. The
derived figures (docs/api.md, "Reports"):

* ``win_rate`` — wins / outcomes × 100, rounded to 2 decimals (0.0 with no outcomes);
* ``total_revenue`` — sum of ``win_price`` over won auctions (what was paid), 2 decimals
  (converted money is summed exactly, then rounded to the cent);
* ``average_win_price`` — ``total_revenue`` / wins, 4 decimals;
* ``average_bid_price`` — mean ``bid_price`` over all outcomes, 4 decimals;
* ``ecpm`` — revenue per 1,000 won impressions: ``total_revenue`` / wins × 1000, 4 decimals;
* ``shading_ratio`` — Σ win_price / Σ bid_price over won auctions, 4 decimals (1.0: paid the bid).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple


class Measures(NamedTuple):
    outcomes: int = 0
    wins: int = 0
    enriched: int = 0
    revenue_cents: int = 0
    bid_cents: int = 0
    won_bid_cents: int = 0


ZERO = Measures()
# The SQL aliases of a measures row, in ``Measures`` order, and their sums.
COLUMNS = ("o", "w", "e", "r", "bd", "wb")
SUMS = ", ".join(f"sum({column})::bigint" for column in COLUMNS)
# The same with money as exact numeric cents (converted to another currency: fractions of a cent).
MONEY_COLUMNS = ("r", "bd", "wb")
EXACT_SUMS = ", ".join(f"sum({c})" if c in MONEY_COLUMNS else f"sum({c})::bigint" for c in COLUMNS)


def total(many: Iterable[Measures]) -> Measures:
    """The sum of any number of measures (``ZERO`` for none)."""
    return Measures(*map(sum, zip(*many, strict=True)))


def stats(measures: Measures | None) -> dict:
    """The ``stats`` figures of these measures."""
    outcomes, wins, enriched, revenue, bid, won_bid = measures or ZERO
    return {
        "total_outcomes": outcomes,
        "total_wins": wins,
        "total_losses": outcomes - wins,
        "win_rate": round(wins * 100 / outcomes, 2) if outcomes else 0.0,
        "total_revenue": float(round(Decimal(revenue) / 100, 2)),
        "average_win_price": ratio(revenue, wins * 100, 4),
        "average_bid_price": ratio(bid, outcomes * 100, 4),
        "enriched_count": enriched,
        "ecpm": ratio(revenue * 1000, wins * 100, 4),
        "shading_ratio": ratio(revenue, won_bid, 4),
    }


def breakdown_row(measures: Measures) -> dict:
    """The figures of one ``breakdown`` row."""
    shaped = stats(measures)
    return {
        "outcomes": shaped["total_outcomes"],
        "wins": shaped["total_wins"],
        "win_rate": shaped["win_rate"],
        "revenue": shaped["total_revenue"],
        "average_win_price": shaped["average_win_price"],
        "ecpm": shaped["ecpm"],
    }


def series_point(measures: Measures) -> dict:
    """The figures of one time-series bucket: float arithmetic, as a day of minutes is 1,440
    of them (Decimal would cost ~5 ms)."""
    outcomes, wins, _enriched, revenue, bid, _won_bid = measures
    return {
        "outcomes": outcomes,
        "wins": wins,
        "win_rate": round(wins * 100 / outcomes, 2) if outcomes else 0.0,
        "revenue": round(revenue / 100, 2),
        "average_win_price": round(revenue / wins / 100, 4) if wins else 0.0,
        "average_bid_price": round(bid / outcomes / 100, 4) if outcomes else 0.0,
    }


def ratio(numerator: int, denominator: int, places: int) -> float:
    if not denominator:
        return 0.0
    return float(round(Decimal(numerator) / Decimal(denominator), places))
