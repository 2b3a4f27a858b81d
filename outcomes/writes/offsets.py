"""Stored consumer offsets: read, moved past messages Kafka lost, reset by an operator.
Each change is fenced on the offset it expects, like a batch's."""

from __future__ import annotations

from django.db import connection, transaction

from outcomes.models import LostOffsets
from outcomes.writes import tables


def stored_offsets(*, consumer_group: str, topic: str) -> dict[int, int]:
    """Next offset to read for each partition of ``topic`` this group has stored."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT partition, next_offset FROM {tables.OFFSET_TABLE} WHERE consumer_group = %s AND topic = %s",
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
            f"UPDATE {tables.OFFSET_TABLE} SET next_offset = %s, updated_at = now() "
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
                f"INSERT INTO {tables.OFFSET_TABLE} (consumer_group, topic, partition, next_offset, updated_at) "
                "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (consumer_group, topic, partition) DO NOTHING",
                [consumer_group, topic, partition, to],
            )
        else:
            cursor.execute(
                f"UPDATE {tables.OFFSET_TABLE} SET next_offset = %s, updated_at = now() "
                "WHERE consumer_group = %s AND topic = %s AND partition = %s AND next_offset = %s",
                [to, consumer_group, topic, partition, expected],
            )
        return cursor.rowcount == 1
