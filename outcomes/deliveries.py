"""Scheduled reports: which subscriptions are due (``schedule_due``, every minute) and sending
one delivery (``send_delivery``), run by the worker (``outcomes.tasks``).

Exactly once per (subscription, scheduled time): the scheduler locks due subscriptions
(``SKIP LOCKED``: two workers never look at the same one), creates the delivery row under a
unique constraint and defers its job **in the same transaction** (procrastinate's Django
connector uses Django's connection), then moves the subscription's cursor. A worker that
dies before the commit leaves nothing; after it, the row and its job exist together. The
sending side is ``outcomes.notifications``.

A delivery runs its saved report for the period of its scheduled time, not of the moment
it runs: a retry an hour later, or a catch-up after an outage, reports the same period (a
catch-up covers the missed occurrences' periods as well, once).
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone
from procrastinate.contrib.django import app

from outcomes import notifications, report_workbooks, schedules, xlsx
from outcomes.buckets import iso_utc
from outcomes.models import Delivery, SavedReport, Subscription
from outcomes.report_runs import agent_request, answer_of, bounded, dispatch, period, run_target

log = logging.getLogger(__name__)

SEND_TASK = "outcomes.send_delivery"
BATCH = 200  # subscriptions looked at per transaction
HTML_ROWS = 50  # rows of a report's table in an e-mail's body
HEADLINE = 8  # figures at the top of an e-mail


def rule_of(subscription: Subscription):
    tz = ZoneInfo(subscription.timezone)
    created = subscription.created_at or timezone.now()  # not saved yet: made now
    return schedules.parse(subscription.rrule, schedules.anchor_for(created, tz)), tz


def arm(subscription: Subscription, now: datetime) -> None:
    """Start (or restart, after its rule or zone changed) a subscription's schedule from
    ``now``: occurrences before it are not delivered."""
    rule, tz = rule_of(subscription)
    subscription.last_scheduled_for = now
    subscription.next_run_at = schedules.next_after(rule, tz, now)


def schedule_due(now: datetime | None = None) -> list[int]:
    """Create the deliveries due at ``now`` (default: the clock) and defer their jobs; the
    ids created. Safe to run from several workers at once."""
    now = now or timezone.now()
    created: list[int] = []
    while True:
        with transaction.atomic():
            due = list(
                Subscription.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("report")
                .filter(active=True, next_run_at__lte=now)
                .order_by("next_run_at")[:BATCH]
            )
            for subscription in due:
                delivery = _schedule(subscription, now)
                if delivery is not None:
                    created.append(delivery)
        if len(due) < BATCH:
            return created


def _schedule(subscription: Subscription, now: datetime) -> int | None:
    rule, tz = rule_of(subscription)
    found = schedules.due(rule, tz, last=subscription.last_scheduled_for, now=now)
    delivery_id = None
    if found is not None:
        covered = period(subscription.report, now=found.at, since=found.first)
        delivery, created = Delivery.objects.get_or_create(
            subscription=subscription,
            scheduled_for=found.at,
            defaults={
                "skipped": found.skipped,
                "window_start": covered[0] if covered else None,
                "window_end": covered[1] if covered else None,
            },
        )
        if created:
            app.configure_task(SEND_TASK).defer(delivery_id=delivery.pk)
            delivery_id = delivery.pk
            if found.skipped:
                log.warning(
                    "catch-up delivery",
                    extra={
                        "subscription": subscription.pk,
                        "scheduled_for": iso_utc(found.at),
                        "skipped": found.skipped,
                    },
                )
        subscription.last_scheduled_for = found.at
    subscription.next_run_at = schedules.next_after(rule, tz, now)
    subscription.save(update_fields=["last_scheduled_for", "next_run_at"])
    return delivery_id


class TooSoon(Exception):
    """A "send now" within SEND_NOW_INTERVAL of the last delivery: ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"A delivery of this subscription was created less than {SEND_NOW_INTERVAL.seconds} s ago.")
        self.retry_after = retry_after


# "Send now" at most this often per subscription (its recipients are not a target to flood).
SEND_NOW_INTERVAL = timedelta(minutes=1)


