"""Retention (prune_outcomes) and erasure (erase_user) against the real database."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from rest_framework.test import APIClient

from outcomes import rollups
from outcomes.models import AuctionOutcome, DeadLetter, RawRetention

pytestmark = pytest.mark.django_db(transaction=True)
NOW = datetime.now(UTC)


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
def history(outcome_factory):
    old = outcome_factory(3, auction_timestamp=days_ago(40), user_id="old")
    older = outcome_factory(2, auction_timestamp=days_ago(35), user_id="old", win_status=False, win_price=0)
    recent = outcome_factory(4, auction_timestamp=days_ago(2), user_id="new")
    return old + older, recent


def stats() -> dict:
    return APIClient().get("/api/outcomes/stats/").json()


def test_prune_deletes_old_raw_rows_and_keeps_the_rollups(history):
    old, recent = history
    before = stats()
    call_command("prune_outcomes", "--older-than", "30d", "--batch-size", "2")
    assert set(AuctionOutcome.objects.values_list("id", flat=True)) == {row.id for row in recent}
    assert stats() == before  # the rollups are the long-term record
    cut = rollups.truncate(days_ago(30), "day")
    assert RawRetention.objects.get(id=1).before == cut
    assert rollups.verify(since=cut) == []  # from the cut on, rollups and raw rows agree
    listed = APIClient().get("/api/outcomes/").json()
    assert listed["count"] == len(recent) == len(listed["results"])  # list counts start at the cut


def test_after_a_prune_verify_and_rebuild_keep_to_the_raw_rows_left(history, outcome_factory, capsys):
    call_command("prune_outcomes", "--older-than", "30d")
    cut = rollups.truncate(days_ago(30), "day")
    # A late outcome from before the cut, stored after the prune: the rollups count it.
    outcome_factory(1, auction_timestamp=days_ago(33), user_id="late")
    kept = stats()
    assert kept["total_outcomes"] == 10
    capsys.readouterr()

    call_command("verify_rollups")  # no --since: pruned time is not reported as differences
    out = capsys.readouterr().out
    assert f"raw outcomes before {cut.date().isoformat()} were pruned" in out and "rollups match" in out

    with pytest.raises(CommandError, match=f"--since: raw outcomes before {cut.date().isoformat()} were pruned"):
        call_command("rebuild_rollups", "--since", days_ago(45).date().isoformat())
    assert stats() == kept

    call_command("rebuild_rollups")  # from the oldest raw row, the late one, but not before the cut
    assert stats() == kept
    assert rollups.verify() == []


def test_dry_run_counts_and_deletes_nothing(history, capsys):
    call_command("prune_outcomes", "--older-than", "30d", "--dry-run")
    assert "would delete 5 outcomes" in capsys.readouterr().out
    assert AuctionOutcome.objects.count() == 9
    assert not RawRetention.objects.exists()


@pytest.mark.parametrize("value", ["30", "0d", "-3d", "30 days", "1.5d"])
def test_bad_ages_are_refused(value):
    with pytest.raises(CommandError, match="--older-than"):
        call_command("prune_outcomes", "--older-than", value)


def test_prune_does_not_wait_for_ingestion(history):
    db = connection.settings_dict
    writer = psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"]
    )
    try:
        with writer.cursor() as cursor:  # an ingesting transaction, left open
            cursor.execute("SET lock_timeout = '5s'")
            cursor.execute(
                "INSERT INTO outcomes_auctionoutcome (bid_id, user_id, win_status, win_price, bid_price, currency, "
                "enriched, user_interests, raw_data) VALUES ('in-flight', 'u', false, 0, 1, 'USD', false, '[]', '{}')"
            )
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # would raise if prune had to wait
        call_command("prune_outcomes", "--older-than", "30d")
        writer.commit()
    finally:
        writer.close()
    assert AuctionOutcome.objects.filter(bid_id="in-flight").exists()
    assert AuctionOutcome.objects.count() == 5


def test_erase_user_removes_outcomes_and_dead_letters_and_keeps_rollups_exact(outcome_factory, caplog):
    outcome_factory(3, user_id="alice@example", auction_timestamp=days_ago(1))
    outcome_factory(2, user_id="alice@example", auction_timestamp=days_ago(3), win_status=False, win_price=0)
    kept = outcome_factory(2, user_id="bob", auction_timestamp=days_ago(1))
    for offset, value in enumerate(
        [b'{"user_id": "alice@example", "bid_id": "x"', b'{"user_id": "bob", "win_price": -1}', b"not json alice"]
    ):
        DeadLetter.objects.create(topic="t", partition=0, offset=offset, value=value, reason="invalid_json")
    caplog.set_level(logging.INFO, logger="outcomes.audit")

    call_command("erase_user", "alice@example")

    assert set(AuctionOutcome.objects.values_list("id", flat=True)) == {row.id for row in kept}
    assert {bytes(v) for v in DeadLetter.objects.values_list("value", flat=True)} == {
        b'{"user_id": "bob", "win_price": -1}',
        b"not json alice",  # mentions "alice" but not the user id as a JSON string
    }
    assert rollups.verify() == []
    assert stats()["total_outcomes"] == 2
    assert APIClient().get("/api/outcomes/reach/").json()["reach"] == 1
    (record,) = [r for r in caplog.records if r.name == "outcomes.audit"]
    # A keyed hash: the plain SHA-256 of a guessable id would give it away.
    assert record.user_hmac == hmac.new(settings.PRIVACY_HASH_KEY.encode(), b"alice@example", "sha256").hexdigest()
    assert record.user_hmac != hashlib.sha256(b"alice@example").hexdigest()
    assert record.outcomes == 5 and record.dead_letters == 1
    assert "alice" not in record.getMessage() and "alice" not in str(record.__dict__.get("args"))


def test_a_prune_run_as_the_cronjob_logs_only_json(history, capsys, caplog):
    """Its output is not a terminal (as in the CronJob's pod): no plain-text lines beside the
    JSON log line, which carries the cut and the count."""
    caplog.set_level(logging.INFO, logger="outcomes.lifecycle")
    call_command("prune_outcomes", "--older-than", "30d")
    assert capsys.readouterr().out == ""
    (record,) = [r for r in caplog.records if r.getMessage() == "outcomes pruned"]
    assert record.deleted == 5 and record.before == rollups.truncate(days_ago(30), "day").isoformat()


def test_writes_in_pruned_time_never_make_the_rollups_forget_it(history, outcome_factory):
    hour = rollups.truncate(days_ago(40), "hour")
    outcome_factory(1, auction_timestamp=hour + timedelta(minutes=1), user_id="u40")
    call_command("prune_outcomes", "--older-than", "30d")
    window = {"start": hour.isoformat(), "end": (hour + timedelta(hours=1)).isoformat()}
    reach_before = APIClient().get("/api/outcomes/reach/", window).json()["reach"]
    assert reach_before == 2  # "old" and "u40", whose raw rows are gone
    (late,) = outcome_factory(1, auction_timestamp=hour + timedelta(minutes=5), user_id="late")  # a late message
    outcome_factory(1, auction_timestamp=hour + timedelta(minutes=6), user_id="another")
    assert APIClient().get("/api/outcomes/reach/", window).json()["reach"] == 4
    # Changing and deleting the late outcome, and erasing a user, touch that hour's sketch:
    # it is not rebuilt from the raw rows left there (which no longer hold "old").
    from outcomes import writes

    writes.outcome_update(outcome_id=late.id, changes={"site_domain": "changed.example"}, partial=True)
    writes.outcomes_delete(ids=[late.id])
    call_command("erase_user", "another")
    assert APIClient().get("/api/outcomes/reach/", window).json()["reach"] >= reach_before


def test_the_retention_mark_only_moves_forward(history):
    call_command("prune_outcomes", "--older-than", "30d")
    cut = rollups.truncate(days_ago(30), "day")
    call_command("prune_outcomes", "--older-than", "90d")  # a longer retention, configured later
    assert RawRetention.objects.get(id=1).before == cut
    kept = stats()
    with pytest.raises(CommandError, match="pruned"):
        call_command("rebuild_rollups", "--since", days_ago(60).date().isoformat())
    assert stats() == kept  # rolled-up history intact
    call_command("prune_outcomes", "--older-than", "10d")
    assert RawRetention.objects.get(id=1).before == rollups.truncate(days_ago(10), "day")


def test_dead_letters_are_pruned_with_the_outcomes_and_kept_short(history):
    from outcomes import writes

    old = DeadLetter.objects.create(topic="t", partition=0, offset=1, value=b"{}", reason="invalid_json")
    DeadLetter.objects.filter(pk=old.pk).update(created_at=days_ago(40))
    recent = DeadLetter.objects.create(topic="t", partition=0, offset=2, value=b"{}", reason="invalid_json")
    call_command("prune_outcomes", "--older-than", "30d")
    assert list(DeadLetter.objects.values_list("id", flat=True)) == [recent.id]
    # An oversized message keeps only its first 64 KiB, and says so.
    big = b'{"user_id": "x", "pad": "' + b"y" * 200_000 + b'"}'
    batch = writes.Batch()
    batch.rejected.append(writes.Rejected(writes.Position("t", 0, 3), None, big, "oversized", "too big"))
    writes.write_batch(batch, consumer_group="g")
    letter = DeadLetter.objects.get(offset=3)
    assert len(bytes(letter.value)) == writes.DEAD_LETTER_MAX_BYTES
    assert letter.detail == f"too big (value kept: the first 65,536 of {len(big):,} bytes)"


def test_an_erased_user_stays_erased(outcome_factory, person, settings):
    import orjson

    from outcomes import writes
    from outcomes.models import ErasedUser
    from outcomes.replay import dead_letters_replay
    from tests.factories import message, parse_document

    outcome_factory(2, user_id="carol", auction_timestamp=days_ago(1))
    call_command("erase_user", "carol")
    [tombstone] = ErasedUser.objects.all()
    assert "carol" not in tombstone.user_hash
    # A late Kafka message of hers is not stored (the rest of its batch is).
    batch = writes.Batch()
    for offset, user in enumerate(["carol", "dave"]):
        document = message(user_id=user, auction_timestamp=days_ago(1).isoformat())
        batch.events.append((parse_document(document), writes.Position("t", 0, offset)))
    result = writes.write_batch(batch, consumer_group="g")
    assert (result.stored, result.erased) == (1, 1)
    assert set(AuctionOutcome.objects.values_list("user_id", flat=True)) == {"dave"}
    assert rollups.verify() == []
    assert APIClient().get("/api/outcomes/reach/").json()["reach"] == 1
    # Nor a replayed dead letter of hers.
    value = orjson.dumps(message(user_id="carol", auction_timestamp=days_ago(1).isoformat()))
    DeadLetter.objects.create(topic="t", partition=1, offset=9, value=value, reason="invalid_json")
    dead_letters_replay(max_bytes=65536, max_price=settings.CONSUMER.max_price)
    assert not AuctionOutcome.objects.filter(user_id="carol").exists()
    # Nor one written through the API.
    from tests.factories import WRITER_PERMISSIONS

    api = person.client(person(*WRITER_PERMISSIONS))
    refused = api.post("/api/outcomes/", {**message(user_id="carol"), "bid_request_id": "b-1"}, format="json")
    assert refused.status_code == 400 and "erased" in refused.json()["user_id"][0]
