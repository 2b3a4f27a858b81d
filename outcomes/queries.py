"""Selectors: every read and aggregation over auction outcomes lives here.

Keyword-only arguments, plain return values (dicts and lists ready for JSON), no HTTP.
Reports take a validated ``OutcomeQuery`` (the list's filters plus ``start``/``end``) and go
through one router: it answers from the rollups (``outcomes.rollups``) whenever their
dimensions cover the filters and the time window splits into whole minutes, hours and days
of the rollup grains (a window is cut into the coarsest pieces that fit: days in the middle,
hours and minutes at the edges). Otherwise it reads the raw table through an index. Both
paths compute the same numbers with the same code; each answer says which one it used.

Definitions (also in the README):

* ``win_rate`` — wins / outcomes × 100, rounded to 2 decimals (0.0 with no outcomes);
* ``total_revenue`` — sum of ``win_price`` over won auctions (what was paid), 2 decimals;
* ``average_win_price`` — ``total_revenue`` / wins, 4 decimals;
* ``average_bid_price`` — mean ``bid_price`` over all outcomes, 4 decimals;
* ``ecpm`` — revenue per 1,000 won impressions: ``total_revenue`` / wins × 1000, 4 decimals;
* ``shading_ratio`` — Σ win_price / Σ bid_price over won auctions, 4 decimals (1.0: paid the bid);
* percentiles — nearest rank, exact to the cent: the smallest price p such that at least
  the given share of the prices are ≤ p (PostgreSQL's ``percentile_disc``);
* the event time of an outcome is its auction time, else the time it was stored.
"""

from __future__ import annotations

import calendar
import math
from bisect import bisect_right
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import QuerySet

from analytics.dbrouting import read_db
from outcomes import rollups
from outcomes.models import SAMPLE_BUCKETS, SAMPLE_INDEXED, AuctionOutcome, RawRetention

RAW = AuctionOutcome._meta.db_table
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)
MAX_BUCKETS = 2000  # a day of minutes, a month of hours, five years of days
GRANULARITIES = ("minute", "hour", "day", "week", "month")
BREAKDOWN_DIMENSIONS = ("site_domain", "currency", "enriched", "interest")
BREAKDOWN_ORDERS = ("revenue", "wins", "outcomes", "win_rate")
PERCENTILES = (50, 90, 99)
# Percentiles the price rollups cannot answer (a filter they lack) are computed from the raw
# rows: exactly while at most RAW_PERCENTILE_LIMIT outcomes match, else from a uniform sample
# of about PERCENTILE_SAMPLE of them (the ``sample`` column: a hash of the bid id), read from a
# covering index in a few milliseconds whatever the table size.
RAW_PERCENTILE_LIMIT = 20_000
PERCENTILE_SAMPLE = 10_000
# With 99% confidence (Dvoretzky–Kiefer–Wolfowitz), every percentile of a uniform sample of m
# values has, among all the values, a rank within sqrt(ln(2 / 0.01) / (2m)) of its own.
SAMPLE_CONFIDENCE = 0.99
DEFAULT_SPAN = {
    "minute": timedelta(hours=1),
    "hour": timedelta(days=1),
    "day": timedelta(days=30),
    "week": timedelta(weeks=12),
    "month": timedelta(days=365),
}
_UNITS_UP_TO = {
    "minute": ("minute",),
    "hour": ("hour", "minute"),
    "day": ("day", "hour", "minute"),
    "week": ("day", "hour", "minute"),
    "month": ("day", "hour", "minute"),
    None: ("day", "hour", "minute"),
}


@dataclass(frozen=True)
class OutcomeQuery:
    """The filters of a list or report, already validated."""

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


# ---------------------------------------------------------------------------- lists
def outcome_list(*, winners_only: bool = False) -> QuerySet[AuctionOutcome]:
    queryset = AuctionOutcome.objects.all()
    if winners_only:
        queryset = queryset.filter(win_status=True)
    return queryset


