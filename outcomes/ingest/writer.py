"""One batch → one PostgreSQL transaction.

Owns every write ingestion makes: new outcomes, dead letters and each partition's next
offset, committed together or not at all. Knows nothing about Kafka: a batch is plain data
(positions are topic/partition/offset triples), so this module is tested against
PostgreSQL with lists of events.

How a batch is written (fast and idempotent):

1. valid events are de-duplicated by ``bid_id`` within the batch (first one wins);
2. they are streamed with ``COPY`` into a session-local staging table, then moved with
   one ``INSERT … SELECT … ON CONFLICT (bid_id) DO NOTHING RETURNING bid_id``, so a
   redelivered or upstream-duplicated outcome changes nothing;
3. a duplicate whose content differs from the stored outcome is dead-lettered as
   ``conflicting_duplicate`` (the first version stays; nothing is silently dropped);
4. dead letters are inserted (unique by topic/partition/offset, so a retry cannot double them);
5. each partition's next offset is upserted *fenced*: the update applies only if the stored
   offset is still the one this consumer last read or wrote. If another consumer has moved it
   (a rebalance this one has not noticed yet), ``OffsetConflict`` is raised and the whole
   transaction rolls back.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from django.db import connection, transaction
from psycopg2.extras import execute_values

from outcomes.ingest.messages import OutcomeEvent

OUTCOME_TABLE = "outcomes_auctionoutcome"
OFFSET_TABLE = "outcomes_consumeroffset"
DEAD_LETTER_TABLE = "outcomes_deadletter"
STAGE_TABLE = "outcome_stage"

_STAGE_COLUMNS = (
    "bid_id, user_id, site_domain, win_status, win_price, bid_price, currency, enriched, "
    "user_interests, auction_timestamp, raw_data, kafka_partition, kafka_offset"
)
_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} (
    bid_id varchar(255) NOT NULL,
    user_id varchar(255) NOT NULL,
    site_domain varchar(255),
    win_status boolean NOT NULL,
    win_price numeric(10, 2) NOT NULL,
    bid_price numeric(10, 2) NOT NULL,
    currency varchar(3) NOT NULL,
    enriched boolean NOT NULL,
    user_interests jsonb NOT NULL,
    auction_timestamp timestamptz,
    raw_data jsonb NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL
) ON COMMIT DELETE ROWS
"""
_COPY_STAGE = f"COPY {STAGE_TABLE} ({_STAGE_COLUMNS}) FROM STDIN WITH (FORMAT csv)"
_MOVE_STAGE = f"""
INSERT INTO {OUTCOME_TABLE} (
    bid_id, user_id, site_domain, win_status, win_price, bid_price, currency, enriched,
    user_interests, auction_timestamp, raw_data, timestamp, created_at, updated_at)
SELECT bid_id, user_id, site_domain, win_status, win_price, bid_price, currency, enriched,
       user_interests, auction_timestamp, raw_data, now(), now(), now()
FROM {STAGE_TABLE}
ORDER BY kafka_partition, kafka_offset
ON CONFLICT (bid_id) DO NOTHING
RETURNING bid_id
"""
_DUPLICATE_CONTENT = f"""
SELECT s.bid_id, s.kafka_partition, s.kafka_offset, (o.raw_data = s.raw_data) AS same
FROM {STAGE_TABLE} s JOIN {OUTCOME_TABLE} o ON o.bid_id = s.bid_id
WHERE s.bid_id = ANY(%s)
"""
_INSERT_DEAD_LETTERS = f"""
INSERT INTO {DEAD_LETTER_TABLE}
    (topic, partition, "offset", kafka_timestamp, key, value, reason, detail, consumer_group, created_at)
VALUES %s
ON CONFLICT (topic, partition, "offset") DO NOTHING
"""
_UPSERT_OFFSET = f"""
INSERT INTO {OFFSET_TABLE} AS o (consumer_group, topic, partition, next_offset, updated_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (consumer_group, topic, partition) DO UPDATE
    SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at
    WHERE o.next_offset = %s
RETURNING next_offset
"""


class OffsetConflict(Exception):
    """Another consumer moved a partition's stored offset: this batch must not be written."""

    def __init__(self, topic: str, partition: int, expected: int | None) -> None:
        super().__init__(
            f"stored offset of {topic}[{partition}] is no longer {expected}; another consumer owns the partition"
        )
        self.topic = topic
        self.partition = partition


@dataclass(frozen=True, slots=True)
class Position:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message bound for the dead-letter table."""

    position: Position
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """Where a partition's stored offset is (``expected``, None if never stored) and goes to."""

    expected: int | None
    next_offset: int


@dataclass
class Batch:
    events: list[tuple[OutcomeEvent, Position]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    progress: dict[tuple[str, int], PartitionProgress] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.events) + len(self.rejected)


@dataclass
class WriteResult:
    stored: int = 0
    duplicates: int = 0
    dead_lettered: Counter = field(default_factory=Counter)
    newest_event_time: datetime | None = None
    duration_ms: float = 0.0


