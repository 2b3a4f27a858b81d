"""The write service: the one path that changes stored outcomes.

Consumer batches, API creates, updates and deletes, the admin's deletes and dead-letter
replay all come through here. Every change validates with the message parser's rules
(``outcomes.ingest.messages``) and keeps the rollups (``outcomes.rollups``) exact in the
same transaction: a write either lands with its rollup deltas or not at all.

Owns every write ingestion makes: new outcomes, rollup deltas, dead letters and each
partition's next offset, committed together or not at all. Knows nothing about Kafka or
HTTP: a batch is plain data (positions are topic/partition/offset triples), so this module
is tested against PostgreSQL with lists of events.

A batch is written in two steps, so the CPU-bound part can run while the previous batch
is still in the database:

``prepare_batch`` (pure Python, no I/O)
    de-duplicates events by ``bid_id`` within the batch (first one wins; a later copy with
    different content is a ``conflicting_duplicate`` dead letter), renders the rows in
    COPY text format and sketches the users of the events (for the reach rollups).

``write_batch`` (one transaction)
    1. streams the rows with ``COPY`` straight into the outcomes table. This is the fast
       path: raw COPY speed, no look-ups;
    2. if any bid id is stored already, the unique index rejects that COPY, the transaction
       (nothing else done yet) is rolled back and the batch goes the slow, always-correct way
       instead: COPY into a session-local staging table, then
       ``INSERT … SELECT … ON CONFLICT (bid_id) DO NOTHING RETURNING bid_id``. The rows not
       inserted are looked up: same content → a duplicate (counted), different content → a
       ``conflicting_duplicate`` dead letter (the first version stays; nothing is silently
       dropped). ``stage_first=True`` skips step 1 when duplicates are expected;
    3. inserts dead letters (unique by topic/partition/offset, so a retry cannot double them);
    4. appends the rollup deltas of exactly the rows inserted, computed by PostgreSQL from
       those rows (``rollups.append_inserted``), and the batch's reach sketches;
    5. upserts each partition's next offset *fenced*: the update applies only if the stored
       offset is still the one this consumer last read or wrote. If another consumer has
       moved it (a rebalance this one has not noticed yet), ``OffsetConflict`` is raised and
       the whole transaction rolls back.

``timestamp``, ``created_at`` and ``updated_at`` come from the columns' database default,
``now()``: the time of the transaction that stored the row.
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction
from psycopg2.extras import execute_values

from analytics.privacy import user_hash
from outcomes import rollups
from outcomes.ingest.messages import InvalidOutcome, OutcomeEvent, parse_outcome
from outcomes.models import AuctionOutcome, ErasedUser, LostOffsets, RawRetention

logger = logging.getLogger(__name__)

OUTCOME_TABLE = "outcomes_auctionoutcome"
OFFSET_TABLE = "outcomes_consumeroffset"
DEAD_LETTER_TABLE = "outcomes_deadletter"
ERASED_TABLE = ErasedUser._meta.db_table
# A dead letter keeps at most this much of its message (an oversized one was kept whole:
# megabytes, perhaps personal data); its detail says when it was cut.
DEAD_LETTER_MAX_BYTES = 65_536
STAGE_TABLE = "outcome_stage"
UNIQUE_VIOLATION = "23505"

_COLUMNS = (
    "bid_id, user_id, site_domain, win_status, win_price, bid_price, currency, enriched, "
    "user_interests, auction_timestamp, raw_data"
)
_NULL = "\\N"  # NULL in COPY text format
_COPY_OUTCOMES = f"COPY {OUTCOME_TABLE} ({_COLUMNS}) FROM STDIN"
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
    raw_data jsonb NOT NULL
) ON COMMIT DELETE ROWS
"""
_COPY_STAGE = f"COPY {STAGE_TABLE} ({_COLUMNS}) FROM STDIN"
_MOVE_STAGE = f"""
INSERT INTO {OUTCOME_TABLE} ({_COLUMNS})
SELECT {_COLUMNS} FROM {STAGE_TABLE}
ON CONFLICT (bid_id) DO NOTHING
RETURNING bid_id, id
"""
_STORED_CONTENT = f"SELECT bid_id, raw_data FROM {OUTCOME_TABLE} WHERE bid_id = ANY(%s)"
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
class PreparedBatch:
    """A batch ready for the database: unique events, their COPY rows, everything to dead-letter."""

    events: list[tuple[OutcomeEvent, Position]]
    rows: str
    rejected: list[Rejected]
    progress: dict[tuple[str, int], PartitionProgress]
    in_batch_duplicates: int
    reach: rollups.Reach  # users of the events that carry an auction time, assuming all are inserted
    last_inserted_id: int | None = None  # set by the slow path: rows skipped on conflict use up ids too

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


