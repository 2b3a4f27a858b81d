"""Compaction: each key's partial rows merged into one, beside concurrent writers.

Every write appends its own partial rows (``pending``); readers sum all rows of a key, so
merging changes no answer. One ``DELETE … RETURNING`` feeding an ``INSERT`` per grain: one
statement, one snapshot, so rows committed meanwhile are neither lost nor counted twice. A
grain folded from a finer one (``Grain.folded_from``) receives the finer grain's merged
partial rows in the same statement.
"""

from __future__ import annotations

from django.db import connection

from outcomes import grains, pgcopy
from outcomes.grains import Grain, bucket_sql
from outcomes.rollups.sketches import HLL_LG_K

COMPACT_LOCK = 0x6F75_7463  # pg advisory lock key shared by compaction and rebuild

# Per process: the highest id below which every partial row has been merged, per table.
# New partial rows are found by a primary-key range scan above it; a row that committed late
# with a lower id is picked up by the full scan every FULL_SCAN_EVERY runs (until then it is
# simply one more row to sum: correctness never depends on compaction).
_WATERMARKS: dict[str, int] = {}
_RUNS = [0]
FULL_SCAN_EVERY = 60


def compact(*, max_keys: int = 50_000) -> dict[str, int]:
    """Merge each key's partial rows into one. Safe beside concurrent writers; returns rows merged per table.

    Skips (returns {}) if another process is compacting or rebuilding right now.
    """
    merged: dict[str, int] = {}
    _RUNS[0] += 1
    full = _RUNS[0] % FULL_SCAN_EVERY == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [COMPACT_LOCK])
        if not cursor.fetchone()[0]:
            return merged
        try:
            for grain in grains.GRAINS:
                cursor.execute(f"SELECT coalesce(max(id), 0) FROM {grain.table}")
                top = cursor.fetchone()[0]
                since = 0 if full else _WATERMARKS.get(grain.table, 0)
                if grain.family == "reach":
                    merged[grain.table], done = _compact_reach(cursor, grain, max_keys, since)
                else:
                    merged[grain.table], done = _compact_sums(cursor, grain, max_keys, since)
                if done:
                    _WATERMARKS[grain.table] = top
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [COMPACT_LOCK])
    return merged


def _folded_into(grain: Grain) -> list[Grain]:
    return [other for other in grains.GRAINS if other.family == grain.family and other.folded_from == grain.unit]


def _compact_sums(cursor, grain: Grain, max_keys: int, since: int) -> tuple[int, bool]:
    """Returns (rows merged, whether every pending row above ``since`` was handled).

    For a grain another is folded from, the same statement adds the merged partial rows'
    sums to the coarser grain: a partial row is counted there exactly when it stops being
    pending here, which is what readers rely on.
    """
    keys = ("bucket", *grain.dims)
    key_list = ", ".join(keys)
    join = " AND ".join(f"t.{k} = k.{k}" for k in keys)
    sums = ", ".join(f"sum({v})" for v in grain.values.names)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in grain.values.names)
    cursor.execute(
        f"SELECT count(*) FROM (SELECT DISTINCT {key_list} FROM {grain.table} WHERE id > %s AND pending) k",
        [since],
    )
    pending_keys = cursor.fetchone()[0]
    if not pending_keys:
        return 0, True
    cursor.execute(
        f"""
        WITH k AS (
            SELECT DISTINCT {key_list} FROM {grain.table} WHERE id > {int(since)} AND pending LIMIT {int(max_keys)}
        ),
        moved AS (DELETE FROM {grain.table} t USING k WHERE {join} RETURNING t.*),
        merged AS (
            INSERT INTO {grain.table} ({key_list}, {", ".join(grain.values.names)}, pending)
            SELECT {key_list}, {sums}, false FROM moved GROUP BY {key_list} HAVING {nonzero}
            RETURNING 1
        ){_fold_sql(grain)}
        SELECT (SELECT count(*) FROM moved)
        """
    )
    return cursor.fetchone()[0], pending_keys <= max_keys


def _fold_sql(grain: Grain) -> str:
    dims = ", ".join(grain.dims)
    sums = ", ".join(f"sum({v})" for v in grain.values.names)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in grain.values.names)
    return "".join(
        f""",
        folded_{target.unit} AS (
            INSERT INTO {target.table} (bucket, {dims}, {", ".join(grain.values.names)}, pending)
            SELECT {bucket_sql(target.unit, "bucket")}, {dims}, {sums}, true FROM moved
            WHERE pending GROUP BY 1, {dims} HAVING {nonzero}
            RETURNING 1
        )"""
        for target in _folded_into(grain)
    )


def _compact_reach(cursor, grain: Grain, max_keys: int, since: int) -> tuple[int, bool]:
    import datasketches

    cursor.execute(
        f"SELECT DISTINCT bucket FROM {grain.table} WHERE id > %s AND pending LIMIT {int(max_keys) + 1}", [since]
    )
    buckets = [row[0] for row in cursor.fetchall()]
    if not buckets:
        return 0, True
    complete = len(buckets) <= max_keys
    buckets = buckets[:max_keys]
    cursor.execute(f"DELETE FROM {grain.table} WHERE bucket = ANY(%s) RETURNING bucket, sketch", [buckets])
    unions: dict = {}
    moved = 0
    for bucket, blob in cursor.fetchall():
        moved += 1
        unions.setdefault(bucket, datasketches.hll_union(HLL_LG_K)).update(
            datasketches.hll_sketch.deserialize(bytes(blob))
        )
    rows = [(b, u.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact(), False) for b, u in unions.items()]
    pgcopy.copy_in(cursor, f"COPY {grain.table} (bucket, sketch, pending) FROM STDIN", pgcopy.rows_text(rows))
    return moved, complete
