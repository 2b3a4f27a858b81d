"""Rollups equal the raw rows, whatever path the writes took; answers from either are the same."""

from __future__ import annotations

import dataclasses
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from django.core.management import call_command
from django.db import connection

from outcomes import queries, rollups, writes
from outcomes.messages import InvalidOutcome, parse_outcome
from outcomes.models import AuctionOutcome, DeadLetter, OutcomeRollupMinute
from outcomes.queries import sql
from outcomes.queries.prices import price_histogram
from outcomes.queries.routing import plan_for
from outcomes.simulation import OutcomeSimulator

BASE = datetime(2025, 6, 1, tzinfo=UTC)


def random_document(rng: random.Random, **overrides) -> dict:
    won = rng.random() < 0.7
    bid = Decimal(rng.randint(1, 500)) / 100
    document = {
        "bid_request_id": f"r-{uuid.UUID(int=rng.getrandbits(128))}",
        "user_id": f"user-{rng.randint(1, 80)}",
        "site_domain": rng.choice(["a.example", "b.example", "c.example", None]),
        "bid_price": str(bid),
        "win_status": won,
        "win_price": str((bid * Decimal(rng.choice(["0.5", "0.8", "1"]))).quantize(Decimal("0.01"))) if won else None,
        "currency": rng.choice(["USD", "EUR"]),
        "enriched": rng.random() < 0.8,
        "user_interests": rng.sample(["sports", "news", "travel", "food"], rng.randint(0, 3)),
    }
    if rng.random() < 0.9:  # some outcomes have no auction time: they count at storage time
        moment = BASE + timedelta(seconds=rng.randint(0, 4 * 86400))
        if rng.random() < 0.05:  # around the bucketing origin (2000-01-01), to the microsecond
            moment = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randint(-7200 * 10**6, 7200 * 10**6))
        document["auction_timestamp"] = moment.isoformat()
    document.update(overrides)
    return document


def write_stream(rng: random.Random, count: int, topic: str = "t") -> tuple[set[str], int]:
    """Batches with duplicates, conflicting duplicates and bad messages, as the consumer writes them."""
    stored: list[dict] = []
    bad = 0
    offset = 0
    for _ in range(count // 50):
        batch = writes.Batch()
        for _ in range(50):
            roll = rng.random()
            if stored and roll < 0.1:
                value = orjson.dumps(rng.choice(stored))  # an upstream duplicate
            elif stored and roll < 0.15:
                value = orjson.dumps({**rng.choice(stored), "bid_price": "999.00", "win_price": None})
                bad += 1  # conflicting duplicate (or, in-batch, a copy after the first)
            elif roll < 0.2:
                value = b'{"bid_request_id": "x", "user_id": "u", "bid_price": -1, "win_status": false}'
                bad += 1
            else:
                document = random_document(rng)
                stored.append(document)
                value = orjson.dumps(document)
            parsed = parse_outcome(value)
            position = writes.Position(topic, 0, offset)
            if isinstance(parsed, InvalidOutcome):
                batch.rejected.append(writes.Rejected(position, None, value, parsed.reason, parsed.detail))
            else:
                batch.events.append((parsed, position))
            offset += 1
        writes.write_batch(batch, consumer_group="g", stage_first=rng.random() < 0.3)
    return {d["bid_request_id"] for d in stored}, bad


QUERIES = [
    queries.OutcomeQuery(),
    queries.OutcomeQuery(win_status=True),
    queries.OutcomeQuery(win_status=False, currency="EUR"),
    queries.OutcomeQuery(enriched=True, start=BASE + timedelta(hours=5, minutes=17), end=BASE + timedelta(days=2)),
    queries.OutcomeQuery(site_domain="a.example", start=BASE + timedelta(hours=30)),
    queries.OutcomeQuery(site_domain="b.example", win_status=True, end=BASE + timedelta(days=3, hours=2)),
]


def assert_rollups_answer_like_raw():
    assert rollups.verify() == []
    for query in QUERIES:
        family = "domain" if query.site_domain else "outcomes"
        plan = plan_for(query, family=family, units=("day", "hour", "minute"))
        assert plan is not None, query
        for group in ("one", "day"):
            from_rollups = dict(sql.run(sql.measures_sql(query, plan, group=group)))
            from_raw = dict(sql.run(sql.measures_sql(query, None, group=group)))
            assert {k: v for k, v in from_rollups.items() if v.outcomes} == from_raw, (query, group)
        raw_hist = price_histogram(dataclasses.replace(query, currency="x"))
        assert raw_hist[1] == "raw"  # a filter the price rollup lacks forces the raw path
    everything = queries.OutcomeQuery()
    for by in ("site_domain", "currency", "enriched", "interest"):
        family = {"site_domain": "domain", "interest": "interest"}.get(by, "outcomes")
        plan = plan_for(everything, family=family, units=("day", "hour", "minute"))
        rolled = sql.run(sql.measures_sql(everything, plan, group="dimension", dimension=by))
        raw = dict(sql.run(sql.measures_sql(everything, None, group="dimension", dimension=by)))
        assert {k: v for k, v in rolled if v.outcomes} == raw, by
    window = queries.OutcomeQuery(start=BASE + timedelta(hours=3), end=BASE + timedelta(days=3, hours=7))
    rolled_prices, source, _sample = price_histogram(window)
    assert source.startswith("rollup:price")
    where, params = sql.raw_where(window, alias="")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (win_price*100)::int, count(*) FROM {sql.RAW} WHERE {where} AND win_status GROUP BY 1", params
        )
        assert rolled_prices["win"] == dict(cursor.fetchall())


