"""``manage.py replay_dead_letters``: store dead letters that are valid now (after a fix)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics import roles
from outcomes.models import DeadLetter
from outcomes.replay import dead_letters_replay


class Command(BaseCommand):
    help = "Parse dead letters again with the current rules and store the ones that are now valid."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Report what would happen; change nothing.")
        parser.add_argument(
            "--reason",
            action="append",
            choices=DeadLetter.Reason.values,
            default=None,
            help="Only dead letters with this reason (repeatable).",
        )
        parser.add_argument(
            "--id",
            action="append",
            type=int,
            dest="ids",
            default=None,
            help="Only the dead letter with this id (repeatable).",
        )

    def handle(self, *args, **options):
        roles.require("writer", CommandError)
        report = dead_letters_replay(
            reasons=options["reason"],
            ids=options["ids"],
            dry_run=options["dry_run"],
            max_bytes=settings.CONSUMER.max_message_bytes,
            max_price=settings.CONSUMER.max_price,
        )
        verb = "would store" if options["dry_run"] else "stored"
        self.stdout.write(
            f"examined={report.examined} {verb.replace(' ', '_')}={report.stored} duplicates={report.duplicates} "
            f"conflicting={report.conflicting} still_invalid={sum(report.still_invalid.values())}"
        )
        for reason, count in sorted(report.still_invalid.items()):
            self.stdout.write(f"  still invalid, {reason}: {count}")
