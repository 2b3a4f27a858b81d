"""One outcome at a time: the API's and the admin's creates, updates and deletes. They parse
the submitted document with the consumer's parser (``outcomes.messages``), so an outcome is
valid or invalid for the same reasons whichever way it came in."""

from __future__ import annotations

import orjson
from django.conf import settings
from django.db import connection, transaction

from outcomes import rollups
from outcomes.messages import InvalidOutcome, OutcomeEvent, parse_outcome
from outcomes.models import AuctionOutcome
from outcomes.validation import MESSAGE_FIELDS
from outcomes.writes import erasure, tables
from outcomes.writes.batches import PreparedBatch, add_timeless, copy_rows, insert_via_stage

WRITABLE_FIELDS = MESSAGE_FIELDS


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
        if erasure.erased_users(cursor, {parsed.user_id}):
            raise OutcomeInvalid({"user_id": ["This user was erased on request: their outcomes are not stored again."]})
    return parsed


def outcome_create(*, document: dict) -> AuctionOutcome:
    """Store one new outcome (its rollups in the same transaction). Refuses a stored bid id."""
    if not isinstance(document, dict):
        raise OutcomeInvalid({"non_field_errors": ["Expected a JSON object."]})
    event = _validate(document)
    prepared = PreparedBatch([(event, None)], copy_rows([(event, None)]), [], {}, 0, rollups.Reach())
    with transaction.atomic(), connection.cursor() as cursor:
        mark = rollups.sequence_mark(cursor)
        inserted, _duplicates, _conflicts = insert_via_stage(cursor, prepared)
        if not inserted:
            raise OutcomeConflict({"bid_id": [f"An outcome with bid_id {event.bid_id!r} is already stored."]})
        rollups.append_inserted(cursor, after_id=mark, last_id=prepared.last_inserted_id)
        reach = rollups.Reach()
        if event.auction_timestamp is not None:
            reach.add(event.auction_timestamp, event.user_id)
        add_timeless(reach, [(event, None)], cursor)
        rollups.append_reach(cursor, reach)
    return AuctionOutcome.objects.get(bid_id=event.bid_id)


def _column_value(event: OutcomeEvent, name: str):
    """What the outcomes table stores in column ``name`` for ``event``."""
    value = getattr(event, name)
    return orjson.dumps(value).decode() if name == "user_interests" else value


def _as_message(name: str, value):
    """A stored or parsed value as a message document carries it."""
    if name in ("win_price", "bid_price"):
        return str(value)
    if name == "user_interests":
        return list(value or [])
    if name == "auction_timestamp":
        return value.isoformat() if value else None
    return value


def _document(row: AuctionOutcome) -> dict:
    """The stored columns as a message document (what an update is applied to)."""
    return {name: _as_message(name, getattr(row, name)) for name in MESSAGE_FIELDS}


def _same(event: OutcomeEvent, row: AuctionOutcome) -> bool:
    return all(
        _as_message(name, getattr(event, name)) == _as_message(name, getattr(row, name)) for name in MESSAGE_FIELDS
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
        values = [row.pk, *(_column_value(event, name) for name in MESSAGE_FIELDS), orjson.dumps(raw).decode()]
        values += [row.timestamp, row.created_at]
        cursor.execute(
            f"INSERT INTO {tables.OUTCOME_TABLE} (id, {tables.COLUMN_LIST}, timestamp, created_at, updated_at) "
            f"VALUES ({', '.join(['%s'] * len(values))}, now())",
            values,
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
