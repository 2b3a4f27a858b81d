"""Erasure on request: a user's outcomes and dead letters go, and a tombstone (a keyed hash
of the id) keeps them from being stored again by a late message, a replay or the API."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction

from analytics.privacy import user_hash
from outcomes import rollups
from outcomes.writes import tables

logger = logging.getLogger("outcomes.writes")


def erasure_hash(user_id: str) -> str:
    """The keyed hash that stands for an erased user (tombstone, audit line)."""
    if not settings.PRIVACY_HASH_KEY:  # the roles that write refuse to start without it
        raise ImproperlyConfigured("PRIVACY_HASH_KEY is not set: erased users cannot be recognised.")
    return user_hash(user_id, settings.PRIVACY_HASH_KEY)


def erased_users(cursor, users: set[str]) -> set[str]:
    """Which of these user ids were erased (their tombstones, by keyed hash). One cheap probe
    when nobody was ever erased."""
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {tables.ERASED_TABLE})")
    if not cursor.fetchone()[0] or not users:
        return set()
    by_hash = {erasure_hash(user): user for user in users}
    cursor.execute(f"SELECT user_hash FROM {tables.ERASED_TABLE} WHERE user_hash = ANY(%s)", [list(by_hash)])
    return {by_hash[row[0]] for row in cursor.fetchall()}


def drop_erased(cursor, *, after_id: int, users: set[str]) -> int:
    """Delete what this write stored for erased users (a late message, a replay), with their
    rollup deltas subtracted and the touched hours' reach rebuilt; how many."""
    erased = erased_users(cursor, users)
    if not erased:
        return 0
    cursor.execute(
        f"SELECT id FROM {tables.OUTCOME_TABLE} WHERE id > %s AND user_id = ANY(%s)", [after_id, list(erased)]
    )
    ids = [row[0] for row in cursor.fetchall()]
    deleted = rollups.delete_rows(cursor, ids=ids)
    rollups.rebuild_reach_buckets(cursor, deleted)
    logger.info("outcomes of erased users not stored", extra={"outcomes": len(ids)})
    return len(ids)


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
            f"INSERT INTO {tables.ERASED_TABLE} (user_hash, erased_at) VALUES (%s, now()) "
            "ON CONFLICT (user_hash) DO NOTHING",
            [erasure_hash(user_id)],
        )
        cursor.execute(f"SELECT id FROM {tables.OUTCOME_TABLE} WHERE user_id = %s", [user_id])
        ids = [row[0] for row in cursor.fetchall()]
        deleted = rollups.delete_rows(cursor, ids=ids) if ids else {}
        rollups.rebuild_reach_buckets(cursor, deleted)
        cursor.execute(
            f"DELETE FROM {tables.DEAD_LETTER_TABLE} WHERE position(%s::bytea in value) > 0 OR key = %s::bytea",
            [needle, user_id.encode()],
        )
        dead_letters = cursor.rowcount
    return Erasure(outcomes=sum(deleted.values()), dead_letters=dead_letters)
