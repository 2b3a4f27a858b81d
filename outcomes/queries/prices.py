"""Price distributions: the counts per cent behind ``stats``' percentiles and ``histogram``.

Exact from the price rollups (buckets) plus the raw rows of the window's edges; with a
filter the price rollups lack, from the raw rows — exactly while at most
``RAW_PERCENTILE_LIMIT`` outcomes match, else from a uniform sample of about
``PERCENTILE_SAMPLE`` of them (the ``sample`` column: a hash of the bid id), read from a
covering index in a few milliseconds whatever the table size.

Percentiles are nearest rank, exact to the cent: the smallest price p such that at least the
given share of the prices are ≤ p (PostgreSQL's ``percentile_disc``).
"""

from __future__ import annotations

import math

from analytics.dbrouting import read_db
from outcomes.models import SAMPLE_BUCKETS, SAMPLE_INDEXED
from outcomes.queries import sql
from outcomes.queries.query import OutcomeQuery
from outcomes.queries.routing import plan_for

PERCENTILES = (50, 90, 99)
RAW_PERCENTILE_LIMIT = 20_000
PERCENTILE_SAMPLE = 10_000
# With 99% confidence (Dvoretzky–Kiefer–Wolfowitz), every percentile of a uniform sample of m
# values has, among all the values, a rank within sqrt(ln(2 / 0.01) / (2m)) of its own.
SAMPLE_CONFIDENCE = 0.99

# A raw row's contribution to the price counts: its win price (if won) and its bid price.
_RAW_PRICE_COUNTS = (
    "CROSS JOIN LATERAL (VALUES ((o.win_price * 100)::int, o.win_status::int, 0, 0), "
    "((o.bid_price * 100)::int, 0, o.win_status::int, (NOT o.win_status)::int)) v(c, ww, wb, lb)"
)


def price_histogram(
    query: OutcomeQuery, *, matching: int | None = None
) -> tuple[dict[str, dict[int, int]], str, dict | None]:
    """({"win": {cents: count}, "bid": {cents: count}}, source, sample) over the filtered
    outcomes: win prices of won auctions, bid prices of all. ``sample`` is None when exact,
    else it describes the uniform sample the counts are of (see ``PERCENTILE_SAMPLE``).

    ``matching``: how many outcomes match, if the caller knows already.
    """
    plan = plan_for(query, family="price", units=("day", "hour"), total=True)
    if plan is not None:
        return _from_plan(query, plan), plan.source, None
    if matching is None:
        from outcomes.queries.lists import outcome_count

        matching = outcome_count(query=query, cap=RAW_PERCENTILE_LIMIT)[0]
    where, params = sql.raw_where(query, alias="")
    fraction = None
    if matching > RAW_PERCENTILE_LIMIT:
        # ``sample < k`` (k a literal, so the planner matches the partial covering indexes)
        # keeps k/1024 of the rows: about PERCENTILE_SAMPLE of them, at most 1/4.
        k = min(SAMPLE_INDEXED, -(-SAMPLE_BUCKETS * PERCENTILE_SAMPLE // matching))
        where += f" AND sample < {int(k)}"
        fraction = k / SAMPLE_BUCKETS
    win: dict[int, int] = {}
    bid: dict[int, int] = {}
    with read_db().cursor() as cursor:
        # One index scan, two groupings: win prices of won auctions, bid prices of all.
        # Grouping the numeric columns as they are is cheaper than converting each row first.
        cursor.execute(
            f"SELECT GROUPING(bid_price), win_status, win_price, bid_price, count(*) FROM {sql.RAW} WHERE {where} "
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


def _from_plan(query: OutcomeQuery, plan) -> dict[str, dict[int, int]]:
    parts, params = [], []
    for sign, table, pending, ranges in sql.rollup_sources(plan):
        cond, cond_params = sql.ranges_sql(ranges)
        minus = "" if sign > 0 else "-"
        counts = f"{minus}won_at_win_price, {minus}won_at_bid_price, {minus}lost_at_bid_price"
        parts.append(f"SELECT cents, {counts} FROM {table} WHERE {pending}{cond}")
        params += cond_params
    for ranges, sign in ((plan.edges, ""), (plan.trims, "-")):  # edges added, trims subtracted
        if ranges:
            where, raw_params = sql.raw_where(query, ranges=ranges)
            parts.append(
                f"SELECT v.c, {sign}v.ww, {sign}v.wb, {sign}v.lb FROM {sql.RAW} o {_RAW_PRICE_COUNTS} WHERE {where}"
            )
            params += raw_params
    with read_db().cursor() as cursor:
        cursor.execute(
            f"SELECT c, sum(ww)::bigint, sum(wb)::bigint, sum(lb)::bigint FROM ({' UNION ALL '.join(parts)}) "
            "x(c, ww, wb, lb) GROUP BY c",
            params,
        )
        rows = cursor.fetchall()
    win: dict[int, int] = {}
    bid: dict[int, int] = {}
    for cents, won_win, won_bid, lost_bid in rows:
        if query.win_status is not False and won_win:
            win[cents] = won_win
        bid_count = (won_bid if query.win_status is not False else 0) + (
            lost_bid if query.win_status is not True else 0
        )
        if bid_count:
            bid[cents] = bid_count
    return {"win": win, "bid": bid}


def outcome_price_histogram(*, query: OutcomeQuery, price: str, bins: int) -> tuple[dict, str]:
    """Counts of ``price`` (win_price over won auctions, or bid_price) in ``bins`` equal bins
    from 0 to the 99th percentile; the last bin is open-ended and holds everything above."""
    histogram, source, sample = price_histogram(query)
    counts = histogram["win" if price == "win_price" else "bid"]
    if sample is not None:  # scaled up to estimates of the whole set's counts
        counts = {cents: round(count / sample["fraction"]) for cents, count in counts.items()}
    total = sum(counts.values())
    p99 = percentile(counts, 99, total)
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
                "lower": cents_to_float(i * width),
                "upper": None if i == bins - 1 else cents_to_float((i + 1) * width),
                "count": result[i],
            }
            for i in range(bins)
        ],
    }, source


def sample_rank_error(size: int, confidence: float = SAMPLE_CONFIDENCE) -> float:
    """The DKW bound: with this confidence, every quantile of a uniform sample of ``size``
    values lies within this rank fraction of the same quantile of the whole set."""
    return math.sqrt(math.log(2 / (1 - confidence)) / (2 * size))


def percentile(counts: dict[int, int], percent: int, total: int | None = None) -> int | None:
    """The nearest-rank ``percent`` percentile of {cents: count}, in cents (None if empty)."""
    total = sum(counts.values()) if total is None else total
    if not total:
        return None
    running = 0
    for cents in sorted(counts):
        running += counts[cents]
        if running * 100 >= percent * total:
            return cents
    return None


def percentiles(counts: dict[int, int]) -> dict:
    total = sum(counts.values())
    return {
        f"p{p}": (cents_to_float(v) if (v := percentile(counts, p, total)) is not None else None) for p in PERCENTILES
    }


def cents_to_float(value: int) -> float:
    return value / 100
