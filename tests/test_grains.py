"""The rollup catalogue (outcomes.grains): one declaration per grain, everything else derived.

The last test is the worked example of docs/architecture.md ("Adding a rollup grain"): a
grain declared here, its table created as its migration would, and the write path, compaction,
verify and rebuild keep it exact with no other change.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection

from outcomes import grains, models, rollups, writes
from outcomes.grains import CURRENCY, GRAINS, Grain

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.fast
def test_every_grain_has_its_model_and_the_documented_table():
    for grain in GRAINS:
        model = models.ROLLUP_MODELS[grain.key]
        assert model.__name__ == grain.model and model._meta.db_table == grain.table
        assert {f.name for f in model._meta.fields} >= {"bucket", "pending", *grain.dims, *grain.values.names}
    docs = (ROOT / "docs" / "architecture.md").read_text()
    assert grains.catalogue_table() in docs, "docs/architecture.md: paste grains.catalogue_table() anew"


@pytest.mark.fast
def test_the_filters_a_family_applies_come_from_its_dimensions():
    assert grains.FAMILY_FILTERS["outcomes"] == {"currency", "enriched"}
    assert grains.FAMILY_FILTERS["domain"] == {"site_domain", "currency"}
    assert grains.FAMILY_FILTERS["interest"] == {"currency"} and grains.FAMILY_FILTERS["price"] == set()


@pytest.mark.fast
def test_the_write_statement_holds_every_grain_written_by_rows_or_summed():
    statement = rollups.deltas.deltas_statement("SELECT 1", 1)
    for grain in GRAINS:
        written = grain.written_by_rows or grain.summed_from
        assert (f"INSERT INTO {grain.table} " in statement) == bool(written), grain.key


@pytest.fixture
def a_new_grain(monkeypatch):
    """Revenue by currency and hour, declared as a new grain would be, and its table created
    as its migration (``makemigrations``) would create it."""
    grain = Grain(
        "currency", "hour", f"CurrencyRollupHour{uuid.uuid4().hex[:6]}", "rollup_test_currency_hour", (CURRENCY,)
    )
    model = models._rollup_model(grain)
    monkeypatch.setattr(grains, "GRAINS", (*GRAINS, grain))
    monkeypatch.setattr(grains, "BY_KEY", {**grains.BY_KEY, grain.key: grain})
    monkeypatch.setattr(grains, "FAMILIES", {**grains.FAMILIES, "currency": {"hour": grain}})
    with connection.schema_editor() as editor:
        editor.create_model(model)
    yield grain
    with connection.schema_editor() as editor:
        editor.delete_model(model)
    del apps.all_models["outcomes"][model._meta.model_name]
    apps.clear_cache()


def sums_by_currency_hour(cursor, table: str) -> dict:
    cursor.execute(f"SELECT bucket, currency, sum(outcomes), sum(revenue_cents) FROM {table} GROUP BY 1, 2")
    return {(b, c): (n, r) for b, c, n, r in cursor.fetchall() if n or r}


@pytest.mark.django_db(transaction=True)
def test_a_grain_is_one_declaration_and_its_migration(a_new_grain):
    rng = random.Random(5)
    base = datetime(2026, 11, 3, 10, tzinfo=UTC)
    documents = []
    for i in range(300):
        won = rng.random() < 0.5
        price = Decimal(rng.randint(1, 500)) / 100
        documents.append(
            {
                "bid_id": f"grain-{i}",
                "user_id": f"u{i % 17}",
                "win_status": won,
                "bid_price": str(price),
                "win_price": str(price) if won else "0",
                "currency": rng.choice(["USD", "EUR", "GBP"]),
                "auction_timestamp": (base + timedelta(minutes=rng.randint(0, 300))).isoformat(),
            }
        )
    for document in documents:
        writes.outcome_create(document=document)
    writes.outcomes_delete(ids=[o.id for o in models.AuctionOutcome.objects.order_by("id")[:40]])
    outcome = models.AuctionOutcome.objects.order_by("id").last()
    writes.outcome_update(outcome_id=outcome.id, changes={"currency": "JPY"}, partial=True)
    rollups.compact()
    assert rollups.verify() == []  # the new grain is compared with the raw rows too
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT date_trunc('hour', event_time, 'UTC'), currency, count(*), "
            "(coalesce(sum(win_price) FILTER (WHERE win_status), 0) * 100)::bigint "
            "FROM outcomes_auctionoutcome GROUP BY 1, 2"
        )
        expected = {(b, c): (n, r) for b, c, n, r in cursor.fetchall()}
        assert sums_by_currency_hour(cursor, a_new_grain.table) == expected
        cursor.execute(f"DELETE FROM {a_new_grain.table}")
    assert rollups.verify()  # emptied: verify sees it …
    rollups.rebuild()
    assert rollups.verify() == []  # … and rebuild fills it from the raw rows
    with connection.cursor() as cursor:
        assert sums_by_currency_hour(cursor, a_new_grain.table) == expected
