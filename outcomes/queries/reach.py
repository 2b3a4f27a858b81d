"""``reach``: distinct users.

With no filter but the window, from the HyperLogLog sketches of the window's whole hours and
days, united with a sketch of the users of its edges (read from the raw table): a union of
sketches is the sketch of the union, so the estimate and its error bound are those of a
sketch of every user in the window, whatever its edges. Relative standard error 1.6%; the
bounds are the sketch's 95% interval. With any other filter, or a window with no whole hour,
exact from the raw table.
"""

from __future__ import annotations

from analytics.dbrouting import read_db
from outcomes import rollups
from outcomes.queries import sql
from outcomes.queries.planner import cover_window, describe
from outcomes.queries.query import OutcomeQuery
from outcomes.queries.routing import MAX_TIME, MIN_TIME


def outcome_reach(*, query: OutcomeQuery) -> tuple[dict, str]:
    if not query.given() - {"start", "end"}:
        cover = cover_window([query.start or MIN_TIME, query.end or MAX_TIME], ("day", "hour"))
        if cover.units_used:
            return _estimate(query, cover), describe("reach", cover)
    where, params = sql.raw_where(query)
    with read_db().cursor() as cursor:
        cursor.execute(f"SELECT count(DISTINCT o.user_id) FROM {sql.RAW} o WHERE {where}", params)
        count = cursor.fetchone()[0]
    return {"reach": count, "exact": True, "lower_bound": count, "upper_bound": count}, "raw"


def _estimate(query: OutcomeQuery, cover) -> dict:
    import datasketches

    union = datasketches.hll_union(rollups.HLL_LG_K)
    with read_db().cursor() as cursor:
        for unit, ranges in cover.segments.items():
            if not ranges:
                continue
            cond, params = sql.ranges_sql(ranges)
            cursor.execute(f"SELECT sketch FROM {rollups.FAMILIES['reach'][unit].table} WHERE {cond}", params)
            for (blob,) in cursor.fetchall():
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
