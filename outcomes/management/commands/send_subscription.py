"""``manage.py send_subscription ID`` — send a subscription's report now, outside its schedule
(the worker sends it); ``--demo ADDRESS`` first saves a demo report and an hourly subscription
of ADDRESS to it (what ``make run`` does, so a delivered report is there to read)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from outcomes import deliveries, webhooks
from outcomes.models import SavedReport, Subscription

DEMO_REPORT = "Last hour by site (demo)"


class Command(BaseCommand):
    help = "Send a subscription's report now (the worker delivers it)."
    requires_system_checks = []

    def add_arguments(self, parser):
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("subscription", nargs="?", type=int, help="The subscription's id.")
        group.add_argument("--demo", metavar="ADDRESS", help="Subscribe ADDRESS to a demo report, then send it.")

    def handle(self, *args, subscription=None, demo=None, **options):
        if demo:
            report, _ = SavedReport.objects.get_or_create(
                name=DEMO_REPORT,
                defaults={"report": "breakdown", "params": {"by": "site_domain", "limit": "20"}, "window": "last_1h"},
            )
            found = Subscription.objects.filter(report=report, recipients__contains=[demo]).first()
            if found is None:
                found = Subscription(
                    report=report,
                    rrule="FREQ=HOURLY",
                    format="xlsx",
                    recipients=[demo],
                    webhook_secret=webhooks.new_secret(),
                    created_by="make run",
                )
                deliveries.arm(found, timezone.now())
                found.save()
        else:
            found = Subscription.objects.filter(pk=subscription).first()
            if found is None:
                raise CommandError(f"No subscription {subscription}.")
        delivery = deliveries.send_now(found)
        self.stdout.write(f"delivery {delivery.pk} of subscription {found.pk} ({found.report.name}) queued")
