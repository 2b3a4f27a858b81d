"""The query planner and the series calendar: pure functions, checked on random windows."""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from outcomes.buckets import UNITS, on_boundary, truncate
from outcomes.queries import calendar
from outcomes.queries.planner import Cover, cover_window, decompose, describe

pytestmark = pytest.mark.fast
BASE = datetime(2026, 10, 10, tzinfo=UTC)
UNIT_SETS = [("day", "hour", "minute"), ("day", "hour"), ("hour",), ("minute",), ("hour", "minute")]


def random_moment(rng: random.Random) -> datetime:
    moment = BASE + timedelta(seconds=rng.randrange(0, 40 * 86400))
    roll = rng.random()
    if roll < 0.2:
        return truncate(moment, rng.choice(["minute", "hour", "day"]))
    return moment + timedelta(microseconds=rng.randrange(10**6) if roll < 0.5 else 0)


def pieces(cover: Cover) -> list[tuple[datetime, datetime, str]]:
    out = [(lo, hi, unit) for unit, ranges in cover.segments.items() for lo, hi in ranges]
    return sorted(out + [(lo, hi, "raw") for lo, hi in cover.edges])


@pytest.mark.parametrize("units", UNIT_SETS)
def test_buckets_and_edges_are_exactly_the_window(units):
    rng = random.Random(str(units))
    for _ in range(500):
        lo, hi = sorted([random_moment(rng), random_moment(rng)])
        if lo == hi:
            continue
        cover = cover_window([lo, hi], units)
        parts = pieces(cover)
        # Disjoint, in order, no gap: together exactly [lo, hi).
        assert parts[0][0] == lo and parts[-1][1] == hi
        for (_, a_hi, _), (b_lo, _, _) in zip(parts, parts[1:], strict=False):
            assert a_hi == b_lo
        for piece_lo, piece_hi, unit in parts:
            assert piece_lo < piece_hi
            if unit != "raw":  # whole buckets of their grain
                assert on_boundary(piece_lo, unit) and on_boundary(piece_hi, unit)
        # The edges are shorter than the finest grain, one at each end at most; a window
        # holding no whole bucket is one edge (then shorter than two buckets).
        finest = UNITS[units[-1]]
        if not cover.units_used:
            assert cover.edges == [(lo, hi)] and hi - lo < 2 * finest
            continue
        assert len(cover.edges) <= 2
        for edge_lo, edge_hi in cover.edges:
            assert edge_hi - edge_lo < finest
            assert edge_lo == lo or edge_hi == hi


def test_the_coarsest_buckets_are_used():
    lo = datetime(2026, 10, 10, 0, 0, 7, tzinfo=UTC)
    hi = datetime(2026, 11, 7, 0, 0, 7, tzinfo=UTC)  # 28 days, edges at :07 s
    segments, edges = decompose(lo, hi, ("day", "hour", "minute"))
    assert segments["day"] == [(datetime(2026, 10, 11, tzinfo=UTC), datetime(2026, 11, 7, tzinfo=UTC))]
    assert segments["hour"] == [(datetime(2026, 10, 10, 1, tzinfo=UTC), datetime(2026, 10, 11, tzinfo=UTC))]
    assert segments["minute"] == [(datetime(2026, 10, 10, 0, 1, tzinfo=UTC), datetime(2026, 10, 10, 1, tzinfo=UTC))]
    assert edges == [(lo, datetime(2026, 10, 10, 0, 1, tzinfo=UTC)), (datetime(2026, 11, 7, tzinfo=UTC), hi)]
    cover = cover_window([lo, hi], ("day", "hour", "minute"))
    assert describe("outcomes", cover) == "rollup:outcomes:day+hour+minute + raw edges 60 s"
    assert describe("domain", cover_window([lo, hi], ("day", "hour"))) == "rollup:domain:day+hour + raw edges 3600 s"


@pytest.mark.parametrize("tz", ["UTC", "Europe/Paris", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York"])
@pytest.mark.parametrize("granularity", ["minute", "hour", "day", "week"])
def test_no_rollup_bucket_straddles_a_series_boundary(tz, granularity):
    rng = random.Random(f"{tz}{granularity}")
    zone = ZoneInfo(tz)
    span = {"minute": 0.9, "hour": 20, "day": 60, "week": 200}[granularity]
    for _ in range(40):
        lo = random_moment(rng)
        hi = lo + timedelta(days=rng.uniform(0.01, span))
        boundaries = calendar.timeseries_buckets(granularity=granularity, start=lo, end=hi, tz=zone)
        for units in UNIT_SETS:
            cover = cover_window(boundaries, units)
            parts = pieces(cover)
            assert parts[0][0] == lo and parts[-1][1] == hi
            for (_, a_hi, _), (b_lo, _, _) in zip(parts, parts[1:], strict=False):
                assert a_hi == b_lo
            inner = boundaries[1:-1]
            for piece_lo, piece_hi, unit in parts:
                if unit == "raw":
                    continue
                # The piece is whole buckets of its grain: one straddles a series boundary
                # exactly when that boundary lies inside the piece off the grain's boundaries.
                inside = inner[bisect_right(inner, piece_lo) : bisect_left(inner, piece_hi)]
                assert all(on_boundary(b, unit) for b in inside), (piece_lo, piece_hi, unit)


def test_series_labels_use_the_zone_offset():
    paris = ZoneInfo("Europe/Paris")
    label = calendar.labeller(paris)
    assert label(datetime(2026, 11, 2, 23, tzinfo=UTC)) == "2026-11-03T00:00:00+01:00"
    assert label(datetime(2026, 7, 2, 22, tzinfo=UTC)) == "2026-07-03T00:00:00+02:00"
    assert calendar.labeller(ZoneInfo("UTC"))(datetime(2026, 11, 2, 23, tzinfo=UTC)) == "2026-11-02T23:00:00Z"
    start = datetime(2026, 11, 2, 15, 4, 44, 463202, tzinfo=UTC)
    boundaries = calendar.timeseries_buckets(granularity="day", start=start, end=start + timedelta(days=2), tz=paris)
    assert calendar.bucket_start(boundaries, "day", paris) == datetime(2026, 11, 1, 23, tzinfo=UTC)
    assert calendar.bucket_end(boundaries, "day", paris) == datetime(2026, 11, 4, 23, tzinfo=UTC)
