"""Verify and rebuild: the rollups against what the raw rows say, and recomputed from them.

Both read the catalogue (``outcomes.grains``): a grain's raw recomputation is its delta
declaration applied to every raw row at once. Neither ever touches time whose raw rows were
pruned (``history.raw_rows_start``): there the rollups are the only record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction

from outcomes import grains
from outcomes.buckets import ALL_TIME, UNITS, truncate
from outcomes.grains import DELTA_COLUMNS, Grain, bucket_sql
from outcomes.models import AuctionOutcome
from outcomes.rollups.compaction import COMPACT_LOCK
from outcomes.rollups.deltas import grain_select
from outcomes.rollups.history import PrunedHistory, raw_rows_start
from outcomes.rollups.sketches import HLL_LG_K, new_sketch, rebuild_reach_buckets

RAW = AuctionOutcome._meta.db_table


def _window(column: str, since: datetime | None, until: datetime | None) -> tuple[str, list]:
    """``column`` in [since, until), either end open when None."""
    where, params = ["true"], []
    if since is not None:
        where.append(f"{column} >= %s")
        params.append(since)
    if until is not None:
        where.append(f"{column} < %s")
        params.append(until)
    return " AND ".join(where), params


def _raw_select(grain: Grain, since: datetime | None, until: datetime | None) -> tuple[str, list]:
    """SQL computing ``grain``'s rows from the raw table, over [since, until): the same
    declaration as the write path's deltas, over every raw row at once (``verify`` checks the
    incremental path — signs, summing, folding, compaction — against it)."""
    cond, params = _window("event_time", since, until)
    select = grain_select(grain, "b", bucket_sql(grain.unit, "event_time"))
    return f"WITH b AS (SELECT {DELTA_COLUMNS} FROM {RAW} WHERE {cond}) {select}", params


def _rollup_select(grain: Grain, since: datetime | None, until: datetime | None) -> tuple[str, list]:
    """What readers see of ``grain`` (for a folded grain: its rows plus the finer grain's pending ones)."""
    cond, params = _window("bucket", since, until)
    columns = ", ".join((*grain.dims, *grain.values.names))
    source = f"SELECT bucket, {columns} FROM {grain.table} WHERE {cond}"
    if grain.pending_source is not None:
        source += (
            f" UNION ALL SELECT {bucket_sql(grain.unit, 'bucket')}, {columns} "
            f"FROM {grain.pending_source.table} WHERE pending AND {cond}"
        )
        params = params * 2
    keys = ", ".join(("bucket", *grain.dims))
    sums = ", ".join(grain.values.total(v) for v in grain.values.names)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in grain.values.names)
    sql = f"SELECT {keys}, {sums} FROM ({source}) x GROUP BY {keys} HAVING {nonzero}"
    return sql, params


@dataclass
class Difference:
    table: str
    key: tuple
    stored: tuple | None
    expected: tuple | None


def verify(*, since: datetime | None = None, until: datetime | None = None) -> list[Difference]:
    """Every difference between the rollups and what the raw rows say, over [since, until).

    Buckets are compared whole: ``since`` is rounded down to the day. All-time grains are
    compared only when the whole range is (no ``since``, no ``until``). After a prune the
    comparison starts where the raw rows do (``raw_rows_start``), whatever ``since`` says:
    the rollups of pruned time have no raw rows left to agree with.
    """
    since = truncate(since.astimezone(UTC), "day") if since else None
    cut = raw_rows_start()
    if cut is not None and (since is None or since < cut):
        since = cut
    differences: list[Difference] = []
    # One snapshot for every read: consumers commit rows and their deltas together, so raw
    # rows and rollups agree within a snapshot, but not across statements while they write.
    # (Inside a caller's transaction, the caller's isolation applies.)
    outermost = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if outermost:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for grain in grains.GRAINS:
            if grain.unit == "all" and (since or until):
                continue
            if grain.family == "reach":
                differences.extend(_verify_reach(cursor, grain, since, until))
                continue
            raw_sql, raw_params = _raw_select(grain, since, until)
            cursor.execute(raw_sql, raw_params)
            expected = {tuple(row[: 1 + len(grain.dims)]): tuple(row[1 + len(grain.dims) :]) for row in cursor}
            sql, params = _rollup_select(grain, since, until)
            cursor.execute(sql, params)
            stored = {tuple(row[: 1 + len(grain.dims)]): tuple(row[1 + len(grain.dims) :]) for row in cursor}
            for key in sorted(expected.keys() | stored.keys(), key=repr):
                if expected.get(key) != stored.get(key):
                    differences.append(Difference(grain.table, key, stored.get(key), expected.get(key)))
    return differences


