"""Fitting the bid models: one W(b) per segment — every domain in a currency, and each site
domain in a currency — from the landscape rollups over whole UTC days, stored as a new
version of the segment (``BidModel``), which the API then serves (``queries.landscape``).

Segments are read one at a time from a server-side cursor, ordered, so memory holds one
segment's buckets whatever the number of domains. A domain with fewer than ``min_outcomes``
outcomes gets no model of its own (its currency's is served, marked pooled); one with fewer
than ``OWN_OUTCOMES`` is shrunk toward its currency's curve (``landscape.fit_curve``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from outcomes import grains, landscape
from outcomes.landscape import Bucket
from outcomes.models import BidModel

MIN_OUTCOMES = 200
OWN_OUTCOMES = 5000
_DOMAINS = grains.FAMILIES["landscape_domain"]["day"]
_EVERY_DOMAIN = grains.FAMILIES["landscape"]


@dataclass(frozen=True)
class FitSummary:
    segments: int  # models stored
    pooled: int  # of them shrunk toward their currency's curve
    skipped: int  # domains with too few outcomes
    outcomes: int


def _segments(statement: str, params: list, keys: int, steps: grains.Steps) -> Iterator[tuple[tuple, list[Bucket]]]:
    """(key, buckets) per segment, from rows ordered by key then cents."""
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(statement, params)
        key, buckets = None, []
        for row in cursor:
            if row[:keys] != key:
                if buckets:
                    yield key, buckets
                key, buckets = row[:keys], []
            cents, bids, wins = row[keys:]
            buckets.append(Bucket(int(cents), int(bids), int(wins), 0, grains.price_bucket(int(cents), steps)[1]))
        if buckets:
            yield key, buckets


def _next_versions() -> dict[tuple[str, str], int]:
    rows = BidModel.objects.values_list("site_domain", "currency").order_by().distinct()
    latest = {}
    for domain, currency in rows:
        top = BidModel.objects.filter(site_domain=domain, currency=currency).order_by("-version").first()
        latest[(domain, currency)] = top.version
    return latest


def _model(domain: str, currency: str, fit: landscape.Fit, version: int, start, end, pooled: bool) -> BidModel:
    return BidModel(
        site_domain=domain,
        currency=currency,
        version=version,
        method=fit.method,
        pooled=pooled,
        window_start=start,
        window_end=end,
        outcomes=fit.outcomes,
        holdout_outcomes=fit.holdout_outcomes,
        log_loss=fit.log_loss,
        empirical_log_loss=fit.empirical_log_loss,
        baseline_log_loss=fit.baseline_log_loss,
        prices=fit.curve.x,
        probabilities=fit.curve.y,
    )


def fit_bid_models(*, start: datetime, end: datetime, min_outcomes: int = MIN_OUTCOMES) -> FitSummary:
    """Fit and store a model per segment over [start, end) (whole UTC days)."""
    versions = _next_versions()
    stored: list[BidModel] = []
    count = 0
    parents: dict[str, landscape.Curve] = {}
    day, hour = _EVERY_DOMAIN["day"], _EVERY_DOMAIN["hour"]
    every = (
        f"SELECT currency, cents, sum(bids), sum(bid_wins) FROM ("
        f"SELECT currency, cents, bids, bid_wins FROM {day.table} WHERE bucket >= %s AND bucket < %s "
        f"UNION ALL SELECT currency, cents, bids, bid_wins FROM {hour.table} "
        "WHERE pending AND bucket >= %s AND bucket < %s) x GROUP BY 1, 2 HAVING sum(bids) > 0 ORDER BY 1, 2"
    )
    total = 0
    for (currency,), buckets in _segments(every, [start, end, start, end], 1, grains.PRICE_STEPS):
        fit = landscape.fit_curve(buckets, seed=zlib.crc32(currency.encode()))
        if fit is None or fit.outcomes < min_outcomes:
            continue
        parents[currency] = fit.curve
        version = versions.get(("", currency), 0) + 1
        stored.append(_model("", currency, fit, version, start, end, pooled=False))
        total += fit.outcomes
    by_domain = (
        f"SELECT site_domain, currency, cents, sum(bids), sum(bid_wins) FROM {_DOMAINS.table} "
        "WHERE bucket >= %s AND bucket < %s AND site_domain <> '' "
        "GROUP BY 1, 2, 3 HAVING sum(bids) > 0 ORDER BY 1, 2, 3"
    )
    pooled = skipped = 0
    for (domain, currency), buckets in _segments(by_domain, [start, end], 2, grains.DOMAIN_PRICE_STEPS):
        outcomes = sum(b.bids for b in buckets)
        if outcomes < min_outcomes:
            skipped += 1
            continue
        parent = parents.get(currency) if outcomes < OWN_OUTCOMES else None
        fit = landscape.fit_curve(buckets, parent=parent, seed=zlib.crc32(f"{domain} {currency}".encode()))
        version = versions.get((domain, currency), 0) + 1
        stored.append(_model(domain, currency, fit, version, start, end, pooled=parent is not None))
        pooled += parent is not None
        if len(stored) >= 1000:
            BidModel.objects.bulk_create(stored)
            count, stored = count + len(stored), []
    BidModel.objects.bulk_create(stored)
    return FitSummary(count + len(stored), pooled, skipped, total)
