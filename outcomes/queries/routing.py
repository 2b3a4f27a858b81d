"""Which rollup family answers a query, and the plan over its grains (``planner``).

A family answers when its dimensions cover the query's filters (``win_status`` always: every
rollup row keeps wins and losses apart); the planner then covers the window with the
family's grains and leaves the edges to the raw table. No plan (None): a filter the family
lacks (``user_id``, prices, a domain with ``enriched``…), so the raw table answers, through
the index that filter has.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from analytics.dbrouting import read_db
from outcomes import rollups
from outcomes.queries.planner import ALL, MAX_TIME, MIN_TIME, TRIM_ANY, Cover, Piece, Plan, cover_window
from outcomes.queries.query import OutcomeQuery

# Where the stored outcomes begin and end (the first and last minute rollup buckets), kept
# per process: it only steers the planner's cost estimates (nothing is stored outside it),
# never an answer, so a value a minute old is harmless.
_EXTENT_TTL_S = 60.0
_extent: list = [(None, None), float("-inf")]
# The grains a report may read for a time series of each granularity (None: a total).
UNITS_UP_TO = {
    "minute": ("minute",),
    "hour": ("hour", "minute"),
    "day": ("day", "hour", "minute"),
    "week": ("day", "hour", "minute"),
    "month": ("day", "hour", "minute"),
    None: ("day", "hour", "minute"),
}


def clock() -> datetime:
    """The wall clock's now."""
    return datetime.now(UTC)


def stored_until(now: datetime | None = None) -> datetime:
    """The planner's "now": nothing is stored after it (the clock, or the end of the stored
    outcomes if they stop earlier), so reading there costs nothing. A cost hint only."""
    now = now or clock()
    end = data_extent()[1]
    return min(now, end) if end is not None else now


def data_extent() -> tuple[datetime | None, datetime | None]:
    """(first, end) of the stored outcomes' event times, to the minute, cached for a minute."""
    extent, checked_at = _extent
    if time.monotonic() - checked_at > _EXTENT_TTL_S:
        with read_db().cursor() as cursor:
            table = rollups.FAMILIES["outcomes"]["minute"].table
            cursor.execute(f"SELECT min(bucket), max(bucket) + interval '1 minute' FROM {table}")
            extent = cursor.fetchone()
        _extent[:] = [extent, time.monotonic()]
    return extent


def forget_extent() -> None:
    """Drop the cached extent (tests that change the data between requests)."""
    _extent[:] = [(None, None), float("-inf")]


def stats_family(query: OutcomeQuery) -> str:
    if query.experiment is not None or query.variant is not None:
        return "experiment"
    return "domain" if query.site_domain is not None else "outcomes"


def plan_for(
    query: OutcomeQuery,
    *,
    family: str,
    units: tuple[str, ...],
    boundaries: list[datetime] | None = None,
    total: bool = False,
    trim: str = TRIM_ANY,
    now: datetime | None = None,
) -> Plan | None:
    """The plan answering ``query`` from ``family`` exactly (whole buckets + raw edges), or
    None if only the raw table can.

    ``total``: one answer over the whole window, so an all-time grain may serve a window
    without ``start`` and ``end``. ``boundaries``: a time series' bucket boundaries. ``trim``
    and ``now``: see ``planner.cover_window`` (``now`` only steers the cost, never the answer).
    """
    allowed = rollups.FAMILY_FILTERS[family] | {"win_status", "start", "end"}
    if query.given() - allowed:
        return None
    grains = rollups.FAMILIES[family]
    whole = total and ALL in grains and boundaries is None
    if whole and query.start is None and query.end is None:
        return Plan(family, Cover([Piece(1, ALL, MIN_TIME, MAX_TIME)]), all_time=True)
    cuts = boundaries or [query.start or MIN_TIME, query.end or MAX_TIME]
    cover = cover_window(
        cuts,
        tuple(unit for unit in units if unit in grains),
        now=stored_until(now),
        since=data_extent()[0],
        trim=trim,
        whole=whole,
    )
    if not cover.units_used:
        return None  # no whole bucket inside: the window is all edge, the raw table's
    return Plan(family, cover)
