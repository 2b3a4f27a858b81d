"""The SQL of a plan: rollup rows for its whole buckets, raw rows for its edges (or the whole
window when no rollup answers), summed into one ``Measures`` per key.

Reads only; every statement runs on the read database (``analytics.dbrouting.read_db``).
"""

from __future__ import annotations

from datetime import date, datetime

from analytics.dbrouting import read_db
from outcomes import money, rollups
from outcomes.models import AuctionOutcome, ExchangeRate
from outcomes.queries.measures import COLUMNS, MONEY_COLUMNS, SUMS, Measures
from outcomes.queries.planner import Plan, Range
from outcomes.queries.query import CONDITIONS, OutcomeQuery
from outcomes.validation import currency_code

RAW = AuctionOutcome._meta.db_table
RATES = ExchangeRate._meta.db_table


# One raw group's measures, in ``Measures`` order (money in cents), as bigint like the rollups'
# columns: a union with rollup rows then sums bigints, not numerics (several times faster).
_RAW_MEASURES = (
    "count(*), count(*) FILTER (WHERE o.win_status), count(*) FILTER (WHERE o.enriched), "
    "(coalesce(sum(o.win_price) FILTER (WHERE o.win_status), 0) * 100)::bigint, "
    "(coalesce(sum(o.bid_price), 0) * 100)::bigint, "
    "(coalesce(sum(o.bid_price) FILTER (WHERE o.win_status), 0) * 100)::bigint"
)


def raw_where(query: OutcomeQuery, *, alias: str = "o", ranges: list[Range] | None = None) -> tuple[str, list]:
    """The query's filters on the raw table. With ``ranges``, those event-time ranges (a plan's
    edges) replace the window's ``start`` and ``end``."""
    prefix = f"{alias}." if alias else ""
    conds, params = ["true"], []
    for name, (column, operator) in CONDITIONS.items():
        if ranges is not None and name in ("start", "end"):
            continue
        value = getattr(query, name)
        if value is not None:
            conds.append(f"{prefix}{column} {operator} %s")
            params.append(value)
    if ranges is not None:
        conds.append("(" + " OR ".join(f"({prefix}event_time >= %s AND {prefix}event_time < %s)" for _ in ranges) + ")")
        params += [moment for piece in ranges for moment in piece]
    return " AND ".join(conds), params


def ranges_sql(ranges: list[Range]) -> tuple[str, list]:
    return (
        "(" + " OR ".join("(bucket >= %s AND bucket < %s)" for _ in ranges) + ")",
        [moment for piece in ranges for moment in piece],
    )


def rollup_where(query: OutcomeQuery, family: str, pending: str, ranges: list[Range]) -> tuple[str, list]:
    """The WHERE of a rollup read: the buckets in ``ranges`` (``pending``: "pending AND " for a
    finer grain's rows not folded yet) and every filter of ``query`` the family keeps."""
    cond, params = ranges_sql(ranges)
    conds = [pending + cond]
    for name in sorted(rollups.FAMILY_FILTERS[family]):
        value = getattr(query, name)
        if value is not None:
            conds.append(f"{name} = %s")
            params.append(value)
    return " AND ".join(conds), params


def rollup_sources(plan: Plan):
    """(sign, table, extra condition, ranges) for every table a plan reads, added (1) or
    subtracted (-1): each grain's own, and for a grain folded from a finer one, that grain's
    rows not folded yet."""
    for sign, by_unit in ((1, plan.cover.segments), (-1, plan.cover.subtracted)):
        for unit, ranges in by_unit.items():
            grain = rollups.FAMILIES[plan.family][unit]
            yield sign, grain.table, "", ranges
            if grain.pending_source is not None:
                yield sign, grain.pending_source.table, "pending AND ", ranges


# ---------------------------------------------------------------------------- measures
def _projection(win_status: bool | None, sign: int = 1) -> str:
    """A rollup row's measures as ``Measures`` (negated for a subtracted bucket), under a
    ``win_status`` filter (every family stores wins and losses apart, so every family answers it)."""
    if win_status is None:
        columns = ("outcomes", "wins", "enriched_outcomes", "revenue_cents", "bid_cents", "won_bid_cents")
    elif win_status:
        columns = ("wins", "wins", "enriched_wins", "revenue_cents", "won_bid_cents", "won_bid_cents")
    else:
        columns = ("outcomes - wins", "0", "enriched_outcomes - enriched_wins", "0", "bid_cents - won_bid_cents", "0")
    return ", ".join(columns if sign > 0 else (f"-({c})" for c in columns))


