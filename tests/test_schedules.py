"""Subscriptions' schedules: iCalendar rules on the wall clock of their zone, across both
daylight-saving changes, with one catch-up delivery after an outage (a fake clock moves)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from outcomes import schedules
from outcomes.schedules import InvalidRule, due, next_after

pytestmark = pytest.mark.fast

BERLIN = ZoneInfo("Europe/Berlin")


def rule(text: str, created: datetime, tz=BERLIN):
    return schedules.parse(text, schedules.anchor_for(created, tz))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def run_clock(parsed, tz, start: datetime, end: datetime, step=timedelta(minutes=1)) -> list[datetime]:
    """What a scheduler checking every ``step`` delivers between ``start`` and ``end``."""
    delivered: list[datetime] = []
    now = start
    while now <= end:
        found = due(parsed, tz, last=delivered[-1] if delivered else start, now=now)
        if found is not None:
            delivered.append(found.at)
        now += step
    return delivered


def test_eight_in_berlin_stays_eight_across_both_changes():
    parsed = rule("FREQ=DAILY;BYHOUR=8", utc(2026, 3, 20))
    spring = run_clock(parsed, BERLIN, utc(2026, 3, 27, 12), utc(2026, 3, 31, 12), timedelta(minutes=30))
    assert [d.astimezone(BERLIN).hour for d in spring] == [8, 8, 8, 8]
    assert [d.hour for d in spring] == [7, 6, 6, 6]  # from 29 March (CET → CEST at 02:00)
    autumn = run_clock(parsed, BERLIN, utc(2026, 10, 23, 12), utc(2026, 10, 27, 12), timedelta(minutes=30))
    assert [d.astimezone(BERLIN).hour for d in autumn] == [8, 8, 8, 8]
    assert [d.hour for d in autumn] == [6, 7, 7, 7]  # from 25 October (CEST → CET at 03:00)


def test_a_time_the_clocks_skip_or_repeat_is_delivered_once():
    parsed = rule("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", utc(2026, 3, 20))
    spring = run_clock(parsed, BERLIN, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12), timedelta(minutes=10))
    assert spring == [utc(2026, 3, 29, 1, 30)]  # 02:30 does not exist: delivered at 03:30 CEST
    autumn = run_clock(parsed, BERLIN, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12), timedelta(minutes=10))
    assert autumn == [utc(2026, 10, 25, 0, 30)]  # 02:30 happens twice: the first


def test_weekly_monday_at_eight_and_the_next_run():
    parsed = rule("FREQ=WEEKLY;BYDAY=MO;BYHOUR=8", utc(2026, 11, 25))
    assert next_after(parsed, BERLIN, utc(2026, 11, 25, 12)) == utc(2026, 11, 30, 7)
    assert due(parsed, BERLIN, last=None, now=utc(2026, 11, 30, 6, 59)) is None
    assert due(parsed, BERLIN, last=None, now=utc(2026, 11, 30, 7)).at == utc(2026, 11, 30, 7)
    assert due(parsed, BERLIN, last=utc(2026, 11, 30, 7), now=utc(2026, 12, 3)) is None


def test_after_an_outage_one_catch_up_delivery_and_the_missed_runs_counted():
    parsed = rule("FREQ=HOURLY", utc(2026, 12, 1))
    last = utc(2026, 12, 1, 10)
    found = due(parsed, BERLIN, last=last, now=utc(2026, 12, 2, 10, 30))  # a day down
    assert found.at == utc(2026, 12, 2, 10) and found.skipped == 23
    assert found.first == utc(2026, 12, 1, 11)  # the catch-up covers from the first missed period


def test_a_spent_rule_has_no_next_run():
    parsed = rule("FREQ=DAILY;BYHOUR=8;COUNT=2", utc(2026, 12, 1), UTC)
    assert next_after(parsed, UTC, utc(2026, 12, 5)) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("FREQ=MINUTELY", "at most hourly"),
        ("FREQ=SECONDLY", "at most hourly"),
        ("BYHOUR=8", "FREQ is one of"),
        ("FREQ=DAILY;BYHOUR=25", "Not a valid RRULE"),
        ("FREQ=DAILY;BYSECOND=5", "BYSECOND"),
        ("DTSTART:20260101T000000\nRRULE:FREQ=DAILY", "The rule alone"),
        ("", "An iCalendar RRULE"),
        ("FREQ=DAILY;" * 60, "An iCalendar RRULE"),
        ("FREQ=WEEKLY;BYDAY=XX", "Not a valid RRULE"),
    ],
)
def test_rules_a_subscription_does_not_take(text, says):
    with pytest.raises(InvalidRule, match=says):
        schedules.parse(text, datetime(2026, 1, 1))
