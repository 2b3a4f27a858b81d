"""``reach``: distinct users.

With no filter but the window, from the HyperLogLog sketches of the window's whole hours and
days, united with a sketch of the users of its edges (read from the raw table): a union of
sketches is the sketch of the union, so the estimate and its error bound are those of a
sketch of every user in the window, whatever its edges. An edge's hour is read whole (no
raw rows) when the rest of the hour lies after now and holds nobody — a window that ends
"now" reads its last hour's sketch. Relative standard error 1.6%; the
bounds are the sketch's 95% interval. With any other filter, or a window with no whole hour,
exact from the raw table.
"""

from __future__ import annotations

from analytics.dbrouting import read_db
from outcomes import rollups
from outcomes.queries import routing, sql
from outcomes.queries.planner import MAX_TIME, MIN_TIME, TRIM_FUTURE, TRIM_NONE, cover_window, describe
from outcomes.queries.query import OutcomeQuery


def outcome_reach(*, query: OutcomeQuery) -> tuple[dict, str]:
    if not query.given() - {"start", "end"}:
        window = [query.start or MIN_TIME, query.end or MAX_TIME]
        # Sketches cannot subtract: an edge's hour is read whole only when the rest of it lies
        # after now (and, checked in the same statement as the sketches, holds nobody).
        cover = cover_window(window, ("day", "hour"), now=routing.stored_until(), trim=TRIM_FUTURE)
        if cover.units_used:
            estimate = _estimate(query, cover)
            if estimate is None:  # someone is stored after now: read that edge raw instead
                cover = cover_window(window, ("day", "hour"), trim=TRIM_NONE)
                estimate = _estimate(query, cover)
            if estimate is not None:
                return estimate, describe("reach", cover)
    where, params = sql.raw_where(query)
    with read_db().cursor() as cursor:
        cursor.execute(f"SELECT count(DISTINCT o.user_id) FROM {sql.RAW} o WHERE {where}", params)
        count = cursor.fetchone()[0]
    return {"reach": count, "exact": True, "lower_bound": count, "upper_bound": count}, "raw"


def _estimate(query: OutcomeQuery, cover) -> dict | None:
    """The union of the cover's sketches and of its edges' users; None if a trimmed rest
    turned out to hold outcomes (the hour's sketch would count their users)."""
    import datasketches

    union = datasketches.hll_union(rollups.HLL_LG_K)
    with read_db().cursor() as cursor:
        for unit, ranges in cover.segments.items():
            if not ranges:
                continue
            cond, params = sql.ranges_sql(ranges)
            sketches = f"SELECT sketch FROM {rollups.FAMILIES['reach'][unit].table} WHERE {cond}"
            if cover.trims and unit == "hour":
                trimmed, trim_params = sql.raw_where(query, ranges=cover.trims)
                cursor.execute(
                    f"SELECT EXISTS (SELECT 1 FROM {sql.RAW} o WHERE {trimmed}), array({sketches})",
                    [*trim_params, *params],
                )
                busy, blobs = cursor.fetchone()
                if busy:
                    return None
            else:
                cursor.execute(sketches, params)
                blobs = [blob for (blob,) in cursor.fetchall()]
            for blob in blobs:
                union.update(datasketches.hll_sketch.deserialize(bytes(blob)))
        if cover.edges:
            where, params = sql.raw_where(query, ranges=cover.edges)
            cursor.execute(f"SELECT DISTINCT o.user_id FROM {sql.RAW} o WHERE {where}", params)
            edge = rollups.new_sketch()
            for (user,) in cursor.fetchall():
                edge.update(user)
            union.update(edge)
    return {
        "reach": round(union.get_estimate()),
        "exact": False,
        "lower_bound": int(union.get_lower_bound(2)),
        "upper_bound": -int(-union.get_upper_bound(2) // 1),
        "relative_standard_error": round(1.04 / (1 << rollups.HLL_LG_K) ** 0.5, 4),
    }