def prepare_batch(batch: Batch) -> PreparedBatch:
    """The CPU-bound half of a write: no I/O, safe to run beside a write in progress."""
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
    return PreparedBatch(events, _copy_rows(events), rejected, dict(batch.progress), duplicates, reach)


def _add_timeless(reach: rollups.Reach, events, cursor) -> None:
    """Outcomes without an auction time happen at their storage time: the transaction's."""
    timeless = [event for event, _position in events if event.auction_timestamp is None]
    if timeless:
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0]
        for event in timeless:
            reach.add(now, event.user_id)


def write_batch(batch: Batch | PreparedBatch, *, consumer_group: str, stage_first: bool = False) -> WriteResult:
    """Write one batch atomically. Raises ``OffsetConflict`` (nothing written) if fenced."""
    prepared = batch if isinstance(batch, PreparedBatch) else prepare_batch(batch)
    if prepared.events and not stage_first:
        try:
            return _write_batch(prepared, consumer_group, fast=True)
        except IntegrityError as exc:  # a bid id is stored already: nothing was written
            if getattr(exc.__cause__, "pgcode", None) != UNIQUE_VIOLATION:
                raise
    return _write_batch(prepared, consumer_group, fast=False)


def _write_batch(prepared: PreparedBatch, consumer_group: str, *, fast: bool) -> WriteResult:
    result = WriteResult(duplicates=prepared.in_batch_duplicates, used_fallback=not fast and bool(prepared.events))
    rejected = list(prepared.rejected)
    with transaction.atomic(), connection.cursor() as cursor:
        if prepared.events:
            mark = rollups.sequence_mark(cursor)
            if fast:
                _copy(cursor, _COPY_OUTCOMES, prepared.rows)
                result.stored = len(prepared.events)
                reach = prepared.reach
                inserted_events = prepared.events
            else:
                inserted, duplicates, conflicts = _insert_via_stage(cursor, prepared)
                result.stored = len(inserted)
                result.duplicates += duplicates
                rejected.extend(conflicts)
                inserted_events = [(e, p) for e, p in prepared.events if e.bid_id in inserted]
                reach = rollups.Reach()
                for event, _position in inserted_events:
                    if event.auction_timestamp is not None:
                        reach.add(event.auction_timestamp, event.user_id)
            if result.stored:
                _add_timeless(reach, inserted_events, cursor)
                rollups.append_inserted(cursor, after_id=mark, last_id=None if fast else prepared.last_inserted_id)
                rollups.append_reach(cursor, reach)
                result.erased = _drop_erased(cursor, after_id=mark, users={e.user_id for e, _ in inserted_events})
                result.stored -= result.erased
        if rejected:
            _insert_dead_letters(cursor, rejected, consumer_group)
        for (topic, partition), progress in sorted(prepared.progress.items()):
            cursor.execute(_UPSERT_OFFSET, [consumer_group, topic, partition, progress.next_offset, progress.expected])
            if cursor.fetchone() is None:
                raise OffsetConflict(topic, partition, progress.expected)
    result.dead_lettered.update(r.reason for r in rejected)
    result.newest_event_time = _newest_event_time(prepared.events)
    return result


