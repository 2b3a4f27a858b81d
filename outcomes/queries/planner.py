"""The query planner: which rollup buckets and which raw-table ranges answer a window.

Pure: times in, a plan out; no database, no Django. The selectors run the plan.

A report's window [start, end) — or a time series' buckets between their boundaries — is
covered by whole buckets of the rollup grains, the coarsest that fit (days in the middle,
then hours, then minutes towards the ends: Druid's segments of several granularities), and
by **edges** — what no whole bucket covers, at most one bucket of the finest grain at each end
— read from the raw table through the ``event_time`` index.

A partial bucket at either end of the window can be covered two ways: from the inside (the
finer buckets and raw rows inside the window), or whole, minus its rest outside the window
(the finer buckets and raw rows there, **subtracted**). The planner takes whichever reads
less, level by level: so a window that ends "now" to the second reads no raw rows at its
end however busy the current minute is (the rest of the last bucket lies after now, where
nothing is stored yet), and each end reads at most about half a bucket at each level. Sums
and counts subtract exactly; a distinct count does not, so reach only leaves out a rest that
lies after now, and checks that it is empty (``TRIM_FUTURE``).

The answer stays exact: the signed pieces add up to exactly the window, they are read in
one statement (one snapshot), and a bucket's rollup rows always equal its raw rows at any
snapshot (the write service commits both together).

A time series adds its inner bucket boundaries: every rollup row used must lie inside one
series bucket. When every inner boundary lies on a grain's boundary (a UTC hour for hourly
buckets, a local midnight on a whole hour for daily ones), the window is covered once with
that grain and the finer ones, and whatever is read beyond the window belongs to its first
or last series bucket. Otherwise (a zone with a :45 offset, say, and no minute grain) each
bucket is covered on its own, from the inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from outcomes.buckets import UNITS, ceil, on_boundary, truncate

Range = tuple[datetime, datetime]
RAW = "raw"
ALL = "all"  # the all-time grain: one bucket
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2200, 1, 1, tzinfo=UTC)

TRIM_ANY = "any"  # subtract wherever that reads less
TRIM_FUTURE = "future"  # only leave out a rest that lies after "now" (nothing stored there)
TRIM_NONE = "none"  # never subtract (a measure that cannot, such as a distinct count)

# Relative costs: a rollup bucket is one unit; the raw rows of one finest-grain bucket's
# time cost RAW_BUCKET_COST units (10M outcomes over 30 days: a raw hour is ~14,000 rows, a
# domain × hour bucket ~1,700 rollup rows; a raw minute ~230 rows, a minute bucket ~6).
RAW_BUCKET_COST = 8.0
# What lies after "now" minus this is treated as empty (clients' clocks, request latency);
# it only steers the cost: correctness never depends on it.
FUTURE_SLACK = timedelta(seconds=60)


@dataclass(frozen=True)
class Piece:
    sign: int  # +1 added, -1 subtracted
    unit: str  # a grain's time unit, or RAW for the raw table
    lo: datetime
    hi: datetime


@dataclass(frozen=True)
class Cover:
    """Signed pieces that add up to the window: rollup buckets and raw-table ranges."""

    pieces: list[Piece] = field(default_factory=list)

    def ranges(self, unit: str, sign: int = 1) -> list[Range]:
        return _merged([(p.lo, p.hi) for p in self.pieces if p.unit == unit and p.sign == sign])

    @property
    def segments(self) -> dict[str, list[Range]]:
        """Rollup buckets added, per unit (merged ranges)."""
        units = dict.fromkeys(p.unit for p in self.pieces if p.unit != RAW and p.sign > 0)
        return {unit: self.ranges(unit) for unit in units}

    @property
    def subtracted(self) -> dict[str, list[Range]]:
        """Rollup buckets subtracted, per unit."""
        units = dict.fromkeys(p.unit for p in self.pieces if p.unit != RAW and p.sign < 0)
        return {unit: self.ranges(unit, -1) for unit in units}

    @property
    def edges(self) -> list[Range]:
        """Raw ranges added."""
        return self.ranges(RAW)

    @property
    def trims(self) -> list[Range]:
        """Raw ranges subtracted."""
        return self.ranges(RAW, -1)

    @property
    def units_used(self) -> list[str]:
        return list(dict.fromkeys(p.unit for p in self.pieces if p.unit != RAW))

    @property
    def edge_seconds(self) -> float:
        return sum((hi - lo).total_seconds() for lo, hi in self.edges)

    @property
    def trim_seconds(self) -> float:
        return sum((hi - lo).total_seconds() for lo, hi in self.trims)


@dataclass(frozen=True)
class Plan:
    """Where a report's answer comes from: a rollup family's buckets plus raw edges."""

    family: str
    cover: Cover
    all_time: bool = False  # one all-time row per key answers (no start, no end)

    @property
    def edges(self) -> list[Range]:
        return self.cover.edges

    @property
    def trims(self) -> list[Range]:
        return self.cover.trims

    @property
    def source(self) -> str:
        return describe(self.family, self.cover)


def describe(family: str, cover: Cover) -> str:
    """The ``X-Report-Source`` of a plan: ``rollup:<family>:<grains>``, then ``+ raw edges N s``
    when raw rows inside the window were read and ``- raw trims M s`` when raw rows beyond it
    were subtracted from a bucket read whole (N, M: total lengths in seconds)."""
    text = f"rollup:{family}:" + "+".join(sorted(cover.units_used, key=_coarse_first))
    if cover.edges:
        text += f" + raw edges {round(cover.edge_seconds, 3):g} s"
    if cover.trims:
        text += f" - raw trims {round(cover.trim_seconds, 3):g} s"
    return text


def _coarse_first(unit: str) -> float:
    return -UNITS[unit].total_seconds() if unit in UNITS else float("-inf")


def cover_window(
    cuts: Sequence[datetime],
    units: Sequence[str],
    *,
    now: datetime | None = None,
    since: datetime | None = None,
    trim: str = TRIM_ANY,
    whole: bool = False,
) -> Cover:
    """Cover [cuts[0], cuts[-1]) with signed pieces of ``units`` (coarsest first) and of the
    raw table, such that no bucket straddles an inner cut (a time series' bucket boundary).

    ``now`` and ``since``: nothing is stored after the one or before the other, so reading
    there costs nothing (``None``: everything costs its length). ``whole``: an all-time grain
    may answer (a total, not a series): the window is then also considered as everything
    minus what lies before and after it (the last 28 days of 30 are the whole less 2 days).
    """
    lo, hi = cuts[0], cuts[-1]
    if not units:
        return Cover([Piece(1, RAW, lo, hi)])
    inner = cuts[1:-1]
    if inner:
        # The coarsest unit every inner boundary lies on: buckets of it and of the finer units
        # never straddle one, so the whole window is covered at once.
        aligned = next((i for i, unit in enumerate(units) if all(on_boundary(b, unit) for b in inner)), None)
        if aligned is None:  # each series bucket from its inside: a rest would be in a neighbour
            coverer = _Coverer(units, now, TRIM_NONE, since)
            return Cover([p for a, b in zip(cuts, cuts[1:], strict=False) for p in coverer.cover(a, b, 0)[1]])
        units = units[aligned:]
    coverer = _Coverer(units, now, trim, since)
    cost, pieces = coverer.cover(lo, hi, 0)
    if whole and trim == TRIM_ANY:
        outside = [coverer.cover(MIN_TIME, lo, 0), coverer.cover(hi, MAX_TIME, 0)]
        if 1 + sum(c for c, _p in outside) < cost:
            pieces = [Piece(1, ALL, MIN_TIME, MAX_TIME)]
            pieces += [Piece(-p.sign, p.unit, p.lo, p.hi) for _c, side in outside for p in side]
    return Cover(pieces)


class _Coverer:
    """The cheapest signed cover of a range, level by level (a few levels, two ends each)."""

    def __init__(self, units: Sequence[str], now: datetime | None, trim: str, since: datetime | None = None) -> None:
        self.units = tuple(units)
        self.now = now
        self.since = since
        self.trim = trim
        self.finest = UNITS[self.units[-1]]

    def cover(self, a: datetime, b: datetime, level: int) -> tuple[float, list[Piece]]:
        """[a, b) with the units from ``level`` down, and the raw table."""
        if a >= b:
            return 0.0, []
        if level == len(self.units):
            return self._raw_cost(a, b), [Piece(1, RAW, a, b)]
        unit = self.units[level]
        lo, hi = ceil(a, unit), truncate(b, unit)
        if lo > hi:  # inside one bucket of this unit
            return self._partial(a, b, level)
        cost, pieces = (self._bucket_cost(lo, hi, unit), [Piece(1, unit, lo, hi)]) if lo < hi else (0.0, [])
        for x, y in ((a, lo), (hi, b)):  # the partial buckets at either end
            if x < y:
                side_cost, side = self._partial(x, y, level)
                cost += side_cost
                pieces += side
        return cost, pieces

    def _partial(self, x: datetime, y: datetime, level: int) -> tuple[float, list[Piece]]:
        """[x, y) inside one bucket of ``units[level]``: from its inside, or the bucket whole
        minus its rest — whichever costs less (and is allowed)."""
        inside = self.cover(x, y, level + 1)
        if self.trim == TRIM_NONE:
            return inside
        unit = self.units[level]
        bucket = truncate(x, unit)
        bucket_end = bucket + UNITS[unit]
        rest = [(bucket, x), (y, bucket_end)]
        if self.trim == TRIM_FUTURE:
            future = self.now is not None and level == len(self.units) - 1 and x == bucket
            if not future or y < self.now - FUTURE_SLACK:
                return inside  # reach: only a rest that lies after now, at the finest grain
            pieces = [Piece(1, unit, bucket, bucket_end), Piece(-1, RAW, y, bucket_end)]
            return 0.0, pieces
        cost, pieces = self._bucket_cost(bucket, bucket_end, unit), [Piece(1, unit, bucket, bucket_end)]
        for r_lo, r_hi in rest:
            rest_cost, rest_pieces = self.cover(r_lo, r_hi, level + 1)
            cost += rest_cost
            pieces += [Piece(-p.sign, p.unit, p.lo, p.hi) for p in rest_pieces]
        return (cost, pieces) if cost < inside[0] else inside

    def _bucket_cost(self, lo: datetime, hi: datetime, unit: str) -> float:
        if self.now is not None:
            hi = min(hi, ceil(self.now, unit))  # buckets after now hold nothing yet
        if self.since is not None:
            lo = max(lo, truncate(self.since, unit))  # nor those before the first outcome
        return max(0.0, (hi - lo) / UNITS[unit])

    def _raw_cost(self, lo: datetime, hi: datetime) -> float:
        if self.now is not None:
            hi = min(hi, self.now)
        if self.since is not None:
            lo = max(lo, self.since)
        return max(0.0, RAW_BUCKET_COST * ((hi - lo) / self.finest))


def decompose(lo: datetime, hi: datetime, units: Sequence[str]) -> tuple[dict[str, list[Range]], list[Range]]:
    """[lo, hi) from its inside only: whole buckets per unit (coarsest in the middle) and the
    raw edges no unit covers."""
    cover = Cover(_Coverer(units, None, TRIM_NONE).cover(lo, hi, 0)[1])
    return {unit: cover.ranges(unit) for unit in units}, cover.edges


def _merged(ranges: list[Range]) -> list[Range]:
    out: list[Range] = []
    for lo, hi in sorted(ranges):
        if out and out[-1][1] >= lo:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
