"""The batch writer against the real PostgreSQL: lists of events in, rows out."""

from decimal import Decimal

import orjson
import pytest

from outcomes.messages import parse_outcome
from outcomes.models import AuctionOutcome, ConsumerOffset, DeadLetter
from outcomes.writes import Batch, OffsetConflict, PartitionProgress, Position, Rejected, write_batch
from tests.factories import SPEC_MESSAGE, message

pytestmark = pytest.mark.django_db(transaction=True)
GROUP = "writer-tests"


def batch_of(messages, *, topic="t", partition=0, start=0, expected=None) -> Batch:
    batch = Batch()
    for offset, data in enumerate(messages, start=start):
        event = parse_outcome(orjson.dumps(data))
        batch.events.append((event, Position(topic, partition, offset, 1_700_000_000_000)))
    batch.progress[(topic, partition)] = PartitionProgress(expected, start + len(messages))
    return batch


def test_spec_message_is_stored_as_the_specification_shows():
    result = write_batch(batch_of([SPEC_MESSAGE]), consumer_group=GROUP)
    assert result.stored == 1
    row = AuctionOutcome.objects.get()
    assert row.bid_id == "req-123"
    assert row.user_id == "user-456"
    assert row.win_status is True
    assert row.win_price == Decimal("0.80")
    assert row.bid_price == Decimal("0.80")
    assert row.enriched is True
    assert row.user_interests == ["technology", "sports"]
    assert row.raw_data == SPEC_MESSAGE
    assert row.site_domain is None
    assert row.currency == "USD"
    assert row.auction_timestamp.isoformat() == "2025-10-25T12:00:02+00:00"
    assert row.timestamp is not None and row.created_at is not None and row.updated_at is not None
    assert ConsumerOffset.objects.get().next_offset == 1


def test_texts_with_commas_quotes_newlines_and_unicode_survive_copy():
    tricky = message(user_id='u,"x"\n\ty\\z', site_domain="ex,ample.été", user_interests=['a"b', "c,d", "é\n"])
    write_batch(batch_of([tricky]), consumer_group=GROUP)
    row = AuctionOutcome.objects.get()
    assert row.user_id == 'u,"x"\n\ty\\z'
    assert row.site_domain == "ex,ample.été"
    assert row.user_interests == ['a"b', "c,d", "é\n"]
    assert row.raw_data == tricky


def test_redelivered_outcomes_change_nothing_and_count_as_duplicates():
    messages = [message() for _ in range(5)]
    write_batch(batch_of(messages), consumer_group=GROUP)
    again = batch_of(messages[:3] + [message()], start=5, expected=5)
    result = write_batch(again, consumer_group=GROUP)
    assert (result.stored, result.duplicates) == (1, 3)
    assert AuctionOutcome.objects.count() == 6
    assert not DeadLetter.objects.exists()


def test_duplicates_within_one_batch_are_stored_once():
    first = message()
    result = write_batch(batch_of([first, dict(first), message()]), consumer_group=GROUP)
    assert (result.stored, result.duplicates) == (2, 1)


def test_same_bid_id_with_different_content_keeps_the_first_and_dead_letters_the_other(caplog):
    original = message(bid_price=1.0, win_price=0.5)
    changed = dict(original, win_price=0.7)
    write_batch(batch_of([original]), consumer_group=GROUP)
    with caplog.at_level("WARNING", logger="outcomes.writes"):
        result = write_batch(batch_of([changed], start=1, expected=1), consumer_group=GROUP)
    # One log line per dead letter, as for every other invalid message.
    (line,) = [r for r in caplog.records if r.getMessage() == "invalid message; dead-lettering it"]
    assert (line.reason, line.topic, line.partition, line.offset) == ("conflicting_duplicate", "t", 0, 1)
    assert result.stored == 0 and result.duplicates == 0
    assert result.dead_lettered == {"conflicting_duplicate": 1}
    assert AuctionOutcome.objects.get().win_price == Decimal("0.50")
    letter = DeadLetter.objects.get()
    assert letter.reason == "conflicting_duplicate"
    assert (letter.topic, letter.partition, letter.offset) == ("t", 0, 1)
    assert orjson.loads(bytes(letter.value)) == changed

    # Inside one batch, too.
    other = message()
    result = write_batch(
        batch_of([other, dict(other, user_id="someone-else")], start=2, expected=2), consumer_group=GROUP
    )
    assert result.stored == 1 and result.dead_lettered == {"conflicting_duplicate": 1}