def _insert_via_stage(cursor, prepared: PreparedBatch) -> tuple[set[str], int, list[Rejected]]:
    """The slow path: (bid ids stored, duplicates, conflicting copies)."""
    cursor.execute(_CREATE_STAGE)
    _copy(cursor, _COPY_STAGE, prepared.rows)
    cursor.execute(_MOVE_STAGE)
    returned = cursor.fetchall()
    inserted = {row[0] for row in returned}
    prepared.last_inserted_id = max((row[1] for row in returned), default=None)
    not_inserted = [(event, position) for event, position in prepared.events if event.bid_id not in inserted]
    duplicates = 0
    conflicts: list[Rejected] = []
    if not_inserted:
        cursor.execute(_STORED_CONTENT, [[event.bid_id for event, _ in not_inserted]])
        # Django's PostgreSQL backend hands jsonb over as text.
        stored = {bid: orjson.loads(raw) if isinstance(raw, str) else raw for bid, raw in cursor.fetchall()}
        for event, position in not_inserted:
            if orjson.loads(event.raw_json) == stored.get(event.bid_id):
                duplicates += 1
            else:
                conflicts.append(_conflict(event, position, None))
    return inserted, duplicates, conflicts


def _copy(cursor, sql: str, rows: str) -> None:
    # copy_expert is psycopg2's own method: without wrap_database_errors its errors would
    # escape Django's translation (IntegrityError, OperationalError, ...) the callers rely on.
    # One read of the whole buffer: with the default 8 KiB reads, each read re-takes the GIL
    # from the thread preparing the next batch.
    with connection.wrap_database_errors:
        cursor.copy_expert(sql, io.StringIO(rows), max(8192, len(rows) + 1))


def _copy_rows(events: list[tuple[OutcomeEvent, Position]]) -> str:
    """COPY text-format rows (3x cheaper to build than csv.writer's)."""
    return "".join(
        f"{_esc(event.bid_id)}\t{_esc(event.user_id)}\t"
        f"{_NULL if event.site_domain is None else _esc(event.site_domain)}\t"
        f"{'t' if event.win_status else 'f'}\t{event.win_price}\t{event.bid_price}\t{event.currency}\t"
        f"{'t' if event.enriched else 'f'}\t{_esc(orjson.dumps(event.user_interests).decode())}\t"
        f"{_NULL if event.auction_timestamp is None else event.auction_timestamp.isoformat()}\t"
        f"{_esc(event.raw_json)}\n"
        for event, _position in events
    )


def _esc(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


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


def erasure_hash(user_id: str) -> str:
    """The keyed hash that stands for an erased user (tombstone, audit line)."""
    if not settings.PRIVACY_HASH_KEY:  # the roles that write refuse to start without it
        raise ImproperlyConfigured("PRIVACY_HASH_KEY is not set: erased users cannot be recognised.")
    return user_hash(user_id, settings.PRIVACY_HASH_KEY)


def erased_users(cursor, users: set[str]) -> set[str]:
    """Which of these user ids were erased (their tombstones, by keyed hash). One cheap probe
    when nobody was ever erased."""
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {ERASED_TABLE})")
    if not cursor.fetchone()[0] or not users:
        return set()
    by_hash = {erasure_hash(user): user for user in users}
    cursor.execute(f"SELECT user_hash FROM {ERASED_TABLE} WHERE user_hash = ANY(%s)", [list(by_hash)])
    return {by_hash[row[0]] for row in cursor.fetchall()}


def _drop_erased(cursor, *, after_id: int, users: set[str]) -> int:
    """Delete what this write stored for erased users (a late message, a replay), with their
    rollup deltas subtracted and the touched hours' reach rebuilt; how many."""
    erased = erased_users(cursor, users)
    if not erased:
        return 0
    cursor.execute(f"SELECT id FROM {OUTCOME_TABLE} WHERE id > %s AND user_id = ANY(%s)", [after_id, list(erased)])
    ids = [row[0] for row in cursor.fetchall()]
    deleted = rollups.delete_rows(cursor, ids=ids)
    rollups.rebuild_reach_buckets(cursor, deleted)
    logger.info("outcomes of erased users not stored", extra={"outcomes": len(ids)})
    return len(ids)


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
    with connection.wrap_database_errors:
        execute_values(cursor.cursor, _INSERT_DEAD_LETTERS, rows, page_size=1000)


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