def outcome_count(*, query: OutcomeQuery, cap: int = 10_000) -> tuple[int, bool, str]:
    """How many outcomes match: (count, is_estimate, source).

    Exact from the rollups when they cover the filters, exact from the raw table when at
    most ``cap`` rows match, else the planner's estimate (marked as one).
    """
    horizon = raw_horizon()
    if horizon is not None and (query.start is None or query.start < horizon):
        # Rollups remember pruned outcomes; a list only has the raw rows, which start here.
        query = replace(query, start=horizon)
    plan = _plan(query, family_for=_stats_family(query), units=_UNITS_UP_TO[None], total=True)
    if plan is not None:
        rows = _run_measures(plan, query, group="one")
        return (rows[0][1][0] if rows else 0), False, plan.source
    where, params = _raw_where(query)
    with read_db().cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM (SELECT 1 FROM {RAW} WHERE {where} LIMIT %s) capped", [*params, cap + 1])
        count = cursor.fetchone()[0]
        if count <= cap:
            return count, False, "raw"
        cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {RAW} WHERE {where}", params)
        plan_json = cursor.fetchone()[0]
    estimate = plan_json[0]["Plan"]["Plan Rows"] if isinstance(plan_json, list) else cap + 1
    return max(int(estimate), cap + 1), True, "estimate"


