"""Consumer batches: many outcomes, their dead letters and their partitions' offsets in one
transaction (how, step by step: ``outcomes.writes``)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from django.db import IntegrityError, connection, transaction

from outcomes import pgcopy, rollups
from outcomes.live import batch_event
from outcomes.messages import OutcomeEvent
from outcomes.pgcopy import NULL, escape
from outcomes.writes import erasure, tables

logger = logging.getLogger("outcomes.writes")

# A dead letter keeps at most this much of its message (an oversized one was kept whole:
# megabytes, perhaps personal data); its detail says when it was cut.
DEAD_LETTER_MAX_BYTES = 65_536


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
class PreparedBatch:
    """A batch ready for the database: unique events, their COPY rows, everything to dead-letter."""

    events: list[tuple[OutcomeEvent, Position]]
    rows: str
    rejected: list[Rejected]
    progress: dict[tuple[str, int], PartitionProgress]
    in_batch_duplicates: int
    reach: rollups.Reach  # users of the events that carry an auction time, assuming all are inserted
    last_inserted_id: int | None = None  # set by the slow path: rows skipped on conflict use up ids too
    live: dict | None = None  # its live event assuming all are inserted (``prepare_batch(live=True)``)

    def __len__(self) -> int:
        """Messages in the batch (in-batch duplicates included)."""
        return len(self.events) + len(self.rejected) + self.in_batch_duplicates


@dataclass
class WriteResult:
    stored: int = 0
    duplicates: int = 0
    erased: int = 0  # outcomes of erased users, left out (``ErasedUser``)
    dead_lettered: Counter = field(default_factory=Counter)
    newest_event_time: datetime | None = None
    used_fallback: bool = False
    duration_ms: float = 0.0
    live: dict | None = None  # what the batch changed (``outcomes.live``), when asked for


def prepare_batch(batch: Batch, *, live: bool = False) -> PreparedBatch:
    """The CPU-bound half of a write: no I/O, safe to run beside a write in progress.
    ``live``: its live event too (``outcomes.live``), computed here rather than after the
    write, on the writer's time."""
    prepared = _prepare(batch)
    if live and prepared.events:
        prepared.live = batch_event((e for e, _ in prepared.events), newest=_newest_event_time(prepared.events))
    return prepared


def _prepare(batch: Batch) -> PreparedBatch:
    first: dict[str, tuple[OutcomeEvent, Position]] = {}
    rejected = list(batch.rejected)
    duplicates = 0
    for event, position in batch.events:
        kept = first.get(event.bid_id)
        if kept is None:
            first[event.bid_id] = (event, position)
        elif kept[0].raw_json == event.raw_json or orjson.loads(kept[0].raw_json) == orjson.loads(event.raw_json):
            duplicates += 1
        else:
            rejected.append(_conflict(event, position, kept[1]))
    events = list(first.values())
    reach = rollups.Reach()
    for event, _position in events:
        if event.auction_timestamp is not None:
            reach.add(event.auction_timestamp, event.user_id)
    return PreparedBatch(events, copy_rows(events), rejected, dict(batch.progress), duplicates, reach)


def add_timeless(reach: rollups.Reach, events, cursor) -> None:
    """Outcomes without an auction time happen at their storage time: the transaction's."""
    timeless = [event for event, _position in events if event.auction_timestamp is None]
    if timeless:
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0]
        for event in timeless:
            reach.add(now, event.user_id)


def write_batch(
    batch: Batch | PreparedBatch, *, consumer_group: str, stage_first: bool = False, live: bool = False
) -> WriteResult:
    """Write one batch atomically. Raises ``OffsetConflict`` (nothing written) if fenced.
    ``live``: the result says what the committed batch changed (``outcomes.live``)."""
    prepared = batch if isinstance(batch, PreparedBatch) else prepare_batch(batch)
    if prepared.events and not stage_first:
        try:
            return _write_batch(prepared, consumer_group, fast=True, live=live)
        except IntegrityError as exc:  # a bid id is stored already: nothing was written
            if getattr(exc.__cause__, "sqlstate", None) != tables.UNIQUE_VIOLATION:
                raise
    return _write_batch(prepared, consumer_group, fast=False, live=live)