def stored_offsets(*, consumer_group: str, topic: str) -> dict[int, int]:
    """Next offset to read for each partition of ``topic`` this group has stored."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT partition, next_offset FROM {OFFSET_TABLE} WHERE consumer_group = %s AND topic = %s",
            [consumer_group, topic],
        )
        return dict(cursor.fetchall())


def offsets_skip_lost(*, consumer_group: str, topic: str, partition: int, stored: int, first_available: int) -> bool:
    """Record a partition's offsets [``stored``, ``first_available``) as lost (Kafka deleted
    them before they were stored) and move the stored offset to ``first_available``, in one
    transaction. Fenced like a batch: nothing happens unless ``stored`` is still what is stored
    (another consumer may have moved on). Returns whether it moved."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {OFFSET_TABLE} SET next_offset = %s, updated_at = now() "
            "WHERE consumer_group = %s AND topic = %s AND partition = %s AND next_offset = %s",
            [first_available, consumer_group, topic, partition, stored],
        )
        if cursor.rowcount != 1:
            return False
        LostOffsets.objects.create(
            consumer_group=consumer_group,
            topic=topic,
            partition=partition,
            first_offset=stored,
            end_offset=first_available,
        )
    return True


def offsets_reset(*, consumer_group: str, topic: str, partition: int, to: int, expected: int | None) -> bool:
    """An operator's explicit reset: the partition's stored next offset becomes ``to``, if it
    is still ``expected`` (None: nothing stored). Returns whether it changed."""
    with transaction.atomic(), connection.cursor() as cursor:
        if expected is None:
            cursor.execute(
                f"INSERT INTO {OFFSET_TABLE} (consumer_group, topic, partition, next_offset, updated_at) "
                "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (consumer_group, topic, partition) DO NOTHING",
                [consumer_group, topic, partition, to],
            )
        else:
            cursor.execute(
                f"UPDATE {OFFSET_TABLE} SET next_offset = %s, updated_at = now() "
                "WHERE consumer_group = %s AND topic = %s AND partition = %s AND next_offset = %s",
                [to, consumer_group, topic, partition, expected],
            )
        return cursor.rowcount == 1


# ---------------------------------------------------------------------------- single outcomes
# The API's and the admin's writes. They parse the submitted document with the consumer's
# parser, so an outcome is valid or invalid for the same reasons whichever way it came in.

WRITABLE_FIELDS = (
    "bid_id",
    "user_id",
    "site_domain",
    "win_status",
    "win_price",
    "bid_price",
    "currency",
    "enriched",
    "user_interests",
    "auction_timestamp",
)
_FACT_COLUMNS = "event_time, user_id, site_domain, win_status, win_price, bid_price, currency, enriched, user_interests"


