"""When a subscription's report is due: an iCalendar recurrence rule (RFC 5545 ``RRULE``, as
PostHog's subscriptions take it) read by dateutil, in the subscription's time zone.

The rule runs on the wall clock of the zone: ``FREQ=DAILY;BYHOUR=8`` in Europe/Berlin is 08:00
in Berlin every day, 07:00 UTC in summer and 06:00 UTC in winter. A local time that does not
exist (02:30 on the night clocks go forward) is taken as the moment clocks reach it (03:30);
one that happens twice (02:30 on the night they go back) as its first occurrence.

``due`` gives the one occurrence to deliver now: the latest that has passed and is after the
last one scheduled. After an outage of a day, that is one catch-up delivery for the missed
period, not one per missed run; the others are counted as skipped. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import DAILY, HOURLY, MONTHLY, WEEKLY, YEARLY, rrule, rrulestr

FREQUENCIES = {"HOURLY": HOURLY, "DAILY": DAILY, "WEEKLY": WEEKLY, "MONTHLY": MONTHLY, "YEARLY": YEARLY}
MAX_RULE = 500
# No occurrence found this far ahead: the rule never fires again (COUNT/UNTIL spent).
HORIZON = timedelta(days=366 * 5)


class InvalidRule(ValueError):
    """The rule is not one a subscription takes; the message says why."""


def parse(rule: str, anchor: datetime) -> rrule:
    """``rule`` (``FREQ=…;…``, no ``DTSTART``) from local naive ``anchor``. At most hourly: a
    report by e-mail every minute would be a flood, not a subscription."""
    if not isinstance(rule, str) or not rule.strip() or len(rule) > MAX_RULE:
        raise InvalidRule(f"An iCalendar RRULE of at most {MAX_RULE} characters, e.g. FREQ=WEEKLY;BYDAY=MO;BYHOUR=8.")
    text = rule.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    parts = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
    if any(key.upper() in ("DTSTART", "TZID") for key in parts) or "\n" in text:
        raise InvalidRule("The rule alone (FREQ=…;…): the subscription's timezone says where it runs.")
    frequency = parts.get("FREQ", parts.get("freq", "")).upper()
    if frequency not in FREQUENCIES:
        raise InvalidRule(f"FREQ is one of {', '.join(FREQUENCIES)} (at most hourly).")
    if {"COUNT", "UNTIL"} <= {key.upper() for key in parts}:
        raise InvalidRule("COUNT or UNTIL, not both (RFC 5545).")
    if any(key.upper() in ("BYSECOND",) for key in parts):
        raise InvalidRule("BYSECOND is not taken: reports are scheduled to the minute.")
    try:
        parsed = rrulestr(text, dtstart=anchor)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise InvalidRule(f"Not a valid RRULE: {exc}") from None
    if not isinstance(parsed, rrule):
        raise InvalidRule("One RRULE, not a set of rules.")
    return parsed


def anchor_for(created: datetime, tz: ZoneInfo) -> datetime:
    """The rule's start: local midnight of the day the subscription was made (naive, in ``tz``)."""
    local = created.astimezone(tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)


def to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """A local wall-clock time in ``tz`` as a UTC moment (see the module docstring for gaps and folds)."""
    # PEP 495's fold=0: in a gap, the offset before the change (02:30 becomes 03:30 of the new
    # time); in a fold, the first of the two moments.
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


@dataclass(frozen=True)
class Due:
    at: datetime  # the occurrence to deliver (UTC)
    skipped: int  # earlier occurrences missed since the last one scheduled
    first: datetime | None = None  # the earliest of them (UTC): the catch-up covers from its period


def due(rule: rrule, tz: ZoneInfo, *, last: datetime | None, now: datetime) -> Due | None:
    """The latest occurrence at or before ``now`` and after ``last`` (UTC), or None."""
    local_now = now.astimezone(tz).replace(tzinfo=None)
    latest = rule.before(local_now + timedelta(hours=3), inc=True)  # a gap moves an occurrence up to later
    while latest is not None and to_utc(latest, tz) > now:
        latest = rule.before(latest)
    if latest is None:
        return None
    at = to_utc(latest, tz)
    if last is not None and at <= last:
        return None
    missed: list[datetime] = []
    if last is not None:
        since = last.astimezone(tz).replace(tzinfo=None)
        missed = sorted(
            to_utc(moment, tz)
            for moment in rule.between(since - timedelta(hours=3), latest)
            if last < to_utc(moment, tz) < at
        )
    return Due(at, len(missed), missed[0] if missed else None)


def next_after(rule: rrule, tz: ZoneInfo, moment: datetime) -> datetime | None:
    """The first occurrence after ``moment`` (UTC), or None when the rule is spent."""
    local = rule.after(moment.astimezone(tz).replace(tzinfo=None) - timedelta(hours=3))
    while local is not None and to_utc(local, tz) <= moment:
        local = rule.after(local)
    if local is None or to_utc(local, tz) - moment > HORIZON:
        return None
    return to_utc(local, tz)
