"""The query planner and the series calendar: pure functions, checked on random windows."""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from outcomes.buckets import UNITS, on_boundary, truncate
from outcomes.queries import calendar
from outcomes.queries.planner import (
    ALL,
    FUTURE_SLACK,
    MAX_TIME,
    MIN_TIME,
    RAW,
    TRIM_ANY,
    TRIM_FUTURE,
    TRIM_NONE,
    Cover,
    Piece,
    cover_window,
    decompose,
    describe,
)

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
    return sorted((p.lo, p.hi, p.unit) for p in cover.pieces)


def assert_exactly(cover: Cover, lo: datetime, hi: datetime) -> None:
    """The signed pieces count every moment of [lo, hi) once and nothing else: checked at
    every breakpoint of the pieces and between them (the count is constant in between)."""
    points = sorted({lo, hi, *(p.lo for p in cover.pieces), *(p.hi for p in cover.pieces)})
    probes = points + [a + (b - a) / 2 for a, b in zip(points, points[1:], strict=False)]
    for t in probes:
        count = sum(p.sign for p in cover.pieces if p.lo <= t < p.hi)
        assert count == (1 if lo <= t < hi else 0), (t, cover)
    for p in cover.pieces:
        assert p.lo < p.hi
        if p.unit not in (RAW, ALL):  # whole buckets of their grain
            assert on_boundary(p.lo, p.unit) and on_boundary(p.hi, p.unit), p


@pytest.mark.parametrize("units", UNIT_SETS)
@pytest.mark.parametrize("trim", [TRIM_NONE, TRIM_ANY, TRIM_FUTURE])
@pytest.mark.parametrize("whole", [False, True])
def test_signed_pieces_are_exactly_the_window(units, trim, whole):
    rng = random.Random(f"{units}{trim}{whole}")
    finest = UNITS[units[-1]]
    for _ in range(300):
        lo, hi = sorted([random_moment(rng), random_moment(rng)])
        if lo == hi:
            continue
        now = rng.choice([None, hi, hi - timedelta(seconds=rng.randrange(1, 90)), hi + timedelta(hours=1)])
        since = rng.choice([None, BASE, lo - timedelta(days=rng.randrange(0, 3))])
        cover = cover_window([lo, hi], units, now=now, since=since, trim=trim, whole=whole)
        assert_exactly(cover, lo, hi)
        if ALL in cover.units_used:  # everything, less what lies before and after the window
            assert whole and trim == TRIM_ANY
            continue
        # Everything read lies in the buckets holding the window's ends, or between them.
        assert all(truncate(lo, units[0]) <= p.lo and p.hi <= hi + UNITS[units[0]] for p in cover.pieces)
        raw_read = cover.edge_seconds + cover.trim_seconds
        # Raw rows between since and now (nothing is stored outside).
        before_now = sum(
            max(0.0, (min(p.hi, now or p.hi) - max(p.lo, since or p.lo)).total_seconds())
            for p in cover.pieces
            if p.unit == RAW
        )
        if trim == TRIM_NONE:
            assert all(p.sign > 0 for p in cover.pieces)
            assert raw_read < 2 * finest.total_seconds()
        elif trim == TRIM_FUTURE:  # only raw rows after now are left out, and only at the end
            assert all(p.unit != RAW or p.lo >= now - FUTURE_SLACK for p in cover.pieces if p.sign < 0)
        elif cover.units_used:  # at most about half a finest bucket of raw rows at each end
            assert before_now <= finest.total_seconds() * 1.2, cover


def test_a_window_ending_now_reads_no_raw_rows_at_its_end():
    now = datetime(2026, 12, 2, 16, 28, 38, tzinfo=UTC)
    cover = cover_window([now - timedelta(days=1), now], ("day", "hour", "minute"), now=now)
    end_pieces = [p for p in cover.pieces if p.hi > datetime(2026, 12, 2, tzinfo=UTC)]
    # The last day is read whole; what lies after now is subtracted (and holds nothing).
    assert [p for p in end_pieces if p.unit == RAW] == [Piece(-1, RAW, now, datetime(2026, 12, 2, 16, 29, tzinfo=UTC))]
    assert Piece(1, "day", datetime(2026, 12, 2, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC)) in end_pieces
    assert all(p.sign < 0 and p.lo >= now for p in end_pieces if p.unit != "day")
    # The start reads 22 s of raw rows (the shorter side of its minute).
    assert cover.edges == [(now - timedelta(days=1), now - timedelta(days=1) + timedelta(seconds=22))]
    assert describe("outcomes", cover) == "rollup:outcomes:day+hour+minute + raw edges 22 s - raw trims 22 s"
    # Reach cannot subtract: only the rest of the last hour after now is left out (checked empty).
    reach = cover_window([now - timedelta(days=1), now], ("day", "hour"), now=now, trim=TRIM_FUTURE)
    assert reach.trims == [(now, datetime(2026, 12, 2, 17, tzinfo=UTC))]
    assert reach.edges == [(now - timedelta(days=1), datetime(2026, 12, 1, 17, tzinfo=UTC))]


