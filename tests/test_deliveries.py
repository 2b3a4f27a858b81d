"""Scheduled reports delivered exactly once: the worker as a real process, a real SMTP server
(aiosmtpd) and a real webhook receiver on 127.0.0.1 (``tests.receivers``); the scheduler's
clock moved by hand where a test needs days to pass (outages, clock changes)."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from django.db import connection, connections
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from outcomes import deliveries, webhooks
from outcomes.models import Delivery, SavedReport, Subscription
from tests.factories import wait_until
from tests.receivers import SmtpSink, WebhookReceiver, WorkerProcess
from tests.test_report_xlsx import same_table

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BERLIN = ZoneInfo("Europe/Berlin")
MONEY = ("revenue", "average_win_price", "average_bid_price")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_jobs_left():
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_jobs; DELETE FROM procrastinate_workers")
    yield


@pytest.fixture
def smtp(settings):
    with SmtpSink() as sink:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
        # the service's own backend: Django's test set-up swaps in an in-memory one
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        yield sink


@pytest.fixture
def hook():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def worker(tmp_path, smtp):
    started: list[WorkerProcess] = []

    def start(**kwargs) -> WorkerProcess:
        env = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp.port), **kwargs.pop("env", {})}
        process = WorkerProcess(tmp_path / f"worker-{len(started)}.log", env=env, **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process._log.close()


def subscribe(saved: SavedReport, *, armed_at: datetime, **fields) -> Subscription:
    values = {"rrule": "FREQ=HOURLY", "timezone": "Europe/Berlin", "format": "xlsx", "recipients": ["ana@example.com"]}
    subscription = Subscription(report=saved, webhook_secret=webhooks.new_secret(), **{**values, **fields})
    subscription.created_at = armed_at
    deliveries.arm(subscription, armed_at)
    subscription.save()
    Subscription.objects.filter(pk=subscription.pk).update(created_at=armed_at)
    subscription.refresh_from_db()
    return subscription


def hourly_series(name: str = "Hourly EUR") -> SavedReport:
    return SavedReport.objects.create(
        name=name,
        report="timeseries",
        params={"granularity": "hour", "currency": "EUR"},
        window="last_24h",
        timezone="Europe/Berlin",
    )


def seed(outcome_factory, now: datetime) -> None:
    for i in range(12):
        outcome_factory(
            1 + i % 2,
            site_domain=f"site{i % 3}.example",
            win_status=i % 4 != 0,
            win_price=Decimal("0.50") + Decimal(i) / 100,
            currency="EUR",
            auction_timestamp=now - timedelta(hours=2 * i + 1, minutes=7),
        )


def sent(delivery_id: int) -> Delivery | None:
    delivery = Delivery.objects.get(pk=delivery_id)
    return delivery if delivery.status in ("sent", "failed") else None


def test_a_due_report_arrives_once_parses_and_equals_the_api_and_unsubscribing_works(
    outcome_factory, smtp, hook, worker
):
    now = timezone.now()
    seed(outcome_factory, now)
    saved = hourly_series()
    subscription = subscribe(
        saved,
        armed_at=now - timedelta(hours=1, minutes=1),
        recipients=["ana@example.com", "Bo@Example.com"],
        webhook_url=hook.url,
    )
    created = deliveries.schedule_due(now)
    assert len(created) == 1 and deliveries.schedule_due(now) == []  # the next look finds nothing
    worker()
    delivery = wait_until(lambda: sent(created[0]), 60, what="the delivery sent")
    assert delivery.status == "sent", delivery.error
    assert sorted(delivery.recipients_sent) == ["Bo@Example.com", "ana@example.com"] and delivery.webhook_status == 200
    time.sleep(1)  # nothing more arrives
    assert len(smtp.messages) == 2 and len(hook.received) == 1

    message = smtp.to("ana@example.com")[0]
    assert message["Subject"].startswith("Hourly EUR — ")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "outcomes (total)" in text and "<table" in html
    attachment = next(part for part in message.iter_attachments())
    assert attachment.get_filename().endswith(".xlsx")
    book = openpyxl.load_workbook(io.BytesIO(attachment.get_content()))
    # the same report, asked of the API for the delivery's period, is what the workbook holds
    params = {
        "granularity": "hour",
        "currency": "EUR",
        "tz": "Europe/Berlin",
        "start": delivery.window_start.isoformat().replace("+00:00", "Z"),
        "end": delivery.window_end.isoformat().replace("+00:00", "Z"),
    }
    answer = APIClient().get("/api/outcomes/timeseries/", params).json()
    assert sum(b["outcomes"] for b in answer["buckets"]) == 18
    same_table(book["buckets"], answer["buckets"], "EUR", money=MONEY)
    assert delivery.window_end == delivery.scheduled_for and delivery.window_end - delivery.window_start == timedelta(
        hours=24
    )

    received = hook.received[0]
    signature = received.headers[webhooks.SIGNATURE_HEADER]
    assert webhooks.verify(subscription.webhook_secret, signature, received.body, now=time.time())
    assert not webhooks.verify("another secret", signature, received.body, now=time.time())
    body = json.loads(received.body)
    assert body["type"] == "report" and body["delivery"] == delivery.pk
    assert body["answer"]["buckets"] == answer["buckets"]

    # the link works without logging in: GET asks, POST unsubscribes (RFC 8058 one-click)
    link = message["List-Unsubscribe"].strip("<> ")
    path = link.removeprefix("http://127.0.0.1:8000")
    browser = Client()
    page = browser.get(path)
    assert page.status_code == 200 and b"Unsubscribe?" in page.content
    assert Subscription.objects.get(pk=subscription.pk).recipients == ["ana@example.com", "Bo@Example.com"]
    done = browser.post(path, {"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and b"will not receive" in done.content
    assert Subscription.objects.get(pk=subscription.pk).recipients == ["Bo@Example.com"]
    assert browser.get(path[:-5] + "xxxx/").status_code == 400  # a forged token

    # the next occurrence goes to the one left
    later = deliveries.schedule_due(now + timedelta(hours=1))
    assert len(later) == 1
    wait_until(lambda: sent(later[0]), 60, what="the second delivery")
    assert [m["To"] for m in smtp.messages].count("ana@example.com") == 1
    assert [m["To"] for m in smtp.messages].count("Bo@Example.com") == 2


def test_two_workers_and_concurrent_schedulers_deliver_each_occurrence_once(smtp, worker):
    now = timezone.now()
    saved = SavedReport.objects.create(name="Stats", report="stats", params={}, window="last_1h", timezone="UTC")
    subscriptions = [
        subscribe(saved, armed_at=now - timedelta(minutes=61), recipients=[f"r{i}@example.com"], format="html")
        for i in range(6)
    ]
    worker(), worker()
    found: list[list[int]] = []

    def schedule():
        try:
            found.append(deliveries.schedule_due(now))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=schedule) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    created = sorted(i for ids in found for i in ids)
    assert len(created) == 6 == len(set(created))
    wait_until(lambda: all(sent(i) for i in created), 60, what="six deliveries")
    time.sleep(2)
    assert [d.error for d in Delivery.objects.all()] == [""] * 6
    assert sorted(m["To"] for m in smtp.messages) == sorted(s.recipients[0] for s in subscriptions)
    assert len({m["Message-ID"] for m in smtp.messages}) == 6
    assert Delivery.objects.filter(status="sent").count() == 6


def test_a_worker_killed_mid_send_is_replaced_and_the_mail_arrives_once(smtp, worker):
    now = timezone.now()
    saved = SavedReport.objects.create(name="Stats", report="stats", params={}, window="last_1h", timezone="UTC")
    subscription = subscribe(
        saved, armed_at=now - timedelta(minutes=61), recipients=["first@example.com", "second@example.com"]
    )
    smtp.hold()  # the first message's DATA waits
    [delivery_id] = deliveries.schedule_due(now)
    first = worker()
    assert smtp.wait_holding(60), first.log()[-2000:]
    first.kill()  # SIGKILL while the SMTP server holds the message
    smtp.release("451 connection lost")  # the server never accepted it
    assert Delivery.objects.get(pk=delivery_id).status == "sending"
    worker()  # its heartbeat is missing: the stalled job is run again here
    delivery = wait_until(lambda: sent(delivery_id), 90, what="the delivery finished by the second worker")
    time.sleep(1)
    assert delivery.status == "sent" and delivery.attempts == 2
    assert sorted(m["To"] for m in smtp.messages) == ["first@example.com", "second@example.com"]
    assert Delivery.objects.filter(subscription=subscription).count() == 1


def test_after_an_outage_one_catch_up_delivery_covers_the_missed_period(smtp):
    saved = SavedReport.objects.create(name="Last hour", report="stats", params={}, window="last_1h", timezone="UTC")
    subscription = subscribe(saved, armed_at=utc(2026, 12, 1, 9, 30), timezone="UTC")
    assert subscription.next_run_at == utc(2026, 12, 1, 10)
    assert deliveries.schedule_due(utc(2026, 12, 1, 10, 0, 5))  # 10:00 delivered, then a day down
    created = deliveries.schedule_due(utc(2026, 12, 2, 10, 20))
    assert len(created) == 1
    catch_up = Delivery.objects.get(pk=created[0])
    assert catch_up.scheduled_for == utc(2026, 12, 2, 10) and catch_up.skipped == 23
    # its period runs from the first missed occurrence's (10:00 to 11:00 the day before) to now
    assert (catch_up.window_start, catch_up.window_end) == (utc(2026, 12, 1, 10), utc(2026, 12, 2, 10))
    assert deliveries.schedule_due(utc(2026, 12, 2, 10, 59)) == []
    assert Subscription.objects.get(pk=subscription.pk).next_run_at == utc(2026, 12, 2, 11)
    # sent by the service itself (no worker needed to see what it writes)
    deliveries.send_delivery(catch_up.pk)
    text = smtp.messages[0].get_body(preferencelist=("plain",)).get_content()
    assert "Catch-up: 23 earlier runs could not be sent" in text


def test_a_worker_back_after_a_day_down_sends_one_catch_up_on_its_own_clock(smtp, worker):
    """The worker as a real process, on the real clock: an hourly subscription whose last
    delivery was a day ago (the service was down) gets one catch-up delivery, not 24."""
    now = timezone.now()
    saved = SavedReport.objects.create(name="Hourly", report="stats", params={}, window="last_1h", timezone="UTC")
    subscription = subscribe(saved, armed_at=now - timedelta(hours=25), timezone="UTC", recipients=["ops@example.com"])
    process = worker()
    delivery = wait_until(
        lambda: Delivery.objects.filter(subscription=subscription, status="sent").first(),
        90,
        what=f"the catch-up delivery ({process.log_path})",
    )
    time.sleep(5)  # two more ticks of its scheduler: nothing more is due
    assert Delivery.objects.filter(subscription=subscription).count() == 1 and len(smtp.messages) == 1
    assert delivery.skipped in (23, 24) and delivery.scheduled_for > now - timedelta(hours=1)
    assert delivery.window_end - delivery.window_start >= timedelta(hours=24)  # the missed period, once
    assert "Catch-up:" in smtp.messages[0].get_body(preferencelist=("plain",)).get_content()


@pytest.mark.parametrize(
    ("start", "before", "after"),
    [
        # spring forward (29 March 2026): 08:00 Berlin is 07:00 UTC before, 06:00 UTC after
        (utc(2026, 3, 26), utc(2026, 3, 28, 7), utc(2026, 3, 29, 6)),
        # fall back (25 October 2026): 06:00 UTC before, 07:00 UTC after
        (utc(2026, 10, 22), utc(2026, 10, 24, 6), utc(2026, 10, 25, 7)),
    ],
)
def test_eight_in_berlin_stays_eight_across_the_clock_changes(start, before, after):
    saved = SavedReport.objects.create(
        name="Daily", report="stats", params={}, window="yesterday", timezone="Europe/Berlin"
    )
    subscription = subscribe(saved, armed_at=start, rrule="FREQ=DAILY;BYHOUR=8;BYMINUTE=0")
    clock = start
    while clock < start + timedelta(days=6):  # a fake clock, every 10 minutes for six days
        deliveries.schedule_due(clock)
        clock += timedelta(minutes=10)
    times = list(
        Delivery.objects.filter(subscription=subscription)
        .order_by("scheduled_for")
        .values_list("scheduled_for", flat=True)
    )
    assert len(times) == 6 and before in times and after in times
    assert all(t.astimezone(BERLIN).hour == 8 and t.astimezone(BERLIN).minute == 0 for t in times)
    assert Delivery.objects.filter(subscription=subscription, skipped__gt=0).count() == 0
    # each covers "yesterday" in Berlin: the 23-hour day and the 25-hour day included
    lengths = {d.window_end - d.window_start for d in Delivery.objects.filter(subscription=subscription)}
    assert lengths == {timedelta(hours=24), timedelta(hours=23 if after.month == 3 else 25)}


def test_failures_are_retried_recorded_and_mark_the_subscription_failing(smtp, settings, client):
    settings.DELIVERY_ATTEMPTS = 2
    settings.SUBSCRIPTION_FAILING_AFTER = 2
    smtp.refusal = "550 mailbox unavailable"
    saved = SavedReport.objects.create(name="Stats", report="stats", params={}, window="last_1h", timezone="UTC")
    subscription = subscribe(saved, armed_at=utc(2026, 12, 1, 9, 30), timezone="UTC")
    for hour in (10, 11):
        [delivery_id] = deliveries.schedule_due(utc(2026, 12, 1, hour, 0, 1))
        deliveries.send_delivery(delivery_id)  # the first attempt fails; a retry is deferred with backoff
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT scheduled_at - now() FROM procrastinate_jobs WHERE args->>'delivery_id' = %s"
                " AND scheduled_at IS NOT NULL",
                [str(delivery_id)],
            )
            [(wait,)] = cursor.fetchall()
        assert timedelta(seconds=20) < wait <= timedelta(seconds=30)  # DELIVERY_RETRY_SECONDS
        assert Delivery.objects.get(pk=delivery_id).status == "pending"
        deliveries.send_delivery(delivery_id)  # the last
        failed = Delivery.objects.get(pk=delivery_id)
        assert failed.status == "failed" and failed.attempts == 2 and "(550, b'mailbox unavailable')" in failed.error
    subscription.refresh_from_db()
    assert subscription.failing and subscription.consecutive_failures == 2
    metrics = client.get("/metrics").content.decode()
    assert "analytics_subscriptions_failing 1.0" in metrics
    # one success resets it
    smtp.refusal = None
    [delivery_id] = deliveries.schedule_due(utc(2026, 12, 1, 12, 0, 1))
    deliveries.send_delivery(delivery_id)
    subscription.refresh_from_db()
    assert not subscription.failing and subscription.consecutive_failures == 0
    assert len(smtp.messages) == 1


def test_the_worker_role_starts_through_the_entrypoint_and_its_tick_schedules(smtp, worker):
    now = timezone.now()
    saved = SavedReport.objects.create(name="Stats", report="stats", params={}, window="last_1h", timezone="UTC")
    subscription = subscribe(saved, armed_at=now - timedelta(minutes=61), recipients=["ops@example.com"])
    process = worker(entrypoint=True)
    delivery = wait_until(
        lambda: Delivery.objects.filter(subscription=subscription, status="sent").first(),
        90,
        what=f"the tick's delivery ({process.log_path})",
    )
    assert delivery.scheduled_for <= now and len(smtp.messages) == 1
    assert process.stop() == 0  # SIGTERM: a clean stop


def test_jobs_that_ended_badly_are_pruned_after_the_kept_days_and_the_rest_kept(settings):
    import asyncio
    import concurrent.futures
    from types import SimpleNamespace

    from asgiref.sync import sync_to_async
    from procrastinate.contrib.django import app

    from outcomes import tasks

    settings.WORKER_FAILED_JOBS_KEEP_DAYS = 2
    ended = {}  # (status, days ago) -> job id
    with connection.cursor() as cursor:
        for status, event in [("failed", "failed"), ("cancelled", "cancelled"), ("aborted", "aborted")]:
            for days in (3, 1):
                cursor.execute(
                    "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status)"
                    " VALUES ('deliveries', 'outcomes.send_delivery', '{}', %s) RETURNING id",
                    [status],
                )
                job = cursor.fetchone()[0]
                cursor.execute("DELETE FROM procrastinate_events WHERE job_id = %s", [job])
                cursor.execute(
                    "INSERT INTO procrastinate_events (job_id, type, at) VALUES"
                    " (%s, 'deferred', now() - %s * interval '1 day' - interval '1 hour'),"
                    " (%s, %s, now() - %s * interval '1 day')",
                    [job, days, job, event, days],
                )
                ended[status, days] = job
        cursor.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status)"
            " VALUES ('deliveries', 'outcomes.send_delivery', '{}', 'todo') RETURNING id"
        )
        waiting = cursor.fetchone()[0]
        cursor.execute("UPDATE procrastinate_events SET at = now() - interval '5 days' WHERE job_id = %s", [waiting])

    async def prune() -> None:  # as the worker runs it: procrastinate's Django connector, in its thread
        await tasks.prune_jobs.func(SimpleNamespace(app=app), timestamp=0)
        await sync_to_async(connections.close_all)()  # that thread's connection, closed

    # In a thread of its own: after the browser tests this one has an event loop running.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(prune())).result()

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM procrastinate_jobs")
        left = {row[0] for row in cursor.fetchall()}
    assert left == {ended["failed", 1], ended["cancelled", 1], ended["aborted", 1], waiting}
    # and the worker runs it every day
    assert {(p.task.name, p.cron) for p in app.periodic_registry.periodic_tasks.values()} >= {
        ("outcomes.prune_jobs", "17 3 * * *")
    }