def _write_batch(prepared: PreparedBatch, consumer_group: str, *, fast: bool, live: bool = False) -> WriteResult:
    result = WriteResult(duplicates=prepared.in_batch_duplicates, used_fallback=not fast and bool(prepared.events))
    rejected = list(prepared.rejected)
    with transaction.atomic(), connection.cursor() as cursor:
        if prepared.events:
            mark = rollups.sequence_mark(cursor)
            if fast:
                pgcopy.copy_in(cursor, tables.COPY_OUTCOMES, prepared.rows)
                result.stored = len(prepared.events)
                reach = prepared.reach
                inserted_events = prepared.events
            else:
                inserted, duplicates, conflicts = insert_via_stage(cursor, prepared)
                result.stored = len(inserted)
                result.duplicates += duplicates
                rejected.extend(conflicts)
                inserted_events = [(e, p) for e, p in prepared.events if e.bid_id in inserted]
                reach = rollups.Reach()
                for event, _position in inserted_events:
                    if event.auction_timestamp is not None:
                        reach.add(event.auction_timestamp, event.user_id)
            if result.stored:
                add_timeless(reach, inserted_events, cursor)
                rollups.append_inserted(cursor, after_id=mark, last_id=None if fast else prepared.last_inserted_id)
                rollups.append_reach(cursor, reach)
                result.erased = erasure.drop_erased(
                    cursor, after_id=mark, users={e.user_id for e, _ in inserted_events}
                )
                result.stored -= result.erased
        if rejected:
            _insert_dead_letters(cursor, rejected, consumer_group)
        for (topic, partition), progress in sorted(prepared.progress.items()):
            cursor.execute(
                tables.UPSERT_OFFSET, [consumer_group, topic, partition, progress.next_offset, progress.expected]
            )
            if cursor.fetchone() is None:
                raise OffsetConflict(topic, partition, progress.expected)
    result.dead_lettered.update(r.reason for r in rejected)
    result.newest_event_time = _newest_event_time(prepared.events)
    if live and result.stored:  # committed: what it changed (erased users' outcomes left out: resync)
        if fast and prepared.live is not None and not result.erased:
            result.live = prepared.live  # every event was inserted: as prepared
        else:
            result.live = batch_event(
                (event for event, _ in inserted_events), newest=result.newest_event_time, resync=bool(result.erased)
            )
    return result


def insert_via_stage(cursor, prepared: PreparedBatch) -> tuple[set[str], int, list[Rejected]]:
    """The slow path: (bid ids stored, duplicates, conflicting copies)."""
    cursor.execute(tables.CREATE_STAGE)
    pgcopy.copy_in(cursor, tables.COPY_STAGE, prepared.rows)
    cursor.execute(tables.MOVE_STAGE)
    returned = cursor.fetchall()
    inserted = {row[0] for row in returned}
    prepared.last_inserted_id = max((row[1] for row in returned), default=None)
    not_inserted = [(event, position) for event, position in prepared.events if event.bid_id not in inserted]
    duplicates = 0
    conflicts: list[Rejected] = []
    if not_inserted:
        cursor.execute(tables.STORED_CONTENT, [[event.bid_id for event, _ in not_inserted]])
        # Django's PostgreSQL backend hands jsonb over as text.
        stored = {bid: orjson.loads(raw) if isinstance(raw, str) else raw for bid, raw in cursor.fetchall()}
        for event, position in not_inserted:
            if orjson.loads(event.raw_json) == stored.get(event.bid_id):
                duplicates += 1
            else:
                conflicts.append(_conflict(event, position, None))
    return inserted, duplicates, conflicts


def copy_rows(events: list[tuple[OutcomeEvent, Position]]) -> str:
    """COPY text-format rows (3x cheaper to build than csv.writer's)."""
    return "".join(
        f"{escape(event.bid_id)}\t{escape(event.user_id)}\t"
        f"{NULL if event.site_domain is None else escape(event.site_domain)}\t"
        f"{'t' if event.win_status else 'f'}\t{event.win_price}\t{event.bid_price}\t{event.currency}\t"
        f"{'t' if event.enriched else 'f'}\t{escape(orjson.dumps(event.user_interests).decode())}\t"
        f"{NULL if event.auction_timestamp is None else event.auction_timestamp.isoformat()}\t"
        f"{event.experiment or NULL}\t{event.variant or NULL}\t"  # slugs: nothing to escape
        f"{escape(event.raw_json)}\n"
        for event, _position in events
    )


def _conflict(event: OutcomeEvent, position: Position | None, original: Position | None) -> Rejected:
    where = f" (first seen at {original.topic}[{original.partition}]@{original.offset})" if original else ""
    detail = f"bid_id {event.bid_id!r} is already stored{where} with different content; the stored version is kept"
    if position is not None:  # a message (an API write has none: it is answered with a 409)
        # The same line the consumer logs for every other invalid message.
        logger.warning(
            "invalid message; dead-lettering it",
            extra={
                "topic": position.topic,
                "partition": position.partition,
                "offset": position.offset,
                "reason": "conflicting_duplicate",
                "detail": detail,
            },
        )
    return Rejected(
        position=position, key=None, value=event.raw_json.encode("utf-8"), reason="conflicting_duplicate", detail=detail
    )


def _insert_dead_letters(cursor, rejected: list[Rejected], consumer_group: str) -> None:
    now = datetime.now(UTC)
    rows = [
        (
            r.position.topic,
            r.position.partition,
            r.position.offset,
            _from_millis(r.position.timestamp_ms),
            r.key,
            r.value[:DEAD_LETTER_MAX_BYTES] if r.value is not None else None,
            r.reason,
            r.detail + _cut_note(r.value),
            consumer_group,
            now,
        )
        for r in rejected
    ]
    cursor.executemany(tables.INSERT_DEAD_LETTERS, rows)  # psycopg pipelines them: one round trip


def _cut_note(value: bytes | None) -> str:
    if value is None or len(value) <= DEAD_LETTER_MAX_BYTES:
        return ""
    return f" (value kept: the first {DEAD_LETTER_MAX_BYTES:,} of {len(value):,} bytes)"


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
