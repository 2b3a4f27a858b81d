"""Retention: raw outcomes (and dead letters) older than a cut are deleted in short batches;
the rollups keep the history."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from outcomes import rollups
from outcomes.models import RawRetention
from outcomes.writes import tables


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
            cursor.execute(f"SELECT count(*) FROM {tables.OUTCOME_TABLE} WHERE event_time < %s", [before])
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
        cursor.execute(f"DELETE FROM {tables.DEAD_LETTER_TABLE} WHERE created_at < %s", [before])
        progress.dead_letters = cursor.rowcount
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {tables.OUTCOME_TABLE} WHERE id IN ("
                f"SELECT id FROM {tables.OUTCOME_TABLE} WHERE event_time < %s ORDER BY event_time LIMIT %s "
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
