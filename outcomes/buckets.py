"""Time buckets of the rollup grains: the units, and where a moment falls among them.

Pure (no Django, no database): imported by the rollups, which store one row per bucket,
and by the query planner, which cuts a report's window into whole buckets and the partial
edges around them. Every bucket is in UTC; ``all`` is the single bucket of an all-time grain.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
ALL_TIME = datetime(1970, 1, 1, tzinfo=UTC)  # the one bucket of an "all"-unit (all-time) grain


def iso_utc(moment: datetime | None, timespec: str = "auto") -> str | None:
    """A moment as ISO 8601 in UTC with ``Z`` (``2026-12-02T14:00:00Z``), as every answer and
    message writes times; None stays None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def truncate(moment: datetime, unit: str) -> datetime:
    """The start of the ``unit`` bucket holding ``moment`` (a UTC moment)."""
    if unit == "all":
        return ALL_TIME
    if unit == "minute":
        return moment.replace(second=0, microsecond=0)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def ceil(moment: datetime, unit: str) -> datetime:
    """The first ``unit`` boundary at or after ``moment``."""
    floor = truncate(moment, unit)
    return floor if floor == moment else floor + UNITS[unit]


def on_boundary(moment: datetime, unit: str) -> bool:
    """``truncate(moment, unit) == moment`` for a UTC moment, without building one (a day of
    minute buckets checks 1,440 of them)."""
    if moment.second or moment.microsecond:
        return False
    if unit == "minute":
        return True
    if moment.minute:
        return False
    return unit == "hour" or (unit == "day" and not moment.hour)
