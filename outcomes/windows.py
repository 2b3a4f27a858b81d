"""Relative windows: a saved report's period, resolved when it runs.

``last_1h``, ``last_24h``, ``last_7d`` and ``last_30d`` end at the moment of the run; ``today``,
``yesterday``, ``this_week``, ``last_week`` (ISO weeks, from Monday), ``this_month`` and
``last_month`` are calendar periods in the report's time zone: their boundaries are local
midnights, so a report scheduled for 08:00 in Berlin covers Berlin's yesterday across a
daylight-saving change (that day is 23 or 25 hours long). Pure.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WINDOWS = (
    "last_1h",
    "last_24h",
    "last_7d",
    "last_30d",
    "today",
    "yesterday",
    "this_week",
    "last_week",
    "this_month",
    "last_month",
)
_ROLLING = {
    "last_1h": timedelta(hours=1),
    "last_24h": timedelta(hours=24),
    "last_7d": timedelta(days=7),
    "last_30d": timedelta(days=30),
}


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first moment of ``day`` in ``tz``, in UTC (a zone whose clocks skip midnight starts the day at 01:00)."""
    local = datetime.combine(day, time(0), tzinfo=tz)
    moment = local.astimezone(UTC)
    if moment.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):  # midnight did not exist
        moment = datetime.combine(day, time(1), tzinfo=tz).astimezone(UTC)
    return moment


def _month(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def resolve(window: str, tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) in UTC of ``window`` as of ``now`` (aware), whole seconds."""
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}: use one of {', '.join(WINDOWS)}")
    now = now.astimezone(UTC).replace(microsecond=0)
    if window in _ROLLING:
        return now - _ROLLING[window], now
    today = now.astimezone(tz).date()
    if window == "today":
        return _midnight(today, tz), now
    if window == "yesterday":
        return _midnight(today - timedelta(days=1), tz), _midnight(today, tz)
    monday = today - timedelta(days=today.weekday())
    if window == "this_week":
        return _midnight(monday, tz), now
    if window == "last_week":
        return _midnight(monday - timedelta(days=7), tz), _midnight(monday, tz)
    first = today.replace(day=1)
    if window == "this_month":
        return _midnight(first, tz), now
    return _midnight(_month(first, -1), tz), _midnight(first, tz)  # last_month