@pytest.mark.django_db
def test_randomized_writes_of_every_kind_keep_the_rollups_exact():
    rng = random.Random(11)
    valid, bad = write_stream(rng, 3000)
    assert set(AuctionOutcome.objects.values_list("bid_id", flat=True)) == valid
    assert DeadLetter.objects.count() == bad
    assert_rollups_answer_like_raw()

    # API creates, updates (every field, and no-change ones) and deletes, through the write service.
    for _ in range(40):
        document = random_document(rng)
        document["bid_id"] = document.pop("bid_request_id")
        writes.outcome_create(document=document)
    ids = list(AuctionOutcome.objects.values_list("id", flat=True))
    applied = refused = 0
    for outcome_id in rng.sample(ids, 60):
        change = random_document(rng)
        change.pop("bid_request_id")
        fields = rng.sample(sorted(change), rng.randint(1, 4))
        try:
            writes.outcome_update(outcome_id=outcome_id, changes={f: change[f] for f in fields}, partial=True)
            applied += 1
        except writes.OutcomeInvalid:
            refused += 1  # e.g. win_price above the stored bid: refused, nothing changed
    assert applied > 30 and refused > 0
    assert writes.outcomes_delete(ids=rng.sample(ids, 200)) == 200
    assert_rollups_answer_like_raw()

    # Compaction merges without changing a sum; so does a rebuild of part of the range.
    before = OutcomeRollupMinute.objects.count()
    call_command("compact_rollups")
    assert OutcomeRollupMinute.objects.count() < before
    assert not OutcomeRollupMinute.objects.filter(pending=True).exists()
    assert_rollups_answer_like_raw()
    rollups.rebuild(since=BASE + timedelta(days=1), until=BASE + timedelta(days=2))
    assert_rollups_answer_like_raw()