def test_the_last_28_days_of_30_are_everything_less_2_days():
    since = datetime(2026, 11, 2, 16, 30, tzinfo=UTC)  # the first outcome
    now = datetime(2026, 12, 2, 16, 28, 38, tzinfo=UTC)
    window = [now - timedelta(days=28), now]
    cover = cover_window(window, ("day", "hour"), now=now, since=since, whole=True)
    assert cover.segments[ALL] == [(MIN_TIME, MAX_TIME)]
    # Subtracted: every day before the window's first one (read from 1970: empty before `since`).
    assert cover.subtracted["day"][0] == (MIN_TIME, datetime(2026, 11, 5, tzinfo=UTC))
    assert_exactly(cover, *window)
    assert not cover_window(window, ("day", "hour"), now=now, since=since).subtracted.get(ALL)
    # With a year of history the window is read from its inside.
    long_ago = now - timedelta(days=365)
    assert ALL not in cover_window(window, ("day", "hour"), now=now, since=long_ago, whole=True).units_used


def test_a_partial_day_is_read_whole_when_its_rest_is_shorter():
    lo = datetime(2026, 11, 5, 21, tzinfo=UTC)  # 3 hours before midnight: read as hours
    hi = datetime(2026, 12, 2, 2, tzinfo=UTC)  # 2 hours after: read as hours
    assert cover_window([lo, hi], ("day", "hour")).subtracted == {}
    hi = datetime(2026, 12, 2, 22, tzinfo=UTC)  # 22 hours into the day: the day, minus 2 hours
    cover = cover_window([lo, hi], ("day", "hour"))
    assert cover.segments["day"] == [(datetime(2026, 11, 6, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC))]
    assert cover.subtracted == {"hour": [(hi, datetime(2026, 12, 3, tzinfo=UTC))]}


def test_the_coarsest_buckets_are_used():
    lo = datetime(2026, 10, 10, 0, 0, 7, tzinfo=UTC)
    hi = datetime(2026, 11, 7, 0, 0, 7, tzinfo=UTC)  # 28 days, edges at :07 s
    segments, edges = decompose(lo, hi, ("day", "hour", "minute"))
    assert segments["day"] == [(datetime(2026, 10, 11, tzinfo=UTC), datetime(2026, 11, 7, tzinfo=UTC))]
    assert segments["hour"] == [(datetime(2026, 10, 10, 1, tzinfo=UTC), datetime(2026, 10, 11, tzinfo=UTC))]
    assert segments["minute"] == [(datetime(2026, 10, 10, 0, 1, tzinfo=UTC), datetime(2026, 10, 10, 1, tzinfo=UTC))]
    assert edges == [(lo, datetime(2026, 10, 10, 0, 1, tzinfo=UTC)), (datetime(2026, 11, 7, tzinfo=UTC), hi)]
    cover = cover_window([lo, hi], ("day", "hour", "minute"), trim=TRIM_NONE)
    assert describe("outcomes", cover) == "rollup:outcomes:day+hour+minute + raw edges 60 s"
    hourly = cover_window([lo, hi], ("day", "hour"), trim=TRIM_NONE)
    assert describe("domain", hourly) == "rollup:domain:day+hour + raw edges 3600 s"
    # The first day whole, less its 7 s before the window: cheaper than its 23 h 59 min 53 s inside.
    trimmed = cover_window([lo, hi], ("day", "hour"))
    assert describe("domain", trimmed) == "rollup:domain:day + raw edges 7 s - raw trims 7 s"


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
            cover = cover_window(boundaries, units, now=hi)
            assert_exactly(cover, lo, hi)
            parts = pieces(cover)
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