_ROLLUP_KEYS = {
    "one": "1",
    "day": "date_trunc('day', bucket, 'UTC')",
    "row": "extract(epoch FROM bucket)::bigint",  # every rollup row of a series lies in one bucket
}
_RAW_KEYS = {
    "one": "1",
    "day": "date_trunc('day', o.event_time, 'UTC')",
    "buckets": "width_bucket(o.event_time, %s::timestamptz[])",
    "site_domain": "coalesce(o.site_domain, '')",
    "interest": "coalesce(i.value, '')",
    "currency": "o.currency",
    "enriched": "o.enriched",
    "experiment": "coalesce(o.experiment, '')",
    "variant": "coalesce(o.variant, '')",
}


def measures_sql(
    query: OutcomeQuery,
    plan: Plan | None,
    *,
    group: str,
    dimension: str | None = None,
    boundaries: list[datetime] | None = None,
    read_rollups: bool = True,
    read_raw: bool = True,
    convert_to: str | None = None,
) -> tuple[str, list] | None:
    """One row per key: (k, outcomes, wins, enriched, revenue_cents, bid_cents, won_bid_cents).

    ``group``: ``one`` (a single row), ``day`` (UTC days), ``dimension`` (one row per value
    of ``dimension``), ``row`` (per rollup bucket, as epoch seconds; rollups only) or
    ``buckets`` (the index of the series bucket between ``boundaries``; raw only). Without a
    plan, everything comes from the raw table; with one, its buckets from the rollups
    (``read_rollups``) and its edges added and trims subtracted from the raw table
    (``read_raw``). None when nothing is to be read.

    ``convert_to``: money in that currency, each row's at the rate of its UTC day and currency
    (``converted``): the plan's family must keep the currency. A trailing column then names
    the first rate missing (``run`` raises ``money.MissingRate``).
    """
    parts, params = [], []
    split = convert_to is not None
    if plan is not None and read_rollups:
        key = dimension if group == "dimension" else _ROLLUP_KEYS.get(group)
        if split:
            key += ", (bucket AT TIME ZONE 'UTC')::date, currency"
        for sign, table, pending, ranges in rollup_sources(plan):
            where, cond_params = rollup_where(query, plan.family, pending, ranges)
            parts.append(f"SELECT {key}, {_projection(query.win_status, sign)} FROM {table} WHERE {where}")
            params += cond_params
    raw_ranges = None if plan is None else plan.edges
    if plan is None or (read_raw and raw_ranges):
        built = raw_measures_sql(
            query, group=group, dimension=dimension, boundaries=boundaries, ranges=raw_ranges, split=split
        )
        parts.append(built[0])
        params += built[1]
    if plan is not None and read_raw and plan.trims:
        built = raw_measures_sql(
            query, group=group, dimension=dimension, boundaries=boundaries, ranges=plan.trims, split=split
        )
        negated = ", ".join(f"-{c}" for c in COLUMNS)
        keys = "k, d, c" if split else "k"
        parts.append(f"SELECT {keys}, {negated} FROM ({built[0]}) t({keys}, {', '.join(COLUMNS)})")
        params += built[1]
    if not parts:
        return None
    if split:
        return converted(" UNION ALL ".join(parts), convert_to), params
    if len(parts) == 1 and plan is None:
        return parts[0], params
    columns = ", ".join(COLUMNS)
    return f"SELECT k, {SUMS} FROM ({' UNION ALL '.join(parts)}) x(k, {columns}) GROUP BY k", params


