"""The counts behind the bid landscape: per price bucket, the outcomes that bid in it, those
won, and the won auctions that paid a price in it — from the landscape rollups (by currency;
by site domain too when one is asked for) through the planner like every report, the raw rows
for the edges or for a filter the rollups lack.

Converted (``convert_to``), each UTC day and currency's bucket moves to the bucket of its
middle price at that day's rate: exact counts, prices to within a bucket's width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.dbrouting import read_db
from outcomes import grains, landscape
from outcomes.landscape import Bucket
from outcomes.models import BidModel
from outcomes.queries import sql
from outcomes.queries.query import OutcomeQuery
from outcomes.queries.routing import plan_for
from outcomes.rollups.deltas import grain_select

_ROW = "d, c, cents, n, k, p"


@dataclass(frozen=True)
class LandscapeCounts:
    buckets: list[Bucket]
    currencies: int
    currency: str | None  # the one currency of the outcomes, if one
    source: str


def _family(query: OutcomeQuery) -> tuple[str, tuple[str, ...]]:
    return ("landscape_domain", ("day",)) if query.site_domain is not None else ("landscape", ("day", "hour"))


def _raw_part(query: OutcomeQuery, family: str, ranges, sign: int) -> tuple[str, list]:
    """The raw rows' counts in the family's own buckets (its day grain's declaration)."""
    where, params = sql.raw_where(query, ranges=ranges)
    rows = f"SELECT {grains.DELTA_COLUMNS} FROM {sql.RAW} o WHERE {where}"
    counts = grain_select(grains.FAMILIES[family]["day"], "b", "date_trunc('day', event_time, 'UTC')", sign=sign)
    return (
        f"(WITH b AS ({rows}) SELECT (bucket AT TIME ZONE 'UTC')::date, currency, cents, bids, bid_wins, paid "
        f"FROM ({counts}) r)",
        params,
    )


def landscape_counts(*, query: OutcomeQuery, convert_to: str | None = None) -> LandscapeCounts:
    """The buckets' counts over the outcomes ``query`` matches (its ``win_status`` ignored:
    the landscape needs wins and losses). Raises ``money.MissingRate`` when converting needs
    a rate that is not loaded."""
    family, units = _family(query)
    # Unconverted, an all-time grain may answer (whole, or less what lies outside the window).
    plan = plan_for(query, family=family, units=units, total=convert_to is None)
    parts, params = [], []
    if plan is None:
        part, part_params = _raw_part(query, family, None, 1)
        parts.append(part)
        params += part_params
    else:
        untimed = query.untimed()
        for sign, table, pending, ranges in sql.rollup_sources(plan):
            where, cond_params = sql.rollup_where(query, family, pending, ranges)
            s = int(sign)
            parts.append(
                f"SELECT (bucket AT TIME ZONE 'UTC')::date, currency, cents, {s} * bids, {s} * bid_wins, {s} * paid "
                f"FROM {table} WHERE {where}"
            )
            params += cond_params
        for ranges, sign in ((plan.edges, 1), (plan.trims, -1)):
            if ranges:
                part, part_params = _raw_part(untimed, family, ranges, sign)
                parts.append(part)
                params += part_params
    steps = grains.LANDSCAPE_STEPS[family]
    union = " UNION ALL ".join(parts)
    if convert_to is None:  # no rate to look up: sum by bucket at once, days and currencies aside
        statement = (
            f"WITH x({_ROW}) AS ({union}), "
            "cur AS (SELECT c FROM x GROUP BY c HAVING sum(n) <> 0 OR sum(p) <> 0) "
            "SELECT cents, sum(n), sum(k), sum(p), (SELECT count(*) FROM cur), (SELECT min(c) FROM cur), NULL "
            "FROM x GROUP BY cents HAVING sum(n) <> 0 OR sum(p) <> 0 ORDER BY cents"
        )
        return _run(statement, params, plan, steps)
    grouped = (
        f"WITH x({_ROW}) AS ({union}), "
        "g AS (SELECT d, c, cents, sum(n) n, sum(k) k, sum(p) p FROM x GROUP BY 1, 2, 3 "
        "HAVING sum(n) <> 0 OR sum(p) <> 0), "
        f"{sql.factors(convert_to, 'g')}, "
        "info AS (SELECT count(DISTINCT c) AS currencies, min(c) AS currency, "
        "min(d::text || ' ' || f.missing) AS missing FROM g JOIN f USING (d, c))"
    )
    middle = f"((cents + ({grains.price_width_sql('cents', steps)} - 1) / 2.0) * factor)::bigint"
    moved = grains.price_bucket_sql(f"({middle})", steps)
    statement = (
        f"{grouped}, m AS (SELECT {moved} AS cents, n, k, p FROM g JOIN f USING (d, c)) "
        "SELECT cents, sum(n), sum(k), sum(p), (SELECT currencies FROM info), (SELECT currency FROM info), "
        "(SELECT missing FROM info) FROM m GROUP BY cents ORDER BY cents"
    )
    return _run(statement, params, plan, steps)


def _run(statement: str, params: list, plan, steps: grains.Steps) -> LandscapeCounts:
    with read_db().cursor() as cursor:
        cursor.execute(statement, params)
        rows = cursor.fetchall()
    source = plan.source if plan else "raw"
    if not rows:
        return LandscapeCounts([], 0, None, source)
    *_counts, currencies, currency, missing = rows[0]
    sql.check_rates([missing])
    buckets = [
        Bucket(int(cents), int(n), int(k), int(p), grains.price_bucket(int(cents), steps)[1])
        for cents, n, k, p, *_info in rows
    ]
    currencies = int(currencies or 0)
    return LandscapeCounts(buckets, currencies, currency if currencies == 1 else None, source)


# ---------------------------------------------------------------------------- the answers
def served_model(site_domain: str | None, currency: str) -> tuple[BidModel | None, bool]:
    """The latest model of the segment (site domain × currency), else of every domain in that
    currency: (model, served from the parent)."""
    own = BidModel.objects.filter(site_domain=site_domain or "", currency=currency).order_by("-version").first()
    if own is not None or not site_domain:
        return own, False
    parent = BidModel.objects.filter(site_domain="", currency=currency).order_by("-version").first()
    return parent, parent is not None


def _describe(model: BidModel, from_parent: bool) -> dict:
    return {
        "site_domain": model.site_domain or None,
        "currency": model.currency,
        "version": model.version,
        "fitted_at": model.fitted_at,
        "method": model.method,
        "outcomes": model.outcomes,
        "window_start": model.window_start,
        "window_end": model.window_end,
        "pooled": model.pooled or from_parent,
        "holdout": {
            "outcomes": model.holdout_outcomes,
            "log_loss": model.log_loss,
            "empirical_log_loss": model.empirical_log_loss,
            "baseline_log_loss": model.baseline_log_loss,
        },
    }


def _answer_currency(counts: LandscapeCounts, query: OutcomeQuery, convert_to: str | None) -> str | None:
    return convert_to or query.currency or counts.currency


def bid_landscape(
    *, query: OutcomeQuery, convert_to: str | None, auction_type: str, confidence: float = 0.95
) -> tuple[dict, str]:
    """Win rate by bid with intervals, the served W(b) at each point, and (second price) the
    market price's Kaplan–Meier distribution."""
    counts = landscape_counts(query=query, convert_to=convert_to)
    warnings: list[dict] = []

    def warn(code: str, message: str) -> None:
        warnings.append({"code": code, "message": message})

    currency = _answer_currency(counts, query, convert_to)
    mixed = convert_to is None and counts.currencies > 1
    bid_buckets = [b for b in counts.buckets if b.bids]
    n = np.array([b.bids for b in bid_buckets], dtype=np.int64)
    k = np.array([b.bid_wins for b in bid_buckets], dtype=np.int64)
    low, high = landscape.wilson(k, n, confidence) if bid_buckets else (np.array([]), np.array([]))
    points = [
        {
            "bid_price": b.cents / 100,
            "bid_price_high": (b.cents + b.width - 1) / 100,
            "outcomes": b.bids,
            "wins": b.bid_wins,
            "win_rate": round(100 * b.bid_wins / b.bids, 4),
            "ci_low": round(100 * float(lo), 4),
            "ci_high": round(100 * float(hi), 4),
        }
        for b, lo, hi in zip(bid_buckets, low, high, strict=True)
    ]
    model_answer = None
    if mixed:
        warn("mixed_currencies", "Bids in several currencies, unconverted: filter by currency, or give convert_to.")
    elif currency is None:
        pass  # nothing matched
    elif convert_to is not None and counts.currency != convert_to:
        warn("converted", "Converted prices: the fitted models are per currency; filter by currency to see one.")
    else:
        model, from_parent = served_model(query.site_domain, currency)
        if model is None:
            warn("no_model", f"No bid model for {currency} yet: run manage.py fit_bid_models (a CronJob does).")
        else:
            curve = landscape.Curve(model.prices, model.probabilities)
            model_answer = {
                **_describe(model, from_parent),
                "win_probability": [round(float(w), 6) for w in curve([b.mid for b in bid_buckets])],
            }
    market = None
    if auction_type == "second_price" and not mixed:
        found = landscape.market_price(counts.buckets)
        if found is not None:
            market = {
                "method": "kaplan-meier",
                "observed": found.observed,
                "censored": found.censored,
                "p25": found.p25,
                "median": found.median,
                "p75": found.p75,
                "distribution": [
                    {"price": round(p, 4), "cdf": round(c, 6)} for p, c in zip(found.prices, found.cdf, strict=True)
                ],
            }
    elif auction_type == "first_price":
        warn(
            "first_price",
            "First-price auctions pay the bid: a win does not reveal the market price, so its distribution "
            "is not estimated (AUCTION_TYPE).",
        )
    answer = {
        "currency": currency if not mixed else None,
        "mixed_currencies": mixed,
        "auction_type": auction_type,
        "points": points,
        "model": model_answer,
        "market_price": market,
        "warnings": warnings,
    }
    return answer, counts.source


class NoModel(Exception):
    """No fitted model serves the segment asked for."""


def optimal_bid(*, site_domain: str | None, currency: str, value: float, auction_type: str) -> dict:
    """The bid maximising expected surplus for ``value`` under the served model, and a few others."""
    model, from_parent = served_model(site_domain, currency)
    if model is None:
        raise NoModel(
            f"No bid model for {site_domain or 'every domain'} in {currency}: run manage.py fit_bid_models "
            "(a CronJob does), after outcomes in that currency are stored."
        )
    curve = landscape.Curve(model.prices, model.probabilities)
    best, others = landscape.optimal_bid(curve, value, auction_type)

    def shown(choice: landscape.BidChoice) -> dict:
        return {
            "bid": round(choice.bid, 2),
            "win_probability": round(choice.win_probability, 6),
            "expected_cost": round(choice.expected_cost, 6),
            "expected_surplus": round(choice.expected_surplus, 6),
        }

    return {
        "value": value,
        "currency": currency,
        "auction_type": auction_type,
        "optimal": shown(best),
        "alternatives": [shown(c) for c in others],
        "model": _describe(model, from_parent),
    }