def send_now(subscription: Subscription, now: datetime | None = None) -> Delivery:
    """A delivery of ``subscription``'s report for this second, outside its schedule ("send
    now": a test, or a report wanted today); the schedule is unchanged. TooSoon within
    SEND_NOW_INTERVAL of its last delivery."""
    at = (now or timezone.now()).replace(microsecond=0)
    covered = period(subscription.report, now=at)
    with transaction.atomic():
        Subscription.objects.select_for_update().get(pk=subscription.pk)  # one "send now" at a time
        last = Delivery.objects.filter(subscription=subscription).order_by("-created_at").first()
        if last is not None and last.created_at > at - SEND_NOW_INTERVAL:
            wait = SEND_NOW_INTERVAL - (at - last.created_at)
            raise TooSoon(max(1, int(wait.total_seconds()) + 1))
        delivery, created = Delivery.objects.get_or_create(
            subscription=subscription,
            scheduled_for=at,
            defaults={"window_start": covered[0] if covered else None, "window_end": covered[1] if covered else None},
        )
        if created:
            app.configure_task(SEND_TASK).defer(delivery_id=delivery.pk)
    return delivery


@dataclass
class Report:
    """A report run for a delivery: its JSON answer (reports) and the file to attach."""

    answer: object | None
    filename: str
    content: bytes
    content_type: str
    truncated: bool  # larger than DELIVERY_MAX_ATTACHMENT_BYTES: not attached


def _body(response) -> tuple[bytes, bool]:
    """The response's bytes up to the attachment limit (a stream is closed there: its query
    stops)."""
    limit = settings.DELIVERY_MAX_ATTACHMENT_BYTES
    if not getattr(response, "streaming", False):
        return response.content, len(response.content) > limit
    chunks, size = [], 0
    try:
        for chunk in response.streaming_content:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return b"", True
    finally:
        response.close()
    return b"".join(chunks), False


def _failed(response) -> str | None:
    if response.status_code == 200:
        return None
    try:
        detail = response.content[:500].decode(errors="replace")
    except Exception:  # noqa: BLE001 - a streamed error
        detail = ""
    return f"The report answered HTTP {response.status_code}: {detail}"


def run_report(saved: SavedReport, delivery: Delivery, fmt: str) -> Report:
    """``saved`` for ``delivery``'s period, as the delivery agent, in ``fmt``."""
    path, params = run_target(saved, now=delivery.scheduled_for)
    if delivery.window_start is not None:
        params["start"], params["end"] = iso_utc(delivery.window_start), iso_utc(delivery.window_end)
    local = delivery.scheduled_for.astimezone(ZoneInfo(saved.timezone))
    stem = f"{saved.name[:60].strip() or saved.report} {local:%Y-%m-%d %H%M}"
    stem = "".join(c if c.isalnum() or c in " -_" else "_" for c in stem)
    if saved.report == SavedReport.Report.EXPORT:
        response = dispatch(agent_request(), path, {**params, "format": "xlsx" if fmt == "xlsx" else "csv"})
        if error := _failed(response):
            raise notifications.SendFailed(error)
        content, truncated = _body(response)
        if fmt == "xlsx":
            return Report(None, f"{stem}.xlsx", content, xlsx.CONTENT_TYPE, truncated)
        return Report(None, f"{stem}.csv", content, "text/csv", truncated)
    response = dispatch(agent_request(), path, {**params, "format": "xlsx"} if fmt == "xlsx" else params)
    if error := _failed(response):
        raise notifications.SendFailed(error)
    answer = answer_of(response)
    if fmt == "xlsx":
        content, truncated = _body(response)
        return Report(answer, f"{stem}.xlsx", content, xlsx.CONTENT_TYPE, truncated)
    if fmt == "csv":
        content = report_csv(answer).encode()
        return Report(answer, f"{stem}.csv", content, "text/csv", len(content) > settings.DELIVERY_MAX_ATTACHMENT_BYTES)
    return Report(answer, "", b"", "text/html", False)


# Text a spreadsheet would take for a formula: quoted with ' as the CSV export does
# (outcomes.exports), unless it is a number written as text (a negative lift).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value):
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def report_csv(answer) -> str:
    """A report's answer as CSV: its table of rows; a report of several tables (experiment
    results: variants, comparisons…) as one table whose first column names each row's table;
    a report without rows as its figures, name,value."""
    sheets, summary = report_workbooks.tables(answer)
    out = io.StringIO()
    writer = csv.writer(out)
    filled = {name: rows for name, rows in sheets.items() if rows}
    if filled:
        several = len(filled) > 1
        columns = list(dict.fromkeys(name for rows in filled.values() for row in rows for name in row))
        writer.writerow((["table"] if several else []) + columns)
        for name, rows in filled.items():
            for row in rows:
                writer.writerow(([name] if several else []) + [_csv_cell(row.get(c)) for c in columns])
    else:
        writer.writerow(["name", "value"])
        writer.writerows((name, _csv_cell(value)) for name, value in summary)
    return out.getvalue()


