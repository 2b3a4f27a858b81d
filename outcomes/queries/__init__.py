"""Selectors: every read and aggregation over auction outcomes (HackSoft's "selectors read").

Keyword-only arguments, plain return values ready for JSON, no HTTP. Reports take a
validated ``OutcomeQuery`` and go through one router (``routing``): the rollups answer the
whole buckets of a window and the raw table its edges (``planner``), or the raw table answers
alone when a filter needs it. Each answer says which in its source (``X-Report-Source``).

Modules:

* ``query`` — ``OutcomeQuery``, the validated filters [pure];
* ``planner`` — a window as whole rollup buckets plus raw edges [pure];
* ``calendar`` — a time series' bucket boundaries in a time zone, and their labels [pure];
* ``measures`` — the ``Measures`` every report sums, and the figures derived from them [pure];
* ``routing`` — which rollup family answers a query, and its plan;
* ``sql`` — a plan as SQL, run on the read database;
* ``reports``, ``prices``, ``reach``, ``lists`` — the selectors the API calls.
"""

from outcomes.queries.calendar import GRANULARITIES, MAX_BUCKETS, TooManyBuckets, timeseries_buckets
from outcomes.queries.lists import outcome_count, outcome_list, raw_horizon
from outcomes.queries.prices import outcome_price_histogram, sample_rank_error
from outcomes.queries.query import OutcomeQuery
from outcomes.queries.reach import outcome_reach
from outcomes.queries.reports import (
    BREAKDOWN_DIMENSIONS,
    BREAKDOWN_ORDERS,
    outcome_breakdown,
    outcome_daily_stats,
    outcome_stats,
    outcome_timeseries,
)

__all__ = [
    "BREAKDOWN_DIMENSIONS",
    "BREAKDOWN_ORDERS",
    "GRANULARITIES",
    "MAX_BUCKETS",
    "OutcomeQuery",
    "TooManyBuckets",
    "outcome_breakdown",
    "outcome_count",
    "outcome_daily_stats",
    "outcome_list",
    "outcome_price_histogram",
    "outcome_reach",
    "outcome_stats",
    "outcome_timeseries",
    "raw_horizon",
    "sample_rank_error",
    "timeseries_buckets",
]