def test_dead_letters_keep_raw_bytes_position_and_reason():
    batch = batch_of([message()])
    batch.rejected.append(
        Rejected(
            Position("t", 0, 1, 1_700_000_000_000), b"\xff", b"\x00\xffraw", "invalid_json", "message is not valid JSON"
        )
    )
    batch.progress[("t", 0)] = PartitionProgress(None, 2)
    result = write_batch(batch, consumer_group=GROUP)
    assert result.stored == 1 and result.dead_lettered == {"invalid_json": 1}
    letter = DeadLetter.objects.get()
    assert bytes(letter.value) == b"\x00\xffraw"
    assert bytes(letter.key) == b"\xff"
    assert (letter.topic, letter.partition, letter.offset, letter.reason) == ("t", 0, 1, "invalid_json")
    assert letter.kafka_timestamp.year == 2023
    assert letter.consumer_group == GROUP


def test_offsets_are_fenced_and_a_fenced_batch_writes_nothing():
    write_batch(batch_of([message()]), consumer_group=GROUP)  # stored offset: 1
    stale = batch_of([message(), message()], start=0, expected=None)  # believes nothing is stored
    with pytest.raises(OffsetConflict):
        write_batch(stale, consumer_group=GROUP)
    wrong = batch_of([message()], start=1, expected=0)
    with pytest.raises(OffsetConflict):
        write_batch(wrong, consumer_group=GROUP)
    assert AuctionOutcome.objects.count() == 1
    assert ConsumerOffset.objects.get().next_offset == 1


def test_offsets_are_per_group_topic_and_partition():
    write_batch(batch_of([message()], partition=0), consumer_group=GROUP)
    write_batch(batch_of([message(), message()], partition=1), consumer_group=GROUP)
    write_batch(batch_of([message()], partition=0), consumer_group="another-group")
    stored = set(ConsumerOffset.objects.values_list("consumer_group", "topic", "partition", "next_offset"))
    assert stored == {(GROUP, "t", 0, 1), (GROUP, "t", 1, 2), ("another-group", "t", 0, 1)}


def test_a_batch_of_only_dead_letters_still_moves_the_offset():
    batch = Batch(rejected=[Rejected(Position("t", 0, 0), None, b"x", "invalid_json", "bad")])
    batch.progress[("t", 0)] = PartitionProgress(None, 1)
    write_batch(batch, consumer_group=GROUP)
    assert ConsumerOffset.objects.get().next_offset == 1
    assert DeadLetter.objects.count() == 1


def test_a_concurrent_writer_of_the_same_bid_id_is_handled_by_the_fallback_path():
    """Another transaction inserts a bid id after our lookup and before our COPY: the unique
    index rejects the fast path, the fallback stores the rest and counts the raced one."""
    import threading

    import psycopg
    from django.db import connection as django_connection

    raced = message()
    others = [message() for _ in range(3)]
    rival = psycopg.connect(**django_connection.get_connection_params())
    ready = threading.Event()

    def rival_insert():
        with rival.cursor() as cursor:
            cursor.execute(
                "INSERT INTO outcomes_auctionoutcome (bid_id, user_id, win_status, win_price, bid_price, currency, "
                "enriched, user_interests, raw_data, timestamp, created_at, updated_at) VALUES "
                "(%s, 'rival', true, 0.8, 0.8, 'USD', true, '[]', %s, now(), now(), now())",
                [raced["bid_request_id"], orjson.dumps(raced).decode()],
            )
            ready.set()
            time.sleep(0.5)  # our COPY waits on this uncommitted row, then fails with a unique violation
        rival.commit()

    import time

    thread = threading.Thread(target=rival_insert)
    thread.start()
    ready.wait(5)
    result = write_batch(batch_of([raced, *others]), consumer_group=GROUP)
    thread.join()
    rival.close()
    assert (result.stored, result.duplicates) == (3, 1)
    assert AuctionOutcome.objects.count() == 4
    assert AuctionOutcome.objects.get(bid_id=raced["bid_request_id"]).user_id == "rival"