class OutcomeInvalid(Exception):
    """A write refused, with errors by field (``non_field_errors`` when no field is to blame)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class OutcomeConflict(OutcomeInvalid):
    """A create for a bid id that is stored already (the stored outcome is kept)."""


class OutcomeNotFound(Exception):
    pass


def _settings_bounds():
    return settings.CONSUMER.max_message_bytes, settings.CONSUMER.max_price


def _validate(document: dict) -> OutcomeEvent:
    unknown = sorted(set(document) - set(WRITABLE_FIELDS) - {"bid_request_id"})
    if unknown:
        raise OutcomeInvalid(
            {name: ["Unknown field; writable: " + ", ".join(WRITABLE_FIELDS) + "."] for name in unknown}
        )
    try:
        text = orjson.dumps(document)
    except TypeError as exc:
        raise OutcomeInvalid({"non_field_errors": [f"Not a JSON document: {exc}"]}) from None
    max_bytes, max_price = _settings_bounds()
    parsed = parse_outcome(text, max_bytes=max_bytes, max_price=max_price)
    if isinstance(parsed, InvalidOutcome):
        raise OutcomeInvalid({parsed.field or "non_field_errors": [parsed.detail]})
    with connection.cursor() as cursor:
        if erased_users(cursor, {parsed.user_id}):
            raise OutcomeInvalid({"user_id": ["This user was erased on request: their outcomes are not stored again."]})
    return parsed


def outcome_create(*, document: dict) -> AuctionOutcome:
    """Store one new outcome (its rollups in the same transaction). Refuses a stored bid id."""
    if not isinstance(document, dict):
        raise OutcomeInvalid({"non_field_errors": ["Expected a JSON object."]})
    event = _validate(document)
    prepared = PreparedBatch([(event, None)], _copy_rows([(event, None)]), [], {}, 0, rollups.Reach())
    with transaction.atomic(), connection.cursor() as cursor:
        mark = rollups.sequence_mark(cursor)
        inserted, _duplicates, _conflicts = _insert_via_stage(cursor, prepared)
        if not inserted:
            raise OutcomeConflict({"bid_id": [f"An outcome with bid_id {event.bid_id!r} is already stored."]})
        rollups.append_inserted(cursor, after_id=mark, last_id=prepared.last_inserted_id)
        reach = rollups.Reach()
        if event.auction_timestamp is not None:
            reach.add(event.auction_timestamp, event.user_id)
        _add_timeless(reach, [(event, None)], cursor)
        rollups.append_reach(cursor, reach)
    return AuctionOutcome.objects.get(bid_id=event.bid_id)


def _document(row: AuctionOutcome) -> dict:
    """The stored columns as a message document (what an update is applied to)."""
    return {
        "bid_id": row.bid_id,
        "user_id": row.user_id,
        "site_domain": row.site_domain,
        "win_status": row.win_status,
        "win_price": str(row.win_price),
        "bid_price": str(row.bid_price),
        "currency": row.currency,
        "enriched": row.enriched,
        "user_interests": list(row.user_interests or []),
        "auction_timestamp": row.auction_timestamp.isoformat() if row.auction_timestamp else None,
    }


def _same(event: OutcomeEvent, row: AuctionOutcome) -> bool:
    return (
        event.user_id == row.user_id
        and event.site_domain == row.site_domain
        and event.win_status == row.win_status
        and event.win_price == row.win_price
        and event.bid_price == row.bid_price
        and event.currency == row.currency
        and event.enriched == row.enriched
        and list(event.user_interests) == list(row.user_interests or [])
        and event.auction_timestamp == row.auction_timestamp
    )


def outcome_update(*, outcome_id: int, changes: dict, partial: bool) -> AuctionOutcome:
    """Change one outcome (PATCH: ``partial``; PUT: ``changes`` is the whole document).

    The bid id cannot change. A change that changes nothing writes nothing (``updated_at``
    included). Rollups: the old version's deltas are subtracted, the new one's added.
    """
    if not isinstance(changes, dict):
        raise OutcomeInvalid({"non_field_errors": ["Expected a JSON object."]})
    with transaction.atomic(), connection.cursor() as cursor:
        row = AuctionOutcome.objects.select_for_update().filter(pk=outcome_id).first()
        if row is None:
            raise OutcomeNotFound(outcome_id)
        if not partial and "bid_id" not in changes and "bid_request_id" not in changes:
            raise OutcomeInvalid({"bid_id": ["This field is required: PUT sends the whole outcome (PATCH a part)."]})
        given_bid = changes.get("bid_id", changes.get("bid_request_id", row.bid_id))
        if given_bid != row.bid_id:
            raise OutcomeInvalid({"bid_id": ["The bid id of a stored outcome cannot change."]})
        document = {**_document(row), **changes} if partial else changes
        event = _validate(document)
        raw = {**(row.raw_data if isinstance(row.raw_data, dict) else {}), **changes}
        if _same(event, row) and raw == row.raw_data:
            return row
        hours = rollups.delete_rows(cursor, ids=[row.pk])
        cursor.execute(
            f"""INSERT INTO {OUTCOME_TABLE} (id, {_COLUMNS}, timestamp, created_at, updated_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
""",
            [
                row.pk,
                event.bid_id,
                event.user_id,
                event.site_domain,
                event.win_status,
                event.win_price,
                event.bid_price,
                event.currency,
                event.enriched,
                orjson.dumps(event.user_interests).decode(),
                event.auction_timestamp,
                orjson.dumps(raw).decode(),
                row.timestamp,
                row.created_at,
            ],
        )
        rollups.rebuild_reach_buckets(cursor, [*hours, *rollups.append_rows(cursor, ids=[row.pk])])
    return AuctionOutcome.objects.get(pk=outcome_id)


def outcomes_delete(*, ids: list[int]) -> int:
    """Delete outcomes by id; their rollup deltas are subtracted in the same transaction."""
    if not ids:
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        deleted = rollups.delete_rows(cursor, ids=sorted(set(ids)))
        rollups.rebuild_reach_buckets(cursor, deleted)
    return sum(deleted.values())


# ---------------------------------------------------------------------------- lifecycle
@dataclass
class PruneProgress:
    deleted: int = 0
    batches: int = 0
    dead_letters: int = 0


def outcomes_prune(*, before: datetime, batch_size: int = 5_000, pause: float = 0.0, dry_run: bool = False):
    """Delete raw outcomes whose event time is before ``before`` (a whole UTC day, so no hour
    is left half-counted), ``batch_size`` rows per transaction, oldest first. Yields the
    running ``PruneProgress`` after each batch.

    The rollups are **not** changed: they are the long-term record, kept after the raw rows
    go. Each batch is a short transaction that locks only the rows it deletes, so ingestion
    (which only inserts) never waits for it.
    """
    progress = PruneProgress()
    if before != rollups.truncate(before, "day"):
        raise ValueError("before must be a whole UTC day")
    if dry_run:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {OUTCOME_TABLE} WHERE event_time < %s", [before])
            progress.deleted = cursor.fetchone()[0]
        yield progress
        return
    # First the mark: from now on list counts leave these rows out, as they are going. It only
    # ever moves forward: a shorter retention asked later (30 days, then 90) cannot bring the
    # cut back over time whose raw rows are gone (rollups would be rebuilt there from nothing).
    table = RawRetention._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (id, before, updated_at) VALUES (1, %s, now()) ON CONFLICT (id) DO UPDATE "
            f"SET before = greatest(EXCLUDED.before, {table}.before), updated_at = now()",
            [before],
        )
        # Dead letters (whole messages, user ids included) go with the outcomes of their time.
        cursor.execute(f"DELETE FROM {DEAD_LETTER_TABLE} WHERE created_at < %s", [before])
        progress.dead_letters = cursor.rowcount
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {OUTCOME_TABLE} WHERE id IN ("
                f"SELECT id FROM {OUTCOME_TABLE} WHERE event_time < %s ORDER BY event_time LIMIT %s "
                "FOR UPDATE SKIP LOCKED)",
                [before, batch_size],
            )
            deleted = cursor.rowcount
        if not deleted:
            return
        progress.deleted += deleted
        progress.batches += 1
        yield progress
        if pause:
            time.sleep(pause)


@dataclass
class Erasure:
    outcomes: int
    dead_letters: int


def user_erase(*, user_id: str) -> Erasure:
    """Remove one user's outcomes (their rollup deltas subtracted and the touched hours'
    reach sketches rebuilt, in the same transaction) and every dead letter whose message
    mentions the user id as a JSON string (or whose Kafka key is it), and leave a tombstone
    (``ErasedUser``, a keyed hash) so they are never stored again. For privacy requests.

    Reach sketches of time whose raw rows were pruned cannot be rebuilt without the user: a
    sketch cannot subtract, so there the erased user stays counted (a number, not their id)."""
    needle = orjson.dumps(user_id)  # the id as it appears in a JSON message, quotes included
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {ERASED_TABLE} (user_hash, erased_at) VALUES (%s, now()) ON CONFLICT (user_hash) DO NOTHING",
            [erasure_hash(user_id)],
        )
        cursor.execute(f"SELECT id FROM {OUTCOME_TABLE} WHERE user_id = %s", [user_id])
        ids = [row[0] for row in cursor.fetchall()]
        deleted = rollups.delete_rows(cursor, ids=ids) if ids else {}
        rollups.rebuild_reach_buckets(cursor, deleted)
        cursor.execute(
            f"DELETE FROM {DEAD_LETTER_TABLE} WHERE position(%s::bytea in value) > 0 OR key = %s::bytea",
            [needle, user_id.encode()],
        )
        dead_letters = cursor.rowcount
    return Erasure(outcomes=sum(deleted.values()), dead_letters=dead_letters)