def raw_measures_sql(
    query: OutcomeQuery,
    *,
    group: str,
    dimension: str | None = None,
    boundaries: list[datetime] | None = None,
    ranges: list[Range] | None = None,
    split: bool = False,
) -> tuple[str, list]:
    """The raw table's measures per key (``split``: per key, UTC day and currency), over the
    query's window or over ``ranges``."""
    where, params = raw_where(query, ranges=ranges)
    source = f"{RAW} o"
    key = _RAW_KEYS[dimension if group == "dimension" else group]
    key_params = [boundaries] if group == "buckets" else []
    if group == "dimension" and dimension == "interest":
        source += " LEFT JOIN LATERAL jsonb_array_elements_text(o.user_interests) i(value) ON true"
    if split:
        key += ", (o.event_time AT TIME ZONE 'UTC')::date, o.currency"
    groups = "1, 2, 3" if split else "1"
    return f"SELECT {key}, {_RAW_MEASURES} FROM {source} WHERE {where} GROUP BY {groups}", key_params + params


def _rate(currency: str) -> str:
    """SQL: units of ``currency`` per euro on day ``dc.d``, the latest within the allowed age (NULL: none)."""
    return (
        f"CASE WHEN {currency} = '{money.EURO}' THEN 1::numeric ELSE (SELECT r.per_euro FROM {RATES} r "
        f"WHERE r.currency = {currency} AND r.day <= dc.d AND r.day >= dc.d - {money.MAX_RATE_AGE_DAYS} "
        "ORDER BY r.day DESC LIMIT 1) END"
    )


def factors(target: str | None, relation: str) -> str:
    """A CTE ``f(d, c, factor, missing)``: for each UTC day ``d`` and currency ``c`` of
    ``relation``, what one unit of ``c`` is worth in ``target`` that day (1 when ``target``
    is None: no conversion) and which currency's rate is missing, if one is."""
    if target is None:
        return f"f AS (SELECT DISTINCT d, c, 1::numeric AS factor, NULL::text AS missing FROM {relation})"
    if currency_code(target) != target:
        raise ValueError(f"not a currency code: {target!r}")
    to = f"'{target}'"  # three capital letters, checked above
    return (
        f"f AS (SELECT d, c, CASE WHEN c = {to} THEN 1 ELSE rt / rc END AS factor, "
        f"CASE WHEN c = {to} THEN NULL WHEN rc IS NULL THEN c WHEN rt IS NULL THEN {to} END AS missing "
        f"FROM (SELECT dc.d, dc.c, {_rate('dc.c')} AS rc, {_rate(to)} AS rt "
        f"FROM (SELECT DISTINCT d, c FROM {relation}) dc) q)"
    )


def converted(union: str, target: str) -> str:
    """Rows (k, d, c, measures…) summed per key with money in ``target``: each UTC day and
    currency's sums times that day's factor (one rate lookup per day and currency, not per
    row). Counts stay bigint, money is numeric cents; the last column names the first missing
    rate as 'YYYY-MM-DD XXX'."""
    columns = ", ".join(COLUMNS)
    sums = ", ".join(f"sum({column}) AS {column}" for column in COLUMNS)
    out = ", ".join(
        f"sum({column} * f.factor)" if column in MONEY_COLUMNS else f"sum({column})::bigint" for column in COLUMNS
    )
    return (
        f"WITH x(k, d, c, {columns}) AS ({union}), "
        f"g AS (SELECT k, d, c, {sums} FROM x GROUP BY k, d, c HAVING sum(o) <> 0), "
        f"{factors(target, 'g')} "
        f"SELECT k, {out}, min(d::text || ' ' || f.missing) FROM g JOIN f USING (d, c) GROUP BY k"
    )


def run(built: tuple[str, list] | None) -> list[tuple[object, Measures]]:
    """Run a ``measures_sql`` statement: [(key, Measures)]. Converted money stays exact
    (``Decimal`` cents); a missing rate raises ``money.MissingRate``."""
    if built is None:
        return []
    with read_db().cursor() as cursor:
        cursor.execute(*built)
        rows = cursor.fetchall()
    if rows and len(rows[0]) > len(COLUMNS) + 1:
        check_rates(missing for *_row, missing in rows)
        return [(key, Measures(int(o), int(w), int(e), r, bd, wb)) for key, o, w, e, r, bd, wb, _missing in rows]
    return [(key, Measures(*(int(v) for v in vec))) for key, *vec in rows]


def check_rates(missing) -> None:
    """Raise ``money.MissingRate`` for the first of the missing rates ('YYYY-MM-DD XXX') named."""
    named = sorted(m for m in missing if m)
    if named:
        day, currency = named[0].split(" ")
        raise money.MissingRate(date.fromisoformat(day), currency)
