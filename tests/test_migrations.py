"""Migrations upgrade a database that already holds outcomes, from any earlier schema."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.db import connection

from bench.harness import drop_database
from tests.factories import ROOT

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def scratch_database():
    name = f"upgrade_{uuid.uuid4().hex[:8]}"
    params = connection.get_connection_params()
    admin = psycopg.connect(**{**params, "dbname": "postgres"})
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, psycopg.connect(**{**params, "dbname": name})
    finally:
        drop_database(admin, name)  # retried while the migrating processes' sessions go away
        admin.close()


def manage(database: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBUG": "true", "DB_NAME": database, "LOG_LEVEL": "INFO"}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def store_outcomes_as_of_0003(db, currencies=("USD", "USD", "USD")) -> None:
    """Three outcomes written as the service wrote them before the rollups existed."""
    with db.transaction(), db.cursor() as cursor:
        for i, (won, price) in enumerate([(True, "0.80"), (False, "0.00"), (True, "1.25")]):
            cursor.execute(
                """INSERT INTO outcomes_auctionoutcome
                     (bid_id, user_id, site_domain, win_status, win_price, bid_price, currency, enriched,
                      user_interests, auction_timestamp, raw_data, timestamp, created_at, updated_at)
                   VALUES (%s, %s, 'news.example', %s, %s, 1.50, %s, true, '["sports"]',
                           now() - interval '3 days' + %s * interval '1 hour', '{}', now(), now(), now())""",
                [f"old-{i}", f"user-{i % 2}", won, price, currencies[i], i],
            )


def test_a_database_with_outcomes_from_before_the_rollups_upgrades_to_the_latest():
    with scratch_database() as (name, db):
        first = manage(name, "migrate", "outcomes", "0003_rollups_and_event_time")
        assert first.returncode == 0, first.stderr
        store_outcomes_as_of_0003(db)
        upgrade = manage(name, "migrate")
        assert upgrade.returncode == 0, upgrade.stderr[-3000:]
        assert "rollups computed from the outcomes stored before the migration" in upgrade.stdout + upgrade.stderr
        verify = manage(name, "verify_rollups")
        assert verify.returncode == 0 and "rollups match the raw outcomes" in verify.stdout, verify.stdout
        with db.cursor() as cursor:
            cursor.execute("SELECT sum(outcomes), sum(wins), sum(revenue_cents) FROM outcomes_rollup_day")
            assert cursor.fetchone() == (3, 2, 205)
        db.close()


def test_an_upgrade_stopped_half_way_says_how_to_finish():
    with scratch_database() as (name, db):
        assert manage(name, "migrate", "outcomes", "0003_rollups_and_event_time").returncode == 0
        store_outcomes_as_of_0003(db)
        partial = manage(name, "migrate", "outcomes", "0005_total_minute_rollup")
        assert partial.returncode == 0, partial.stderr[-3000:]
        assert "migrate to the latest migration" in partial.stdout + partial.stderr
        assert manage(name, "migrate").returncode == 0
        assert manage(name, "verify_rollups").returncode == 1  # not built: the warning said so
        assert manage(name, "rebuild_rollups").returncode == 0
        assert manage(name, "verify_rollups").returncode == 0
        db.close()


def test_rollups_stored_before_they_kept_the_currency_are_computed_again_on_upgrade():
    with scratch_database() as (name, db):
        assert manage(name, "migrate").returncode == 0
        store_outcomes_as_of_0003(db, currencies=("USD", "EUR", "GBP"))
        assert manage(name, "rebuild_rollups").returncode == 0
        # Back to the schema before the domain and interest rollups kept the currency: their
        # rows lose it, as rows written then never had it.
        back = manage(name, "migrate", "outcomes", "0013_exchange_rates")
        assert back.returncode == 0, back.stderr[-3000:]
        upgrade = manage(name, "migrate")
        assert upgrade.returncode == 0, upgrade.stderr[-3000:]
        said = upgrade.stdout + upgrade.stderr
        assert "rollups computed from the outcomes stored before the migration" in said, said
        assert "domain.hour" in said and "interest.hour" in said and "outcomes.minute" not in said, said
        verify = manage(name, "verify_rollups")
        assert verify.returncode == 0 and "rollups match the raw outcomes" in verify.stdout, verify.stdout
        with db.cursor() as cursor:
            for table in ("domain_hour", "domain_day", "domain_total", "interest_hour"):
                cursor.execute(f"SELECT array_agg(DISTINCT currency ORDER BY currency) FROM outcomes_rollup_{table}")
                assert cursor.fetchone()[0] == ["EUR", "GBP", "USD"], table
        db.close()