@pytest.mark.django_db
def test_verify_reports_a_difference_and_rebuild_fixes_it(capsys):
    write_stream(random.Random(2), 500)
    call_command("verify_rollups")
    assert "rollups match" in capsys.readouterr().out
    OutcomeRollupMinute.objects.filter(pk=OutcomeRollupMinute.objects.order_by("id").first().pk).update(outcomes=10**6)
    with pytest.raises(Exception, match="rollup difference"):
        call_command("verify_rollups")
    assert "outcomes_rollup_minute" in capsys.readouterr().out
    call_command("rebuild_rollups")
    call_command("verify_rollups")


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_and_a_compactor_stay_exact():
    """Three writers appending to the same hot keys while compaction runs: no deadlock, no loss."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(seed: int) -> None:
        try:
            rng = random.Random(seed)
            for i in range(12):
                batch = writes.Batch()
                for j in range(100):
                    document = random_document(rng, auction_timestamp=(BASE + timedelta(seconds=j)).isoformat())
                    position = writes.Position(f"w{seed}", 0, i * 100 + j)
                    batch.events.append((parse_outcome(orjson.dumps(document)), position))
                writes.write_batch(batch, consumer_group=f"g{seed}")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    def compactor() -> None:
        try:
            while not stop.is_set():
                rollups.compact()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(3)]
    background = threading.Thread(target=compactor)
    background.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    background.join(timeout=60)
    assert not errors, errors
    assert AuctionOutcome.objects.count() == 3600
    assert rollups.verify() == []


@pytest.mark.django_db(transaction=True)
def test_verify_finds_nothing_while_a_writer_keeps_writing():
    """Each grain is read twice (raw rows, then rollups): without one snapshot for both, a
    batch committed in between shows up as a difference that is not there."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            rng = random.Random(5)
            i = 0
            while not stop.is_set():
                batch = writes.Batch()
                for j in range(50):
                    document = random_document(rng, auction_timestamp=(BASE + timedelta(seconds=j)).isoformat())
                    batch.events.append((parse_outcome(orjson.dumps(document)), writes.Position("v", 0, i * 50 + j)))
                writes.write_batch(batch, consumer_group="verify-while-writing")
                i += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        found = [rollups.verify() for _ in range(5)]
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not errors, errors
    assert AuctionOutcome.objects.count() > 0
    assert found == [[]] * 5


def test_simulated_stream_in_order_spans_the_window():
    stream = list(OutcomeSimulator(seed=1).stream(count=1000, days=2, in_order=True, now=BASE))
    times = [datetime.fromisoformat(m["auction_timestamp"].replace("Z", "+00:00")) for m in stream]
    assert BASE - timedelta(days=2) <= times[0] < BASE - timedelta(days=1, hours=23)
    assert times[-1] <= BASE
    assert all(b - a < timedelta(seconds=180) for a, b in zip(times, times[1:], strict=False))


@pytest.mark.django_db
def test_rebuild_visits_only_days_with_data(outcome_factory):
    outcome_factory(2, auction_timestamp=datetime(2000, 1, 1, 0, 30, tzinfo=UTC))
    outcome_factory(3, auction_timestamp=BASE + timedelta(hours=5))
    outcome_factory(1, auction_timestamp=BASE + timedelta(days=1, hours=23))
    assert rollups.rebuild() == 3  # not the 9,000-odd days in between
    assert rollups.verify() == []


@pytest.mark.django_db(transaction=True)
def test_the_total_minute_migration_fills_it_from_the_minute_grain(outcome_factory):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    outcome_factory(3, auction_timestamp=BASE + timedelta(minutes=5, seconds=7))
    outcome_factory(2, auction_timestamp=BASE + timedelta(hours=2), win_status=False, win_price=None)
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("outcomes")
    try:
        MigrationExecutor(connection).migrate([("outcomes", "0004_build_rollups")])
        MigrationExecutor(connection).migrate([("outcomes", "0005_total_minute_rollup")])
        # The schema of 0005, read as it is (the live models are of the latest).
        with connection.cursor() as cursor:
            cursor.execute("SELECT outcomes FROM outcomes_rollup_total_minute ORDER BY 1")
            assert [count for (count,) in cursor.fetchall()] == [2, 3]
    finally:
        MigrationExecutor(connection).migrate(latest)
    # Back at the latest (the executor sends no post_migrate: the grains migrated since are
    # computed as `migrate` would), the total minute grain still agrees with the raw rows.
    rollups.rebuild()
    assert rollups.verify() == []
