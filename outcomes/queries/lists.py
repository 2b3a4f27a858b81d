"""List selectors: the outcomes a list pages through, and how many match.

A list's ``count`` is exact when it is cheap — from the rollups (plus raw edges) when they
cover the filters, or from the raw rows when at most ``cap`` match — and otherwise the
planner's estimate, marked as one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from django.db.models import QuerySet

from analytics.dbrouting import read_db
from outcomes.models import AuctionOutcome, RawRetention
from outcomes.queries import sql
from outcomes.queries.query import WINNERS, OutcomeQuery
from outcomes.queries.routing import UNITS_UP_TO, plan_for, stats_family

COUNT_CAP = 10_000


def outcome_list(*, winners_only: bool = False) -> QuerySet[AuctionOutcome]:
    """The outcomes a list pages through, without ``raw_data`` (up to 64 KB a row, never in
    an answer: a 1,000-row page would hold megabytes of it)."""
    queryset = AuctionOutcome.objects.defer("raw_data")
    if winners_only:
        queryset = queryset.filter(**WINNERS)
    return queryset


def outcome_count(*, query: OutcomeQuery, cap: int = COUNT_CAP) -> tuple[int, bool, str]:
    """How many outcomes match: (count, is_estimate, source)."""
    horizon = raw_horizon()
    if horizon is not None and (query.start is None or query.start < horizon):
        # Rollups remember pruned outcomes; a list only has the raw rows, which start here.
        query = replace(query, start=horizon)
    plan = plan_for(query, family=stats_family(query), units=UNITS_UP_TO[None], total=True)
    if plan is not None:
        rows = sql.run(sql.measures_sql(query, plan, group="one"))
        return (rows[0][1].outcomes if rows else 0), False, plan.source
    where, params = sql.raw_where(query, alias="")
    with read_db().cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {sql.RAW} WHERE {where} LIMIT %s) capped", [*params, cap + 1]
        )
        count = cursor.fetchone()[0]
        if count <= cap:
            return count, False, "raw"
        cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {sql.RAW} WHERE {where}", params)
        plan_json = cursor.fetchone()[0]
    estimate = plan_json[0]["Plan"]["Plan Rows"] if isinstance(plan_json, list) else cap + 1
    return max(int(estimate), cap + 1), True, "estimate"


def raw_horizon() -> datetime | None:
    """The event time raw outcomes start at, if ``prune_outcomes`` has deleted older ones."""
    with read_db().cursor() as cursor:
        cursor.execute(f"SELECT before FROM {RawRetention._meta.db_table} WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row else None