def _verify_reach(cursor, grain: Grain, since, until) -> list[Difference]:
    import datasketches

    cond, params = _window("bucket", since, until)
    cursor.execute(f"SELECT bucket, sketch FROM {grain.table} WHERE {cond}", params)
    stored: dict = {}
    for bucket, blob in cursor.fetchall():
        stored.setdefault(bucket, datasketches.hll_union(HLL_LG_K)).update(
            datasketches.hll_sketch.deserialize(bytes(blob))
        )
    raw_where, params = _window("event_time", since, until)
    expected = {}
    cursor.execute(
        f"SELECT DISTINCT date_trunc('{grain.unit}', event_time, 'UTC'), user_id FROM {RAW} WHERE {raw_where}", params
    )
    for bucket, user in cursor.fetchall():
        sketch = expected.get(bucket)
        if sketch is None:
            sketch = expected[bucket] = new_sketch()
        sketch.update(user)
    differences = []
    for bucket in sorted(expected.keys() | stored.keys()):
        want = expected.get(bucket)
        have = stored.get(bucket)
        if want is not None:
            union = datasketches.hll_union(HLL_LG_K)
            union.update(want)
            want = union
        want_state = _sketch_state(want) if want is not None else None
        have_state = _sketch_state(have) if have is not None else None
        if want_state is None and have is not None and have.is_empty():
            continue
        if want_state != have_state:
            differences.append(
                Difference(
                    grain.table,
                    (bucket,),
                    (round(have.get_estimate()),) if have is not None else None,
                    (round(want.get_estimate()),) if want is not None else None,
                )
            )
    return differences


def _sketch_state(union):
    """What two sketches of the same users share: their registers (HLL mode) or, for a
    handful of users (coupon mode), their estimate. The estimate of a sketch in HLL mode
    depends on how it was built (in order or merged), so registers are compared instead."""
    import datasketches

    data = union.get_result(datasketches.tgt_hll_type.HLL_8).serialize_updatable()
    if data[0] == 10:  # preamble ints of HLL mode; 2 and 3 are the coupon list and set
        return data[40:]
    return round(union.get_estimate(), 6)


