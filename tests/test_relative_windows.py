"""Relative windows of saved reports, resolved at a moment: rolling ones end then, calendar
ones follow the time zone's midnights across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from outcomes.windows import WINDOWS, resolve

pytestmark = pytest.mark.fast

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_rolling_windows_end_now_to_the_second():
    now = utc(2026, 12, 2, 14, 3, 7, 999_000)
    assert resolve("last_24h", UTC, now) == (utc(2026, 12, 1, 14, 3, 7), utc(2026, 12, 2, 14, 3, 7))
    assert resolve("last_7d", BERLIN, now)[0] == utc(2026, 11, 25, 14, 3, 7)
    assert resolve("last_30d", UTC, now)[1] - resolve("last_30d", UTC, now)[0] == timedelta(days=30)


def test_calendar_windows_are_local_midnights():
    now = utc(2026, 12, 2, 23, 30)  # already 00:30 on 3 December in Berlin
    assert resolve("today", BERLIN, now) == (utc(2026, 12, 2, 23), now)
    assert resolve("yesterday", BERLIN, now) == (utc(2026, 12, 1, 23), utc(2026, 12, 2, 23))
    assert resolve("yesterday", UTC, now) == (utc(2026, 12, 1), utc(2026, 12, 2))
    # 3 December 2026 is a Thursday: this week from Monday 30 November, Berlin time.
    assert resolve("this_week", BERLIN, now) == (utc(2026, 11, 29, 23), now)
    assert resolve("last_week", BERLIN, now) == (utc(2026, 11, 22, 23), utc(2026, 11, 29, 23))
    assert resolve("this_month", BERLIN, now) == (utc(2026, 11, 30, 23), now)
    assert resolve("last_month", BERLIN, now) == (utc(2026, 10, 31, 23), utc(2026, 11, 30, 23))
    assert resolve("last_month", UTC, utc(2026, 1, 15)) == (utc(2025, 12, 1), utc(2026, 1, 1))


def test_a_day_across_a_daylight_saving_change_is_23_or_25_hours():
    spring = resolve("yesterday", BERLIN, utc(2026, 3, 30, 6))  # 29 March 2026: clocks go forward
    assert spring == (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))
    assert spring[1] - spring[0] == timedelta(hours=23)
    autumn = resolve("yesterday", BERLIN, utc(2026, 10, 26, 6))  # 25 October 2026: clocks go back
    assert autumn[1] - autumn[0] == timedelta(hours=25)


def test_a_zone_whose_clocks_skip_midnight_starts_its_day_when_it_begins():
    havana = ZoneInfo("America/Havana")  # 8 March 2026: 00:00 → 01:00
    start, end = resolve("yesterday", havana, utc(2026, 3, 9, 12))
    assert start.astimezone(havana).hour == 1 and end - start == timedelta(hours=23)


def test_every_window_is_known_and_an_unknown_one_is_refused():
    now = utc(2026, 6, 1, 12)
    for window in WINDOWS:
        start, end = resolve(window, BERLIN, now)
        assert start < end <= now
    with pytest.raises(ValueError, match="unknown window 'last_year'"):
        resolve("last_year", UTC, now)
