"""Where the raw outcomes start after a prune: before it the rollups are the only record."""

from __future__ import annotations

from datetime import datetime

from django.db import connection

from outcomes.models import RawRetention


class PrunedHistory(ValueError):
    """A rebuild asked to start where the raw rows were pruned: it would erase the rollups
    there, which are the only record left of that time."""


def raw_rows_start() -> datetime | None:
    """Where the raw outcomes start, if ``prune_outcomes`` deleted older ones (a whole UTC
    day). Before it the rollups are the record: nothing raw is left to compare or rebuild.

    The row ``queries.raw_horizon`` reads for the API (on the read replica, on every list
    count); this one reads the primary, where verify and rebuild run, and also answers on a
    database migrated only part-way (migration 0004 rebuilds the rollups before 0008 adds it)."""
    table = RawRetention._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [table])  # migration 0004 rebuilds before 0008 makes it
        if cursor.fetchone()[0] is None:
            return None
        cursor.execute(f"SELECT before FROM {table} WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row else None
