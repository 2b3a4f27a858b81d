"""Which rollup family answers a query, and the plan over its grains (``planner``).

A family answers when its dimensions cover the query's filters (``win_status`` always: every
rollup row keeps wins and losses apart); the planner then covers the window with the
family's grains and leaves the edges to the raw table. No plan (None): a filter the family
lacks (``user_id``, prices, a domain with a currency…), so the raw table answers, through
the index that filter has.
"""

from __future__ import annotations

from datetime import UTC, datetime

from outcomes import rollups
from outcomes.queries.planner import Cover, Plan, cover_window
from outcomes.queries.query import OutcomeQuery

MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)
# The grains a report may read for a time series of each granularity (None: a total).
UNITS_UP_TO = {
    "minute": ("minute",),
    "hour": ("hour", "minute"),
    "day": ("day", "hour", "minute"),
    "week": ("day", "hour", "minute"),
    "month": ("day", "hour", "minute"),
    None: ("day", "hour", "minute"),
}


def stats_family(query: OutcomeQuery) -> str:
    return "domain" if query.site_domain is not None else "outcomes"


def plan_for(
    query: OutcomeQuery,
    *,
    family: str,
    units: tuple[str, ...],
    boundaries: list[datetime] | None = None,
    total: bool = False,
) -> Plan | None:
    """The plan answering ``query`` from ``family`` exactly (whole buckets + raw edges), or
    None if only the raw table can.

    ``total``: one answer over the whole window, so an all-time grain may serve a window
    without ``start`` and ``end``. ``boundaries``: a time series' bucket boundaries.
    """
    allowed = rollups.FAMILY_FILTERS[family] | {"win_status", "start", "end"}
    if query.given() - allowed:
        return None
    grains = rollups.FAMILIES[family]
    if total and "all" in grains and query.start is None and query.end is None and boundaries is None:
        return Plan(family, Cover({"all": [(MIN_TIME, MAX_TIME)]}, []), all_time=True)
    cuts = boundaries or [query.start or MIN_TIME, query.end or MAX_TIME]
    cover = cover_window(cuts, tuple(unit for unit in units if unit in grains))
    if not cover.units_used:
        return None  # no whole bucket inside: the window is all edge, the raw table's
    return Plan(family, cover)
