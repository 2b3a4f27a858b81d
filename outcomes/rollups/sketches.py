"""Reach: distinct users per hour and day as HyperLogLog sketches (Apache DataSketches).

A write adds one sketch per hour it touches (and per day); compaction merges them. A sketch
cannot subtract, so deletes and updates rebuild the touched hours from the raw rows instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from outcomes import pgcopy
from outcomes.buckets import UNITS, truncate
from outcomes.grains import FAMILIES, Grain
from outcomes.models import AuctionOutcome
from outcomes.rollups.history import raw_rows_start

HLL_LG_K = 12  # 4,096 registers: relative standard error 1.04 / sqrt(4096) ≈ 1.6%
RAW = AuctionOutcome._meta.db_table
REACH_HOUR, REACH_DAY = FAMILIES["reach"]["hour"], FAMILIES["reach"]["day"]


def new_sketch():
    """An empty HyperLogLog sketch of the reach grains (lg_k 12, HLL_8)."""
    import datasketches

    return datasketches.hll_sketch(HLL_LG_K, datasketches.tgt_hll_type.HLL_8)


class Reach:
    """The users a write adds, as one HyperLogLog sketch per hour (sketches cannot subtract:
    deletes and updates rebuild the touched hours instead, see ``rebuild_reach_buckets``)."""

    def __init__(self) -> None:
        self.hours: dict[datetime, object] = {}

    def add(self, moment: datetime, user_id: str) -> None:
        hour = moment.replace(minute=0, second=0, microsecond=0)
        sketch = self.hours.get(hour)
        if sketch is None:
            sketch = self.hours[hour] = new_sketch()
        sketch.update(user_id)


def append_reach(cursor, reach: Reach) -> None:
    if not reach.hours:
        return
    import datasketches

    days: dict = {}
    for hour, sketch in reach.hours.items():
        union = days.get(truncate(hour, "day"))
        if union is None:
            union = days[truncate(hour, "day")] = datasketches.hll_union(HLL_LG_K)
        union.update(sketch)
    _copy(cursor, REACH_HOUR, [(h, sk.serialize_compact()) for h, sk in reach.hours.items()])
    result = datasketches.tgt_hll_type.HLL_8
    _copy(cursor, REACH_DAY, [(d, u.get_result(result).serialize_compact()) for d, u in days.items()])


def _copy(cursor, grain: Grain, rows: list[tuple]) -> None:
    pgcopy.copy_in(cursor, f"COPY {grain.table} (bucket, sketch) FROM STDIN", pgcopy.rows_text(rows))


def rebuild_reach_buckets(cursor, hours: Iterable[datetime]) -> None:
    """Recompute the reach sketches of these hours (and their days) from the raw rows.

    Used after deletes and updates, which a HyperLogLog sketch cannot subtract. The sketch
    rows are deleted first and the raw rows read after, so a write committed in between is
    either in the raw read or keeps its own sketch row (a sketch union is idempotent). Hours
    before ``raw_rows_start()`` are left alone (their raw rows are gone).
    """
    # Never where the raw rows were pruned: rebuilt from the few left there (a late outcome),
    # the sketch would forget every user of that time. There it stays as it is.
    cut = raw_rows_start()
    hours = sorted({h for h in hours if cut is None or h >= cut})
    if not hours:
        return
    days = sorted({truncate(h, "day") for h in hours})
    hour_grain, day_grain = REACH_HOUR, REACH_DAY
    cursor.execute(f"DELETE FROM {day_grain.table} WHERE bucket = ANY(%s)", [days])
    cursor.execute(f"DELETE FROM {hour_grain.table} WHERE bucket IN (SELECT b FROM unnest(%s) b)", [hours])
    # Every hour of each affected day is needed to rebuild the day sketch.
    cursor.execute(
        f"SELECT bucket, sketch FROM {hour_grain.table} WHERE bucket >= %s AND bucket < %s",
        [days[0], days[-1] + UNITS["day"]],
    )
    kept = cursor.fetchall()
    sketches = _raw_sketches(cursor, hours)
    hour_rows = [(h, s.serialize_compact()) for h, s in sketches.items()]
    import datasketches

    unions: dict = {}
    for hour, blob in [*kept, *hour_rows]:
        day = truncate(hour, "day")
        if day not in days:
            continue
        union = unions.setdefault(day, datasketches.hll_union(HLL_LG_K))
        union.update(datasketches.hll_sketch.deserialize(bytes(blob)))
    if hour_rows:
        _copy(cursor, hour_grain, hour_rows)
    day_rows = [(d, u.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact()) for d, u in unions.items()]
    if day_rows:
        _copy(cursor, day_grain, day_rows)


def _raw_sketches(cursor, hours: list[datetime]) -> dict:
    sketches: dict = {}
    for hour in hours:
        cursor.execute(
            f"SELECT DISTINCT user_id FROM {RAW} WHERE event_time >= %s AND event_time < %s",
            [hour, hour + UNITS["hour"]],
        )
        users = cursor.fetchall()
        if users:
            sketch = sketches[hour] = new_sketch()
            for (user,) in users:
                sketch.update(user)
    return sketches
