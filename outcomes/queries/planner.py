"""The query planner: which rollup buckets and which raw-table ranges answer a window.

Pure: times in, a plan out; no database, no Django. The selectors run the plan.

A report's window [start, end) — or a time series' buckets between their boundaries — is
covered by

* **whole buckets** of the rollup grains, the coarsest that fit: days in the middle, then
  hours, then minutes towards the ends (Druid's segments of several granularities);
* **edges**: what is left at either end, shorter than the family's finest grain — seconds for
  a family with a minute grain, at most an hour each for one whose finest grain is the hour.
  They are read from the raw table through the ``event_time`` index.

So a window that ends "now" to the second costs what an aligned one costs, plus a scan of a
few seconds (or minutes) of raw rows, and the answer is still exact: the buckets and the
edges are disjoint and together are exactly the window.

A time series adds its inner bucket boundaries: every rollup row used must lie inside one
bucket. When every inner boundary lies on a grain's boundary (a UTC hour for hourly buckets,
a local midnight on a whole hour for daily ones), the window is covered once with that grain
and the finer ones; otherwise (a zone with a :45 offset, say, and no minute grain) each
bucket is covered on its own, with edges around each inner boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from outcomes.buckets import ceil, on_boundary, truncate

Range = tuple[datetime, datetime]


@dataclass(frozen=True)
class Cover:
    """``segments``: per time unit, the merged ranges of whole buckets (coarsest unit first);
    ``edges``: the ranges left over, for the raw table."""

    segments: dict[str, list[Range]] = field(default_factory=dict)
    edges: list[Range] = field(default_factory=list)

    @property
    def units_used(self) -> list[str]:
        return [unit for unit, ranges in self.segments.items() if ranges]

    @property
    def edge_seconds(self) -> float:
        return sum((hi - lo).total_seconds() for lo, hi in self.edges)


@dataclass(frozen=True)
class Plan:
    """Where a report's answer comes from: a rollup family's buckets plus raw edges."""

    family: str
    cover: Cover
    all_time: bool = False  # one all-time row per key answers (no start, no end)

    @property
    def segments(self) -> dict[str, list[Range]]:
        return self.cover.segments

    @property
    def edges(self) -> list[Range]:
        return self.cover.edges

    @property
    def source(self) -> str:
        return describe(self.family, self.cover)


def describe(family: str, cover: Cover) -> str:
    """The ``X-Report-Source`` of a plan: ``rollup:<family>:<grains>``, and ``+ raw edges N s``
    when edges were read from the raw table (N: their total length in seconds)."""
    text = f"rollup:{family}:" + "+".join(cover.units_used)
    if cover.edges:
        text += f" + raw edges {round(cover.edge_seconds, 3):g} s"
    return text


def cover_window(cuts: Sequence[datetime], units: Sequence[str]) -> Cover:
    """Cover [cuts[0], cuts[-1]) with whole buckets of ``units`` (coarsest first) and raw edges,
    such that no bucket straddles an inner cut (a time series' bucket boundary)."""
    if not units:
        return Cover({}, _merged([(cuts[0], cuts[-1])]))
    inner = cuts[1:-1]
    if inner:
        # The coarsest unit every inner boundary lies on: buckets of it and of the finer units
        # never straddle one, so the whole window is covered at once.
        aligned = next((i for i, unit in enumerate(units) if all(on_boundary(b, unit) for b in inner)), None)
        if aligned is None:
            return _cover_each(cuts, units)
        units = units[aligned:]
    segments, edges = decompose(cuts[0], cuts[-1], units)
    return Cover(segments, edges)


def _cover_each(cuts: Sequence[datetime], units: Sequence[str]) -> Cover:
    segments: dict[str, list[Range]] = {unit: [] for unit in units}
    edges: list[Range] = []
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        piece, piece_edges = decompose(lo, hi, units)
        for unit, ranges in piece.items():
            segments[unit] = _merged(segments[unit] + ranges)
        edges = _merged(edges + piece_edges)
    return Cover(segments, edges)


def decompose(lo: datetime, hi: datetime, units: Sequence[str]) -> tuple[dict[str, list[Range]], list[Range]]:
    """[lo, hi) as whole buckets (the coarsest unit in the middle, finer units towards the
    ends) and the edges no unit covers; ranges merged where they touch."""
    segments: dict[str, list[Range]] = {unit: [] for unit in units}
    edges: list[Range] = []

    def cut(a: datetime, b: datetime, level: int) -> None:
        if a >= b:
            return
        if level == len(units):
            edges.append((a, b))
            return
        unit = units[level]
        inner_lo, inner_hi = ceil(a, unit), truncate(b, unit)
        if inner_lo >= inner_hi:
            cut(a, b, level + 1)
            return
        segments[unit].append((inner_lo, inner_hi))
        cut(a, inner_lo, level + 1)
        cut(inner_hi, b, level + 1)

    cut(lo, hi, 0)
    return {unit: _merged(ranges) for unit, ranges in segments.items()}, _merged(edges)


def _merged(ranges: list[Range]) -> list[Range]:
    out: list[Range] = []
    for lo, hi in sorted(ranges):
        if out and out[-1][1] >= lo:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
