"""Live updates: what a committed batch changed, as a small event (pure).

After each committed batch the consumer publishes one event to a Redis stream
(``outcomes.ingest.live``): the batch's outcomes, wins and revenue per (site domain,
currency, experiment, variant) group, and its newest event time. A live server gives each
client the sums of the groups its filters select (``view``), so the stream honours the
reports' filters without a query per client. A batch that left out erased users' outcomes
says ``resync``: the client refetches from the reports rather than count what was not
stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from outcomes.buckets import iso_utc

# The filters the stream takes (the reports' names); a group is (site_domain, currency,
# experiment, variant).
FILTERS = ("site_domain", "currency", "experiment", "variant")
ZERO = Decimal(0)


def batch_event(events: Iterable, *, newest: datetime | None, resync: bool = False) -> dict:
    """The event of a committed batch of ``OutcomeEvent``s."""
    groups: dict[tuple, list] = {}
    find = groups.get
    for event in events:  # on ingestion's path: kept to the fewest operations per event
        key = (event.site_domain or "", event.currency, event.experiment or "", event.variant or "")
        sums = find(key)
        if sums is None:
            sums = groups[key] = [0, 0, ZERO]
        sums[0] += 1
        if event.win_status:
            sums[1] += 1
            sums[2] += event.win_price
    return {
        "newest_event_time": iso_utc(newest),
        "resync": resync,
        "groups": [[*key, outcomes, wins, int(revenue * 100)] for key, (outcomes, wins, revenue) in groups.items()],
    }


def view(event: dict, filters: dict[str, str]) -> dict:
    """What ``event`` changed for a client with ``filters`` (names of ``FILTERS``): outcomes,
    wins, revenue per currency (as decimal strings: exact), the newest event time."""
    outcomes = wins = 0
    revenue: dict[str, int] = {}  # every currency of the matching outcomes, won or not
    wanted = [(FILTERS.index(name), value) for name, value in filters.items()]
    for group in event["groups"]:
        if all(group[index] == value for index, value in wanted):
            outcomes += group[4]
            wins += group[5]
            revenue[group[1]] = revenue.get(group[1], 0) + group[6]
    return {
        "outcomes": outcomes,
        "wins": wins,
        "revenue": {code: f"{Decimal(cents) / 100:.2f}" for code, cents in sorted(revenue.items())},
        "newest_event_time": event["newest_event_time"],
        "resync": event["resync"],
    }