def rebuild(
    *, since: datetime | None = None, until: datetime | None = None, days: int = 1, only: set[str] | None = None
) -> int:
    """Recompute every rollup (``only``: the grains of those keys, e.g. ``domain.hour``) from
    the raw rows over [since, until), ``days`` per transaction.

    Online: each table's chunk is replaced by one statement (one snapshot), so writes
    committed meanwhile are neither lost nor doubled. ``since`` is rounded down and
    ``until`` up to whole days (day rows cannot be rebuilt in part); without ``since`` the
    rebuild starts at the oldest raw row. Returns the number of chunks rebuilt.

    Never before ``raw_rows_start()``: the rollups of pruned time are the only record of it.
    Without ``since`` the rebuild starts there at the earliest (late outcomes stored after a
    prune may be older); a ``since`` before it raises ``PrunedHistory``.
    """

    cut = raw_rows_start()
    if since is not None and cut is not None and truncate(since.astimezone(UTC), "day") < cut:
        raise PrunedHistory(
            f"raw outcomes before {cut.date().isoformat()} were pruned: a rebuild from "
            f"{since.date().isoformat()} would erase the rollups of that time, which are its only record. "
            f"Rebuild from {cut.date().isoformat()} on."
        )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min(event_time), max(event_time) FROM {RAW}")
        oldest, newest = cursor.fetchone()
    if oldest is None and since is None:
        return 0
    start = truncate((since or oldest).astimezone(UTC), "day")
    if cut is not None:
        start = max(start, cut)
    if until is not None:
        stop = truncate(until.astimezone(UTC), "day")
        stop = stop if stop == until else stop + UNITS["day"]
    else:
        stop = truncate(newest, "day") + UNITS["day"] if newest else start + UNITS["day"]
    chunk = UNITS["day"] * max(1, days)
    chunks = 0
    while start < stop:
        start = _next_filled_day(start, stop)  # years without data cost nothing
        if start >= stop:
            break
        end = min(start + chunk, stop)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [COMPACT_LOCK])
            for grain in grains.GRAINS:
                if grain.family == "reach" or grain.unit == "all" or (only and grain.key not in only):
                    continue
                raw_sql, raw_params = _raw_select(grain, start, end)
                columns = ", ".join(("bucket", *grain.dims, *grain.values.names))
                cursor.execute(
                    f"""
                    WITH gone AS (DELETE FROM {grain.table} WHERE bucket >= %s AND bucket < %s RETURNING 1)
                    INSERT INTO {grain.table} ({columns}, pending)
                    SELECT *, false FROM ({raw_sql}) fresh
                    """,
                    [start, end, *raw_params],
                )
            hours = []
            moment = start
            while moment < end:
                hours.append(moment)
                moment += UNITS["hour"]
            if not only or any(key.startswith("reach.") for key in only):
                rebuild_reach_buckets(cursor, hours)
            for grain in grains.GRAINS:
                if grain.unit == "all" and (not only or grain.key in only):
                    _rebuild_total(cursor, grain)
        chunks += 1
        start = end
    return chunks


def _next_filled_day(start: datetime, stop: datetime) -> datetime:
    """The first day at or after ``start`` with raw rows or rollup rows (``stop`` if none):
    a day with neither has nothing to rebuild. Every raw row has a minute row, so the minute
    grain stands for the rollups."""
    minute = grains.FAMILIES["outcomes"]["minute"].table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT least((SELECT min(event_time) FROM {RAW} WHERE event_time >= %s), "
            f"(SELECT min(bucket) FROM {minute} WHERE bucket >= %s))",
            [start, start],
        )
        found = cursor.fetchone()[0]
    return stop if found is None else max(start, truncate(found.astimezone(UTC), "day"))


def _rebuild_total(cursor, grain: Grain) -> None:
    """An all-time grain is the sum of what was folded into its family's day rows (not of the
    raw rows: rollups outlive them). One statement, like every rebuild step."""
    day, finer = grains.FAMILIES[grain.family]["day"], grain.pending_source
    dims = ", ".join(grain.dims)
    values = ", ".join(grain.values.names)
    sums = ", ".join(f"sum({v})" for v in grain.values.names)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in grain.values.names)
    # It holds what was folded: readers add the rows still pending in the grain it is folded
    # from. Folded from hours, every day row is folded hours; folded from days, the day rows no
    # longer pending.
    folded = f"SELECT {dims}, {values} FROM {day.table}" + (" WHERE NOT pending" if finer is day else "")
    cursor.execute(
        f"""
        WITH gone AS (DELETE FROM {grain.table} RETURNING 1)
        INSERT INTO {grain.table} (bucket, {dims}, {values}, pending)
        SELECT %s, {dims}, {sums}, false FROM ({folded}) x GROUP BY {dims} HAVING {nonzero}
        """,
        [ALL_TIME],
    )