def raw_horizon() -> datetime | None:
    """The event time raw outcomes start at, if ``prune_outcomes`` has deleted older ones."""
    with read_db().cursor() as cursor:
        cursor.execute(f"SELECT before FROM {RawRetention._meta.db_table} WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row else None


# ---------------------------------------------------------------------------- reports
def outcome_stats(*, query: OutcomeQuery) -> tuple[dict, str]:
    """Totals, averages, eCPM, shading and price percentiles over the filtered outcomes."""
    plan = _plan(query, family_for=_stats_family(query), units=_UNITS_UP_TO[None], total=True)
    if plan is not None:
        rows = _run_measures(plan, query, group="one")
        source = plan.source
    else:
        rows = _run_raw_measures(query, group="one")
        source = "raw"
    stats = _shape(rows[0][1] if rows else None)
    histogram, price_source, sample = _price_histogram(query, matching=stats["total_outcomes"])
    stats["win_price_percentiles"] = _percentiles(histogram["win"])
    stats["bid_price_percentiles"] = _percentiles(histogram["bid"])
    stats["percentiles_sample"] = sample
    return stats, source if price_source == source else f"{source}; prices: {price_source}"


def outcome_daily_stats(*, query: OutcomeQuery) -> tuple[list[dict], str]:
    """The stats measures per UTC day of the event time, oldest first; days without outcomes are left out."""
    plan = _plan(query, family_for=_stats_family(query), units=_UNITS_UP_TO["day"])
    if plan is not None:
        rows, source = _run_measures(plan, query, group="day"), plan.source
    else:
        rows, source = _run_raw_measures(query, group="day"), "raw"
    days = [{"date": key.date().isoformat(), **_shape(vec)} for key, vec in sorted(rows) if vec[0]]
    return days, source


def timeseries_buckets(
    *, granularity: str, start: datetime | None, end: datetime | None, tz: ZoneInfo, now: datetime | None = None
) -> list[datetime]:
    """Bucket boundaries B0 < … < Bn in UTC: buckets are [Bi, Bi+1), aligned to ``granularity``
    in ``tz``; the first starts at ``start`` and the last ends at ``end`` (they may be partial).

    Raises ValueError (with the parameter to blame) when there would be more than MAX_BUCKETS.
    """
    end = end or (now or datetime.now(UTC))
    start = start or end - DEFAULT_SPAN[granularity]
    if start >= end:
        raise ValueError("start", "start must be before end.")
    too_many = ValueError(
        "granularity",
        f"More than {MAX_BUCKETS} {granularity} buckets between start and end; "
        "use a coarser granularity or a shorter window.",
    )
    first = _next_local(_floor_local(start, granularity, tz), granularity, tz)
    if granularity in ("minute", "hour"):  # fixed steps in UTC: no calendar to walk
        step = timedelta(minutes=1) if granularity == "minute" else timedelta(hours=1)
        inner = -(-(end - first) // step) if first < end else 0
        if inner + 1 > MAX_BUCKETS:
            raise too_many
        return [start, *(first + step * i for i in range(inner)), end]
    boundaries = [start]
    moment = first
    while moment < end:
        boundaries.append(moment)
        if len(boundaries) > MAX_BUCKETS:
            raise too_many
        moment = _next_local(moment, granularity, tz)
    boundaries.append(end)
    return boundaries


def outcome_timeseries(*, query: OutcomeQuery, boundaries: list[datetime], granularity: str) -> tuple[list[dict], str]:
    """Measures per bucket, every bucket present (zeros where nothing happened)."""
    windowed = replace(query, start=boundaries[0], end=boundaries[-1])
    plan = None
    if granularity == "minute":  # without currency/enriched filters: 1,440 rows a day, not one per combination
        plan = _plan(windowed, family_for="total", units=("minute",), boundaries=boundaries)
    if plan is None:
        family = _stats_family(query)
        plan = _plan(windowed, family_for=family, units=_UNITS_UP_TO[granularity], boundaries=boundaries)
    if plan is not None and plan.aligned:
        # Cheaper than width_bucket() over a long array: one row per rollup bucket, placed here.
        # Rollup buckets come back as epoch seconds (cheaper than timestamps to parse).
        edges = [moment.timestamp() for moment in boundaries]
        by_index: dict[int, tuple] = {}
        for epoch, vec in _run_measures(plan, windowed, group="row"):
            index = bisect_right(edges, epoch)
            by_index[index] = _sum_vectors((by_index[index], vec)) if index in by_index else vec
        rows, source = list(by_index.items()), plan.source
    elif plan is not None:
        rows, source = _run_measures(plan, windowed, group="buckets"), plan.source
    else:
        rows, source = _run_raw_measures(windowed, group="buckets", boundaries=boundaries), "raw"
    by_bucket = dict(rows)
    labels = [moment.isoformat().replace("+00:00", "Z") for moment in boundaries]
    empty = (0, 0, 0, 0, 0, 0)
    series = []
    append = series.append
    # float arithmetic: a day of minutes is 1,440 buckets (Decimal would cost ~5 ms)
    for index in range(1, len(boundaries)):
        outcomes, wins, _enriched, revenue, bid, _won_bid = by_bucket.get(index, empty)
        append(
            {
                "bucket": labels[index - 1],
                "bucket_end": labels[index],
                "outcomes": outcomes,
                "wins": wins,
                "win_rate": round(wins * 100 / outcomes, 2) if outcomes else 0.0,
                "revenue": revenue / 100,
                "average_win_price": round(revenue / wins / 100, 4) if wins else 0.0,
                "average_bid_price": round(bid / outcomes / 100, 4) if outcomes else 0.0,
            }
        )
    return series, source


def outcome_breakdown(*, query: OutcomeQuery, by: str, order: str, limit: int) -> tuple[dict, str]:
    """Exact top ``limit`` values of ``by`` by ``order``, plus one ``others`` row: rows + others = total.

    By interest, an outcome counts once under each of its interests ('' for none), so the
    total is of outcome-interest pairs.
    """
    family = {"site_domain": "domain", "interest": "interest"}.get(by, "outcomes")
    plan = _plan(query, family_for=family, units=_UNITS_UP_TO[None], total=True)
    if plan is not None:
        built, source = _measures_sql(plan, query, group="dimension", dimension=by), plan.source
    else:
        built, source = _raw_measures_sql(query, group="dimension", dimension=by), "raw"
    top, rest, rest_values = [], (0, 0, 0, 0, 0, 0), 0
    if built is not None:
        # Ranked in the database: thousands of domains come back as limit + 1 rows.
        sql, params = built
        with read_db().cursor() as cursor:
            cursor.execute(
                f"SELECT CASE WHEN rn <= %s THEN k END, rn <= %s, min(rn), count(*), {_SUMS} FROM ("
                f"SELECT *, row_number() OVER (ORDER BY {_BREAKDOWN_ORDER[order]} DESC, o DESC, "
                f'k::text COLLATE "C") AS rn FROM ({sql}) a(k, o, w, e, r, bd, wb) WHERE o > 0'
                ") ranked GROUP BY 1, 2 ORDER BY 3",
                [limit, limit, *params],
            )
            for key, is_top, _rank, values, *vec in cursor.fetchall():
                if is_top:
                    top.append((key, tuple(vec)))
                else:
                    rest, rest_values = tuple(vec), values
    total = _sum_vectors([rest, *(vec for _key, vec in top)])
    return {
        "by": by,
        "order": order,
        "limit": limit,
        "rows": [{by: key, **_row(_shape(vec))} for key, vec in top],
        "others": {**_row(_shape(rest)), "values": rest_values},
        "total": {**_row(_shape(total)), "values": len(top) + rest_values},
    }, source


# Exact orders (win rate as an exact fraction, not the rounded figure shown); ties go to
# more outcomes, then to the value in code-point order.
_BREAKDOWN_ORDER = {"revenue": "r", "wins": "w", "outcomes": "o", "win_rate": "w * 100.0 / o"}


def outcome_price_histogram(*, query: OutcomeQuery, price: str, bins: int) -> tuple[dict, str]:
    """Counts of ``price`` (win_price over won auctions, or bid_price) in ``bins`` equal bins
    from 0 to the 99th percentile; the last bin is open-ended and holds everything above."""
    histogram, source, sample = _price_histogram(query)
    counts = histogram["win" if price == "win_price" else "bid"]
    if sample is not None:  # scaled up to estimates of the whole set's counts
        counts = {cents: round(count / sample["fraction"]) for cents, count in counts.items()}
    total = sum(counts.values())
    p99 = _percentile(counts, 99, total)
    top = max(1, p99 or 0)
    width = -(-top // bins)  # cents per bin, rounded up: bins * width >= top
    result = [0] * bins
    for cents, count in counts.items():
        result[min(bins - 1, cents // width)] += count
    return {
        "price": price,
        "count": total,
        "sample": sample,
        "bins": [
            {
                "lower": _cents(i * width),
                "upper": None if i == bins - 1 else _cents((i + 1) * width),
                "count": result[i],
            }
            for i in range(bins)
        ],
    }, source


def outcome_reach(*, query: OutcomeQuery) -> tuple[dict, str]:
    """Distinct users. From HyperLogLog sketches (relative standard error 1.6%; the bounds
    are the sketch's 95% confidence interval) when only start/end are given on whole hours;
    otherwise exact, from the raw table."""
    given = query.given() - {"start", "end"}
    if not given:
        segments = _decompose_window(query.start, query.end, ("day", "hour"))
        if segments is not None:
            import datasketches

            union = datasketches.hll_union(rollups.HLL_LG_K)
            with read_db().cursor() as cursor:
                for unit, ranges in segments.items():
                    if not ranges:
                        continue
                    cond, params = _ranges_sql(ranges)
                    cursor.execute(f"SELECT sketch FROM {rollups.FAMILIES['reach'][unit].table} WHERE {cond}", params)
                    for (blob,) in cursor.fetchall():
                        union.update(datasketches.hll_sketch.deserialize(bytes(blob)))
            estimate = union.get_estimate()
            return {
                "reach": round(estimate),
                "exact": False,
                "lower_bound": int(union.get_lower_bound(2)),
                "upper_bound": -int(-union.get_upper_bound(2) // 1),
                "relative_standard_error": round(1.04 / (1 << rollups.HLL_LG_K) ** 0.5, 4),
            }, "rollup:" + "+".join(u for u, r in segments.items() if r)
    where, params = _raw_where(query)
    with read_db().cursor() as cursor:
        cursor.execute(f"SELECT count(DISTINCT user_id) FROM {RAW} WHERE {where}", params)
        count = cursor.fetchone()[0]
    return {"reach": count, "exact": True, "lower_bound": count, "upper_bound": count}, "raw"


# ---------------------------------------------------------------------------- planning
@dataclass
class _Plan:
    family: str
    segments: dict[str, list[tuple[datetime, datetime]]]
    boundaries: list[datetime] | None
    aligned: bool = False  # every rollup row lies inside one bucket: group by row, map in Python

    @property
    def source(self) -> str:
        return f"rollup:{self.family}:" + "+".join(unit for unit, ranges in self.segments.items() if ranges)


def _stats_family(query: OutcomeQuery) -> str:
    return "domain" if query.site_domain is not None else "outcomes"


def _plan(
    query: OutcomeQuery,
    *,
    family_for: str,
    units: tuple[str, ...],
    boundaries: list[datetime] | None = None,
    total: bool = False,
) -> _Plan | None:
    """The rollup pieces that answer ``query`` exactly, or None if only the raw table can.

    ``total``: one answer over the whole window, so an all-time grain may serve a window
    without ``start`` and ``end``.
    """
    allowed = rollups.FAMILY_FILTERS[family_for] | {"win_status", "start", "end"}
    if query.given() - allowed:
        return None
    family = rollups.FAMILIES[family_for]
    if total and "all" in family and query.start is None and query.end is None and boundaries is None:
        return _Plan(family_for, {"all": [(MIN_TIME, MAX_TIME)]}, None)
    family_units = tuple(u for u in units if u in rollups.FAMILIES[family_for])
    cuts = boundaries or [query.start or MIN_TIME, query.end or MAX_TIME]
    aligned = False
    if len(cuts) > 2 and family_units and all(_on_boundary(b, family_units[0]) for b in cuts[1:-1]):
        cuts = [cuts[0], cuts[-1]]  # inner boundaries on the coarsest unit: no rollup row can straddle one
        aligned = True
    segments: dict[str, list] = {unit: [] for unit in family_units}
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        piece = _decompose(lo, hi, family_units)
        if piece is None:
            return None
        for unit, ranges in piece.items():
            _merge_into(segments[unit], ranges)
    return _Plan(family_for, segments, boundaries, aligned)


def _on_boundary(moment: datetime, unit: str) -> bool:
    """``rollups.truncate(moment, unit) == moment`` for a UTC moment, without building one
    (a day of minute buckets checks 1,440 of them)."""
    if moment.second or moment.microsecond:
        return False
    if unit == "minute":
        return True
    if moment.minute:
        return False
    return unit == "hour" or (unit == "day" and not moment.hour)


def _decompose_window(start, end, units):
    return _decompose(start or MIN_TIME, end or MAX_TIME, units)


def _decompose(lo: datetime, hi: datetime, units: tuple[str, ...]) -> dict | None:
    out: dict[str, list] = {unit: [] for unit in units}

    def cut(a: datetime, b: datetime, level: int) -> bool:
        if a >= b:
            return True
        if level == len(units):
            return False
        unit = units[level]
        inner_lo, inner_hi = _ceil(a, unit), rollups.truncate(b, unit)
        if inner_lo >= inner_hi:
            return cut(a, b, level + 1)
        out[unit].append((inner_lo, inner_hi))
        return cut(a, inner_lo, level + 1) and cut(inner_hi, b, level + 1)

    return out if cut(lo.astimezone(UTC), hi.astimezone(UTC), 0) else None


def _ceil(moment: datetime, unit: str) -> datetime:
    floor = rollups.truncate(moment, unit)
    return floor if floor == moment else floor + rollups.UNITS[unit]


def _merge_into(target: list, ranges: list) -> None:
    for lo, hi in sorted(ranges):
        if target and target[-1][1] == lo:
            target[-1] = (target[-1][0], hi)
        else:
            target.append((lo, hi))


def _ranges_sql(ranges: list[tuple[datetime, datetime]]) -> tuple[str, list]:
    conds, params = [], []
    for lo, hi in ranges:
        conds.append("(bucket >= %s AND bucket < %s)")
        params += [lo, hi]
    return "(" + " OR ".join(conds) + ")", params


# ---------------------------------------------------------------------------- measures
# A measures vector: (outcomes, wins, enriched, revenue_cents, bid_cents, won_bid_cents).
def _projection(win_status: bool | None) -> str:
    if win_status is None:
        return "outcomes, wins, enriched_outcomes, revenue_cents, bid_cents, won_bid_cents"
    if win_status:
        return "wins, wins, enriched_wins, revenue_cents, won_bid_cents, won_bid_cents"
    return "outcomes - wins, 0, enriched_outcomes - enriched_wins, 0, bid_cents - won_bid_cents, 0"


_SUMS = "sum(o)::bigint, sum(w)::bigint, sum(e)::bigint, sum(r)::bigint, sum(bd)::bigint, sum(wb)::bigint"


def _run_measures(plan: _Plan, query: OutcomeQuery, *, group: str, dimension: str | None = None) -> list:
    built = _measures_sql(plan, query, group=group, dimension=dimension)
    if built is None:
        return []
    with read_db().cursor() as cursor:
        cursor.execute(*built)
        return [(key, tuple(vec)) for key, *vec in cursor.fetchall()]


def _measures_sql(
    plan: _Plan, query: OutcomeQuery, *, group: str, dimension: str | None = None
) -> tuple[str, list] | None:
    """One row per key: (k, outcomes, wins, enriched, revenue_cents, bid_cents, won_bid_cents)."""
    parts, params = [], []
    for unit, ranges in plan.segments.items():
        if not ranges:
            continue
        grain = rollups.FAMILIES[plan.family][unit]
        sources = [(grain.table, "")]
        if grain.pending_source is not None:  # not yet folded into this grain: read it too
            sources.append((grain.pending_source.table, "pending AND "))
        for table, pending in sources:
            cond, cond_params = _ranges_sql(ranges)
            conds = [pending + cond]
            for name in sorted(rollups.FAMILY_FILTERS[plan.family]):
                value = getattr(query, name)
                if value is not None:
                    conds.append(f"{name} = %s")
                    cond_params.append(value)
            if group == "buckets":
                key, key_params = "width_bucket(bucket, %s::timestamptz[])", [plan.boundaries]
            elif group == "row":
                key, key_params = "extract(epoch FROM bucket)::bigint", []
            elif group == "day":
                key, key_params = "date_trunc('day', bucket, 'UTC')", []
            elif group == "dimension":
                key, key_params = dimension, []
            else:
                key, key_params = "1", []
            parts.append(f"SELECT {key} AS k, {_projection(query.win_status)} FROM {table} WHERE {' AND '.join(conds)}")
            params += key_params + cond_params
    if not parts:
        return None
    return f"SELECT k, {_SUMS} FROM ({' UNION ALL '.join(parts)}) x(k, o, w, e, r, bd, wb) GROUP BY k", params


_RAW_MEASURES = (
    "count(*), count(*) FILTER (WHERE win_status), count(*) FILTER (WHERE enriched), "
    "coalesce(sum(win_price) FILTER (WHERE win_status), 0) * 100, coalesce(sum(bid_price), 0) * 100, "
    "coalesce(sum(bid_price) FILTER (WHERE win_status), 0) * 100"
)


_RAW_CONDITIONS = (  # filter, column, operator
    *((name, name, "=") for name in ("bid_id", "user_id", "site_domain", "win_status", "enriched", "currency")),
    ("min_price", "win_price", ">="),
    ("max_price", "win_price", "<="),
    ("start", "event_time", ">="),
    ("end", "event_time", "<"),
)


def _raw_where(query: OutcomeQuery, table: str = "") -> tuple[str, list]:
    prefix = f"{table}." if table else ""
    conds, params = ["true"], []
    for name, column, operator in _RAW_CONDITIONS:
        value = getattr(query, name)
        if value is not None:
            conds.append(f"{prefix}{column} {operator} %s")
            params.append(value)
    return " AND ".join(conds), params


def _run_raw_measures(
    query: OutcomeQuery, *, group: str, boundaries: list[datetime] | None = None, dimension: str | None = None
) -> list:
    with read_db().cursor() as cursor:
        cursor.execute(*_raw_measures_sql(query, group=group, boundaries=boundaries, dimension=dimension))
        return [(k, tuple(int(v) for v in vec)) for k, *vec in cursor.fetchall()]


def _raw_measures_sql(
    query: OutcomeQuery, *, group: str, boundaries: list[datetime] | None = None, dimension: str | None = None
) -> tuple[str, list]:
    where, params = _raw_where(query, "o")
    source = f"{RAW} o"
    if group == "buckets":
        key, key_params = "width_bucket(o.event_time, %s::timestamptz[])", [boundaries]
    elif group == "day":
        key, key_params = "date_trunc('day', o.event_time, 'UTC')", []
    elif group == "dimension" and dimension == "interest":
        source += " LEFT JOIN LATERAL jsonb_array_elements_text(o.user_interests) i(value) ON true"
        key, key_params = "coalesce(i.value, '')", []
    elif group == "dimension":
        key, key_params = ("coalesce(o.site_domain, '')" if dimension == "site_domain" else f"o.{dimension}"), []
    else:
        key, key_params = "1", []
    return f"SELECT {key}, {_RAW_MEASURES} FROM {source} WHERE {where} GROUP BY 1", key_params + params


def _sum_vectors(vectors) -> tuple:
    return tuple(map(sum, zip(*vectors, strict=True))) or (0, 0, 0, 0, 0, 0)


def _shape(vec: tuple | None) -> dict:
    outcomes, wins, enriched, revenue, bid, won_bid = vec or (0, 0, 0, 0, 0, 0)
    return {
        "total_outcomes": outcomes,
        "total_wins": wins,
        "total_losses": outcomes - wins,
        "win_rate": round(wins * 100 / outcomes, 2) if outcomes else 0.0,
        "total_revenue": float(Decimal(revenue) / 100),
        "average_win_price": _ratio(revenue, wins * 100, 4),
        "average_bid_price": _ratio(bid, outcomes * 100, 4),
        "enriched_count": enriched,
        "ecpm": _ratio(revenue * 1000, wins * 100, 4),
        "shading_ratio": _ratio(revenue, won_bid, 4),
    }


def _row(shaped: dict) -> dict:
    return {
        "outcomes": shaped["total_outcomes"],
        "wins": shaped["total_wins"],
        "win_rate": shaped["win_rate"],
        "revenue": shaped["total_revenue"],
        "average_win_price": shaped["average_win_price"],
        "ecpm": shaped["ecpm"],
    }


def _ratio(numerator: int, denominator: int, places: int) -> float:
    if not denominator:
        return 0.0
    return float(round(Decimal(numerator) / Decimal(denominator), places))


# ---------------------------------------------------------------------------- prices
def _price_plan(query: OutcomeQuery) -> _Plan | None:
    return _plan(query, family_for="price", units=("day", "hour"), total=True)


def _price_histogram(
    query: OutcomeQuery, *, matching: int | None = None
) -> tuple[dict[str, dict[int, int]], str, dict | None]:
    """({"win": {cents: count}, "bid": {cents: count}}, source, sample) over the filtered
    outcomes: exact from the price rollups or the raw rows, or (``sample`` not None) the
    counts of a uniform sample of the raw rows, see ``PERCENTILE_SAMPLE``.

    ``matching``: how many outcomes match, if the caller knows already.
    """
    win: dict[int, int] = {}
    bid: dict[int, int] = {}
    plan = _price_plan(query)
    if plan is not None:
        parts, params = [], []
        for unit, ranges in plan.segments.items():
            if not ranges:
                continue
            grain = rollups.FAMILIES["price"][unit]
            sources = [(grain.table, "")]
            if grain.pending_source is not None:
                sources.append((grain.pending_source.table, "pending AND "))
            for table, pending in sources:
                cond, cond_params = _ranges_sql(ranges)
                parts.append(
                    "SELECT cents, won_at_win_price, won_at_bid_price, lost_at_bid_price "
                    f"FROM {table} WHERE {pending}{cond}"
                )
                params += cond_params
        rows = []
        if parts:
            with read_db().cursor() as cursor:
                cursor.execute(
                    f"SELECT c, sum(ww)::bigint, sum(wb)::bigint, sum(lb)::bigint FROM ({' UNION ALL '.join(parts)}) "
                    "x(c, ww, wb, lb) GROUP BY c",
                    params,
                )
                rows = cursor.fetchall()
        for cents, won_win, won_bid, lost_bid in rows:
            if query.win_status is not False and won_win:
                win[cents] = won_win
            bid_count = (won_bid if query.win_status is not False else 0) + (
                lost_bid if query.win_status is not True else 0
            )
            if bid_count:
                bid[cents] = bid_count
        return {"win": win, "bid": bid}, plan.source, None
    if matching is None:
        matching = outcome_count(query=query, cap=RAW_PERCENTILE_LIMIT)[0]
    where, params = _raw_where(query)
    fraction = None
    if matching > RAW_PERCENTILE_LIMIT:
        # ``sample < k`` (k a literal, so the planner matches the partial covering indexes)
        # keeps k/1024 of the rows: about PERCENTILE_SAMPLE of them, at most 1/4.
        k = min(SAMPLE_INDEXED, -(-SAMPLE_BUCKETS * PERCENTILE_SAMPLE // matching))
        where += f" AND sample < {int(k)}"
        fraction = k / SAMPLE_BUCKETS
    with read_db().cursor() as cursor:
        # One index scan, two groupings: win prices of won auctions, bid prices of all.
        # Grouping the numeric columns as they are is cheaper than converting each row first.
        cursor.execute(
            f"SELECT GROUPING(bid_price), win_status, win_price, bid_price, count(*) FROM {RAW} WHERE {where} "
            "GROUP BY GROUPING SETS ((win_status, win_price), (win_status, bid_price))",
            params,
        )
        for by_win_price, won, win_price, bid_price, count in cursor.fetchall():
            if by_win_price:
                if won:
                    win[int(win_price * 100)] = count
            else:
                cents = int(bid_price * 100)
                bid[cents] = bid.get(cents, 0) + count
    if fraction is None:
        return {"win": win, "bid": bid}, "raw", None
    outcomes, wins = sum(bid.values()), sum(win.values())
    smallest = min(n for n in (wins, outcomes) if n) if outcomes else 0
    return (
        {"win": win, "bid": bid},
        "raw sample",
        {
            "fraction": fraction,
            "outcomes": outcomes,
            "wins": wins,
            "rank_error": round(sample_rank_error(smallest), 6) if smallest else None,
        },
    )


def sample_rank_error(size: int, confidence: float = SAMPLE_CONFIDENCE) -> float:
    """The DKW bound: with this confidence, every quantile of a uniform sample of ``size``
    values lies within this rank fraction of the same quantile of the whole set."""
    return math.sqrt(math.log(2 / (1 - confidence)) / (2 * size))


def _percentile(counts: dict[int, int], percent: int, total: int | None = None) -> int | None:
    total = sum(counts.values()) if total is None else total
    if not total:
        return None
    running = 0
    for cents in sorted(counts):
        running += counts[cents]
        if running * 100 >= percent * total:
            return cents
    return None


def _percentiles(counts: dict[int, int]) -> dict:
    total = sum(counts.values())
    return {f"p{p}": (_cents(v) if (v := _percentile(counts, p, total)) is not None else None) for p in PERCENTILES}


def _cents(value: int) -> float:
    return float(Decimal(value) / 100)


# ---------------------------------------------------------------------------- calendar
def _floor_local(moment: datetime, granularity: str, tz: ZoneInfo) -> datetime:
    local = moment.astimezone(tz)
    if granularity == "minute":
        floor = local.replace(second=0, microsecond=0)
    elif granularity == "hour":
        floor = local.replace(minute=0, second=0, microsecond=0)
    else:
        day = local.date()
        if granularity == "week":
            day -= timedelta(days=day.weekday())
        elif granularity == "month":
            day = day.replace(day=1)
        floor = datetime(day.year, day.month, day.day, tzinfo=tz)
    return floor.astimezone(UTC)


def _next_local(moment: datetime, granularity: str, tz: ZoneInfo) -> datetime:
    if granularity == "minute":
        return moment + timedelta(minutes=1)
    if granularity == "hour":
        return moment + timedelta(hours=1)
    local = moment.astimezone(tz).date()
    if granularity == "day":
        day = local + timedelta(days=1)
    elif granularity == "week":
        day = local + timedelta(days=7)
    else:
        days = calendar.monthrange(local.year, local.month)[1]
        day = local.replace(day=1) + timedelta(days=days)
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
