"""Report selectors: ``stats``, ``daily_stats``, ``timeseries`` and ``breakdown``.

Each takes a validated ``OutcomeQuery``, asks ``routing`` for a plan (rollup buckets plus raw
edges, or the raw table alone), runs it (``sql``) and shapes the answer (``measures``).
Returns (answer, source): the source is what ``X-Report-Source`` says.

``convert_to``: money figures in that currency, each outcome's at the rate of its UTC day
(``outcomes.money``); only families that keep the currency can answer it, others leave it
to the raw table. The answer names its currency (``currency``: null when not converted).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from analytics.dbrouting import read_db
from outcomes.queries import calendar, measures, sql
from outcomes.queries.measures import ZERO, Measures
from outcomes.queries.prices import percentiles, price_histogram
from outcomes.queries.query import OutcomeQuery
from outcomes.queries.routing import UNITS_UP_TO, plan_for, stats_family
from outcomes.rollups import FAMILY_FILTERS

BREAKDOWN_DIMENSIONS = ("site_domain", "currency", "enriched", "interest", "experiment", "variant")
BREAKDOWN_ORDERS = ("revenue", "wins", "outcomes", "win_rate")
# Exact orders (win rate as an exact fraction, not the rounded figure shown); ties go to
# more outcomes, then to the value in code-point order.
_BREAKDOWN_ORDER = {"revenue": "r", "wins": "w", "outcomes": "o", "win_rate": "w * 100.0 / o"}
_BREAKDOWN_FAMILY = {
    "site_domain": "domain",
    "interest": "interest",
    "experiment": "experiment",
    "variant": "experiment",
}


def _plan(query: OutcomeQuery, family: str, convert_to: str | None, **options):
    """``routing.plan_for``; converting money, only from grains that keep the currency and
    the day (never an all-time grain), else from the raw table (None)."""
    if convert_to is not None:
        if "currency" not in FAMILY_FILTERS[family]:
            return None
        options["total"] = False
    return plan_for(query, family=family, **options)


def _money_unit(query: OutcomeQuery, convert_to: str | None) -> dict:
    """What an answer's money is in: ``currency`` (the target when converted, else the one
    currency of the matching outcomes, else null) and ``mixed_currencies`` (unconverted sums
    of several currencies). Unconverted and unfiltered by currency, one more rollup read."""
    if convert_to is not None or query.currency is not None:
        return {"currency": convert_to or query.currency, "mixed_currencies": False}
    plan = plan_for(query, family=stats_family(query), units=UNITS_UP_TO[None], total=True)
    rows = sql.run(sql.measures_sql(query, plan, group="dimension", dimension="currency"))
    seen = sorted(key for key, vec in rows if vec.outcomes)
    return {"currency": seen[0] if len(seen) == 1 else None, "mixed_currencies": len(seen) > 1}


def _measures_one(query: OutcomeQuery, units: tuple[str, ...], convert_to: str | None) -> tuple[Measures, str]:
    plan = _plan(query, stats_family(query), convert_to, units=units, total=True)
    rows = sql.run(sql.measures_sql(query, plan, group="one", convert_to=convert_to))
    return (rows[0][1] if rows else ZERO), (plan.source if plan else "raw")


def outcome_stats(*, query: OutcomeQuery, convert_to: str | None = None) -> tuple[dict, str]:
    """Totals, averages, eCPM, shading and price percentiles over the filtered outcomes."""
    totals, source = _measures_one(query, UNITS_UP_TO[None], convert_to)
    stats = measures.stats(totals)
    stats.update(_money_unit(query, convert_to))
    histogram, price_source, sample = price_histogram(query, matching=totals.outcomes)
    stats["win_price_percentiles"] = percentiles(histogram["win"])
    stats["bid_price_percentiles"] = percentiles(histogram["bid"])
    stats["percentiles_sample"] = sample
    return stats, source if price_source == source else f"{source}; prices: {price_source}"


def outcome_daily_stats(*, query: OutcomeQuery, convert_to: str | None = None) -> tuple[list[dict], str]:
    """The stats measures per UTC day of the event time, oldest first; days without outcomes are left out."""
    plan = _plan(query, stats_family(query), convert_to, units=UNITS_UP_TO["day"])
    rows = sql.run(sql.measures_sql(query, plan, group="day", convert_to=convert_to))
    unit = _money_unit(query, convert_to) if rows else {}
    days = [
        {"date": key.date().isoformat(), **measures.stats(vec), **unit} for key, vec in sorted(rows) if vec.outcomes
    ]
    return days, plan.source if plan else "raw"


def outcome_timeseries(
    *, query: OutcomeQuery, boundaries: list[datetime], granularity: str, tz: ZoneInfo, convert_to: str | None = None
) -> tuple[dict, str]:
    """Measures per bucket, every bucket present (zeros where nothing happened), labelled in ``tz``.

    Buckets are [Bi, Bi+1) of ``boundaries`` (``calendar.timeseries_buckets``); the first and
    last may cover only part of their calendar bucket (``partial``).
    """
    windowed = replace(query, start=boundaries[0], end=boundaries[-1])
    plan = None
    if granularity == "minute" and convert_to is None:
        # Without currency/enriched filters: 1,440 rows a day, not one per combination.
        plan = plan_for(windowed, family="total", units=("minute",), boundaries=boundaries)
    if plan is None:
        plan = _plan(windowed, stats_family(query), convert_to, units=UNITS_UP_TO[granularity], boundaries=boundaries)
    by_index: dict[int, Measures] = {}
    if plan is not None:
        # One row per rollup bucket, each inside one series bucket: placed here by bisection
        # (cheaper than width_bucket() over a long array). Buckets come as epoch seconds.
        cuts = [moment.timestamp() for moment in boundaries]
        built = sql.measures_sql(windowed, plan, group="row", read_raw=False, convert_to=convert_to)
        for epoch, vec in sql.run(built):
            index = bisect_right(cuts, epoch)
            by_index[index] = measures.total((by_index[index], vec)) if index in by_index else vec
    if plan is None or plan.edges or plan.trims:
        built = sql.measures_sql(
            windowed, plan, group="buckets", boundaries=boundaries, read_rollups=False, convert_to=convert_to
        )
        for index, vec in sql.run(built):
            by_index[index] = measures.total((by_index[index], vec)) if index in by_index else vec
    # A bucket read whole for the window's first or last edge starts before the window (or its
    # trimmed rest lies after it): those rows belong to the first and last series buckets.
    last = len(boundaries) - 1
    for outside, inside in ((0, 1), (last + 1, last)):
        if outside in by_index:
            vec = by_index.pop(outside)
            by_index[inside] = measures.total((by_index[inside], vec)) if inside in by_index else vec
    label = calendar.labeller(tz)
    first = calendar.bucket_start(boundaries, granularity, tz)
    last = calendar.bucket_end(boundaries, granularity, tz)
    nominal = [first, *boundaries[1:-1], last]
    labels = [label(moment) for moment in nominal]
    buckets = []
    append = buckets.append
    count = len(boundaries) - 1
    for index in range(1, len(boundaries)):
        partial = (index == 1 and first != boundaries[0]) or (index == count and last != boundaries[-1])
        append(
            {
                "bucket": labels[index - 1],
                "bucket_end": labels[index],
                "partial": partial,
                **measures.series_point(by_index.get(index, ZERO)),
            }
        )
    return {
        "granularity": granularity,
        "tz": str(tz),
        **_money_unit(windowed, convert_to),
        "start": label(boundaries[0]),
        "end": label(boundaries[-1]),
        "buckets": buckets,
    }, plan.source if plan else "raw"


def outcome_breakdown(
    *, query: OutcomeQuery, by: str, order: str, limit: int, convert_to: str | None = None
) -> tuple[dict, str]:
    """Exact top ``limit`` values of ``by`` by ``order``, plus one ``others`` row: rows + others = total.

    By interest, an outcome counts once under each of its interests ('' for none), so the
    total is of outcome-interest pairs.
    """
    family = _BREAKDOWN_FAMILY.get(by, "outcomes")
    plan = _plan(query, family, convert_to, units=UNITS_UP_TO[None], total=True)
    built = sql.measures_sql(query, plan, group="dimension", dimension=by, convert_to=convert_to)
    top: list[tuple[object, Measures]] = []
    rest, rest_values = ZERO, 0
    if built is not None:
        # Ranked in the database: thousands of domains come back as limit + 1 rows.
        statement, params = built
        columns = ", ".join(measures.COLUMNS)
        # Converted money is exact numeric cents, and a last column names a missing rate.
        sums, missing = (measures.EXACT_SUMS, ", min(m)") if convert_to else (measures.SUMS, "")
        with read_db().cursor() as cursor:
            cursor.execute(
                f"SELECT CASE WHEN rn <= %s THEN k END, rn <= %s, min(rn), count(*), {sums}{missing} FROM ("
                f"SELECT *, row_number() OVER (ORDER BY {_BREAKDOWN_ORDER[order]} DESC, o DESC, "
                f'k::text COLLATE "C") AS rn FROM ({statement}) a(k, {columns}{", m" if missing else ""}) '
                "WHERE o > 0) ranked GROUP BY 1, 2 ORDER BY 3",
                [limit, limit, *params],
            )
            rows = cursor.fetchall()
        if convert_to:
            sql.check_rates(row[-1] for row in rows)
            rows = [row[:-1] for row in rows]
        for key, is_top, _rank, values, *vec in rows:
            if is_top:
                top.append((key, Measures(*vec)))
            else:
                rest, rest_values = Measures(*vec), values
    total = measures.total([rest, *(vec for _key, vec in top)])
    return {
        "by": by,
        "order": order,
        "limit": limit,
        **_money_unit(query, convert_to),
        "rows": [{by: key, **measures.breakdown_row(vec)} for key, vec in top],
        "others": {**measures.breakdown_row(rest), "values": rest_values},
        "total": {**measures.breakdown_row(total), "values": len(top) + rest_values},
    }, plan.source if plan else "raw"
