"""A committed batch's live event and what each client's filters see of it (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest

from outcomes import live

pytestmark = pytest.mark.fast


def outcome(domain="a.example", currency="EUR", won=True, price="0.80", experiment=None, variant=None):
    return SimpleNamespace(
        site_domain=domain,
        currency=currency,
        win_status=won,
        win_price=Decimal(price) if won else Decimal(0),
        experiment=experiment,
        variant=variant,
    )


EVENT = live.batch_event(
    [
        outcome(),
        outcome(won=False),
        outcome(currency="USD", price="1.25"),
        outcome(domain="b.example", experiment="floor", variant="B", price="0.10"),
        outcome(domain=None),
    ],
    newest=datetime(2026, 12, 3, 5, 0, tzinfo=UTC),
)


def test_the_event_groups_the_batch_exactly():
    assert sorted(EVENT["groups"]) == sorted(
        [
            ["a.example", "EUR", "", "", 2, 1, 80],
            ["a.example", "USD", "", "", 1, 1, 125],
            ["b.example", "EUR", "floor", "B", 1, 1, 10],
            ["", "EUR", "", "", 1, 1, 80],
        ]
    )
    assert EVENT["newest_event_time"] == "2026-12-03T05:00:00Z" and EVENT["resync"] is False


@pytest.mark.parametrize(
    ("filters", "outcomes", "wins", "revenue"),
    [
        ({}, 5, 4, {"EUR": "1.70", "USD": "1.25"}),
        ({"site_domain": "a.example"}, 3, 2, {"EUR": "0.80", "USD": "1.25"}),
        ({"currency": "USD"}, 1, 1, {"USD": "1.25"}),
        ({"experiment": "floor", "variant": "B"}, 1, 1, {"EUR": "0.10"}),
        ({"site_domain": "nowhere.example"}, 0, 0, {}),
    ],
)
def test_a_client_sees_the_sums_its_filters_select(filters, outcomes, wins, revenue):
    seen = live.view(EVENT, filters)
    assert (seen["outcomes"], seen["wins"], seen["revenue"]) == (outcomes, wins, revenue)