def write_batch(batch: Batch, *, consumer_group: str) -> WriteResult:
    """Write one batch atomically. Raises ``OffsetConflict`` (nothing written) if fenced."""
    result = WriteResult()
    rejected = list(batch.rejected)
    unique_events, in_batch_dupes = _dedupe(batch.events)
    result.duplicates += in_batch_dupes.duplicates
    rejected.extend(in_batch_dupes.conflicts)

    with transaction.atomic(), connection.cursor() as cursor:
        if unique_events:
            inserted = _insert_outcomes(cursor, unique_events)
            result.stored = len(inserted)
            if len(inserted) < len(unique_events):
                dupes, conflicts = _classify_duplicates(cursor, unique_events, inserted)
                result.duplicates += dupes
                rejected.extend(conflicts)
        if rejected:
            _insert_dead_letters(cursor, rejected, consumer_group)
        for (topic, partition), progress in sorted(batch.progress.items()):
            cursor.execute(
                _UPSERT_OFFSET,
                [consumer_group, topic, partition, progress.next_offset, progress.expected],
            )
            if cursor.fetchone() is None:
                raise OffsetConflict(topic, partition, progress.expected)
    result.dead_lettered.update(r.reason for r in rejected)
    result.newest_event_time = _newest_event_time(unique_events)
    return result


@dataclass
class _InBatchDuplicates:
    duplicates: int = 0
    conflicts: list[Rejected] = field(default_factory=list)


def _dedupe(events: list[tuple[OutcomeEvent, Position]]):
    first: dict[str, tuple[OutcomeEvent, Position]] = {}
    found = _InBatchDuplicates()
    for event, position in events:
        kept = first.get(event.bid_id)
        if kept is None:
            first[event.bid_id] = (event, position)
        elif kept[0].raw_json == event.raw_json or orjson.loads(kept[0].raw_json) == orjson.loads(event.raw_json):
            found.duplicates += 1
        else:
            found.conflicts.append(_conflict(event, position, kept[1]))
    return list(first.values()), found


def _conflict(event: OutcomeEvent, position: Position, original: Position | None) -> Rejected:
    where = f" (first seen at {original.topic}[{original.partition}]@{original.offset})" if original else ""
    return Rejected(
        position=position,
        key=None,
        value=event.raw_json.encode("utf-8"),
        reason="conflicting_duplicate",
        detail=f"bid_id {event.bid_id!r} is already stored{where} with different content; the stored version is kept",
    )


def _insert_outcomes(cursor, events: list[tuple[OutcomeEvent, Position]]) -> set[str]:
    buffer = io.StringIO()
    write_row = csv.writer(buffer, lineterminator="\n").writerow
    for event, position in events:
        write_row(
            (
                event.bid_id,
                event.user_id,
                event.site_domain,
                "t" if event.win_status else "f",
                event.win_price,
                event.bid_price,
                event.currency,
                "t" if event.enriched else "f",
                orjson.dumps(event.user_interests).decode(),
                event.auction_timestamp.isoformat() if event.auction_timestamp else None,
                event.raw_json,
                position.partition,
                position.offset,
            )
        )
    buffer.seek(0)
    cursor.execute(_CREATE_STAGE)
    cursor.copy_expert(_COPY_STAGE, buffer)
    cursor.execute(_MOVE_STAGE)
    return {row[0] for row in cursor.fetchall()}


def _classify_duplicates(cursor, events, inserted: set[str]) -> tuple[int, list[Rejected]]:
    by_bid = {event.bid_id: (event, position) for event, position in events}
    missing = [bid for bid in by_bid if bid not in inserted]
    cursor.execute(_DUPLICATE_CONTENT, [missing])
    duplicates = 0
    conflicts: list[Rejected] = []
    for bid_id, _partition, _offset, same in cursor.fetchall():
        if same:
            duplicates += 1
        else:
            event, position = by_bid[bid_id]
            conflicts.append(_conflict(event, position, None))
    return duplicates, conflicts


def _insert_dead_letters(cursor, rejected: list[Rejected], consumer_group: str) -> None:
    now = datetime.now(UTC)
    rows = [
        (
            r.position.topic,
            r.position.partition,
            r.position.offset,
            _from_millis(r.position.timestamp_ms),
            r.key,
            r.value,
            r.reason,
            r.detail,
            consumer_group,
            now,
        )
        for r in rejected
    ]
    execute_values(cursor.cursor, _INSERT_DEAD_LETTERS, rows, page_size=1000)


def _from_millis(timestamp_ms: int | None) -> datetime | None:
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


def _newest_event_time(events: list[tuple[OutcomeEvent, Position]]) -> datetime | None:
    newest: datetime | None = None
    for event, position in events:
        moment = event.auction_timestamp or _from_millis(position.timestamp_ms)
        if moment is not None and (newest is None or moment > newest):
            newest = moment
    return newest


def stored_offsets(*, consumer_group: str, topic: str) -> dict[int, int]:
    """Next offset to read for each partition of ``topic`` this group has stored."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT partition, next_offset FROM {OFFSET_TABLE} WHERE consumer_group = %s AND topic = %s",
            [consumer_group, topic],
        )
        return dict(cursor.fetchall())
