"""The calendar of a time series: bucket boundaries in a time zone, and their labels.

Pure (no database): minute and hour buckets are fixed steps in UTC; day, week (ISO, from
Monday) and month buckets start at local midnights of the series' zone, so they follow its
daylight-saving changes (a local day may last 23 or 25 hours).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from outcomes.buckets import iso_utc

MAX_BUCKETS = 2000  # a day of minutes, a month of hours, five years of days
GRANULARITIES = ("minute", "hour", "day", "week", "month")
DEFAULT_SPAN = {
    "minute": timedelta(hours=1),
    "hour": timedelta(days=1),
    "day": timedelta(days=30),
    "week": timedelta(weeks=12),
    "month": timedelta(days=365),
}
_STEP = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}


class TooManyBuckets(ValueError):
    """The window holds more than ``MAX_BUCKETS`` buckets."""


def timeseries_buckets(
    *, granularity: str, start: datetime | None, end: datetime | None, tz: ZoneInfo, now: datetime | None = None
) -> list[datetime]:
    """Boundaries B0 < … < Bn in UTC: the series' buckets are [Bi, Bi+1), aligned to
    ``granularity`` in ``tz``; B0 is ``start`` and Bn is ``end``, so the first and last
    buckets may be partial (see ``bucket_start``). Without ``end`` the window ends at ``now``;
    without ``start`` it spans ``DEFAULT_SPAN``.

    Raises ``TooManyBuckets`` when there would be more than ``MAX_BUCKETS``.
    """
    end = end or (now or datetime.now(UTC))
    start = start or end - DEFAULT_SPAN[granularity]
    if start >= end:
        raise ValueError("start must be before end.")
    too_many = TooManyBuckets(
        f"More than {MAX_BUCKETS} {granularity} buckets between start and end; "
        "use a coarser granularity or a shorter window."
    )
    first = next_local(floor_local(start, granularity, tz), granularity, tz)
    step = _STEP.get(granularity)
    if step is not None:  # fixed steps in UTC: no calendar to walk
        inner = -(-(end - first) // step) if first < end else 0
        if inner + 1 > MAX_BUCKETS:
            raise too_many
        return [start, *(first + step * i for i in range(inner)), end]
    boundaries = [start]
    moment = first
    while moment < end:
        boundaries.append(moment)
        if len(boundaries) > MAX_BUCKETS:
            raise too_many
        moment = next_local(moment, granularity, tz)
    boundaries.append(end)
    return boundaries


def bucket_start(boundaries: list[datetime], granularity: str, tz: ZoneInfo) -> datetime:
    """Where the first bucket starts on the calendar (at or before the window's start)."""
    return floor_local(boundaries[0], granularity, tz)


def bucket_end(boundaries: list[datetime], granularity: str, tz: ZoneInfo) -> datetime:
    """Where the last bucket ends on the calendar (at or after the window's end)."""
    last = floor_local(boundaries[-1], granularity, tz)
    return last if last == boundaries[-1] else next_local(last, granularity, tz)


def labeller(tz: ZoneInfo):
    """A function rendering a UTC moment as ISO 8601 in ``tz``: ``Z`` for UTC, else the zone's
    offset at that moment (``2026-11-03T00:00:00+01:00``)."""
    if tz.key in ("UTC", "Etc/UTC"):
        return iso_utc
    return lambda moment: moment.astimezone(tz).isoformat()


def floor_local(moment: datetime, granularity: str, tz: ZoneInfo) -> datetime:
    """The start (in UTC) of the ``granularity`` bucket of ``tz`` holding ``moment``."""
    local = moment.astimezone(tz)
    if granularity == "minute":
        floor = local.replace(second=0, microsecond=0)
    elif granularity == "hour":
        floor = local.replace(minute=0, second=0, microsecond=0)
    else:
        day = local.date()
        if granularity == "week":
            day -= timedelta(days=day.weekday())
        elif granularity == "month":
            day = day.replace(day=1)
        floor = datetime(day.year, day.month, day.day, tzinfo=tz)
    return floor.astimezone(UTC)


def next_local(moment: datetime, granularity: str, tz: ZoneInfo) -> datetime:
    """The start (in UTC) of the bucket after the one starting at ``moment``."""
    step = _STEP.get(granularity)
    if step is not None:
        return moment + step
    local = moment.astimezone(tz).date()
    if granularity == "day":
        day = local + timedelta(days=1)
    elif granularity == "week":
        day = local + timedelta(days=7)
    else:
        days = calendar.monthrange(local.year, local.month)[1]
        day = local.replace(day=1) + timedelta(days=days)
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