# Columns of a report's rows that add up to a total (the headline of a series or breakdown).
# Numbers of an answer that repeat the request, not figures.
ECHOED = frozenset({"limit", "confidence", "bins", "page_size"})
SUMMABLE = ("outcomes", "wins", "losses", "revenue", "total_outcomes", "total_wins", "total_revenue", "users")


def headline(summary: list[tuple[str, object]], rows: list[dict]) -> list[tuple[str, object]]:
    """The figures at the top of an e-mail: the answer's own numbers (stats), else the totals
    of its table's additive columns (a series, a breakdown)."""
    figures = [
        (n, v)
        for n, v in summary
        if isinstance(v, int | float) and not isinstance(v, bool) and n not in ECHOED and not n.startswith("others.")
    ]
    if totals := [(n, v) for n, v in figures if n.startswith("total.")]:
        return totals[:HEADLINE]  # a breakdown's own total
    if not figures and rows:
        for column in SUMMABLE:
            values = [row[column] for row in rows if isinstance(row.get(column), int | float)]
            if values:
                total = sum(values)
                figures.append((f"{column} (total)", round(total, 2) if isinstance(total, float) else total))
    return figures[:HEADLINE]


def message_for(delivery: Delivery, report: Report) -> notifications.Message:
    subscription = delivery.subscription
    saved = subscription.report
    tz = ZoneInfo(saved.timezone)
    sheets, summary = report_workbooks.tables(report.answer) if report.answer is not None else ({}, [])
    table_name, rows = next(((name, rows) for name, rows in sheets.items() if rows), ("", []))
    columns = list(dict.fromkeys(name for row in rows[:HTML_ROWS] for name in row))
    when = delivery.scheduled_for.astimezone(tz)
    window = None
    if delivery.window_start is not None:
        start, end = delivery.window_start.astimezone(tz), delivery.window_end.astimezone(tz)
        window = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
    context = {
        "saved": saved,
        "subscription": subscription,
        "delivery": delivery,
        "when": f"{when:%A %-d %B %Y, %H:%M}",
        "window": window,
        "headline": headline(summary, rows),
        "columns": columns,
        "rows": [[row.get(c) for c in columns] for row in rows[:HTML_ROWS]],
        "more_rows": max(0, len(rows) - HTML_ROWS),
        "table_name": table_name,
        "attachment": report.filename if report.content and not report.truncated else "",
        "truncated": report.truncated,
        "run_url": f"{settings.PUBLIC_URL}/api/reports/{saved.pk}/run/",
        "full_table": subscription.format == Subscription.Format.HTML,
    }
    html = render_to_string("outcomes/mail/report.html", context)
    text = render_to_string("outcomes/mail/report.txt", context)
    body = {
        "type": "report",
        "subscription": subscription.pk,
        "delivery": delivery.pk,
        "report": {"id": saved.pk, "name": saved.name, "report": saved.report},
        "scheduled_for": iso_utc(delivery.scheduled_for),
        "skipped": delivery.skipped,
        "window": {"start": iso_utc(delivery.window_start), "end": iso_utc(delivery.window_end)},
        "answer": report.answer,
        "run_url": context["run_url"],
    }
    attachment = None
    if report.content and not report.truncated:
        attachment = (report.filename, report.content, report.content_type)
    return notifications.Message(
        subject=f"{saved.name} — {when:%Y-%m-%d %H:%M} {saved.timezone}",
        text=text,
        html=html,
        webhook_body=body,
        attachment=attachment,
    )


def send_delivery(delivery_id: int) -> None:
    """Send one delivery (its remaining recipients and webhook); failures are retried with
    backoff, then recorded (``notifications.finish``)."""
    delivery = notifications.claim(Delivery, delivery_id)
    if delivery is None:
        return
    subscription = Subscription.objects.select_related("report").get(pk=delivery.subscription_id)
    delivery.subscription = subscription
    error = None
    try:
        with bounded():
            report = run_report(subscription.report, delivery, subscription.format)
        message = message_for(delivery, report)
        Delivery.objects.filter(pk=delivery.pk).update(bytes=message.size)
        notifications.send(delivery, subscription, "subscription", message)
    except notifications.SendFailed as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - recorded on the delivery and retried like any failure
        log.exception("delivery failed", extra={"delivery": delivery.pk})
        error = f"{exc.__class__.__name__}: {exc}"[:1000]

    def retry(seconds: int) -> None:
        app.configure_task(SEND_TASK, schedule_in={"seconds": seconds}).defer(delivery_id=delivery.pk)

    notifications.finish(delivery, subscription, error=error, retry=retry)
    log.info(
        "delivery attempt",
        extra={"delivery": delivery.pk, "subscription": subscription.pk, "attempt": delivery.attempts, "error": error},
    )
