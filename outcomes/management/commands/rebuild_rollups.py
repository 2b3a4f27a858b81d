"""``manage.py rebuild_rollups [--since]``: recompute the rollups from the raw rows, online."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from outcomes import rollups
from outcomes.management.commands._time import iso_datetime


class Command(BaseCommand):
    help = (
        "Replace the rollups of [--since, --until) with sums recomputed from the raw outcomes, one chunk per "
        "transaction, while consumers keep writing. Never before the time prune_outcomes kept raw rows from: "
        "the rollups are the only record of pruned time."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since",
            type=iso_datetime,
            help="From this day on (default: the oldest raw row, never before a prune's cut).",
        )
        parser.add_argument("--until", type=iso_datetime, help="Up to this time (default: after the newest raw row).")
        parser.add_argument("--chunk-days", type=int, default=1, help="Days per transaction (default 1).")

    def handle(self, *args, since=None, until=None, chunk_days=1, **options):
        started = time.monotonic()
        try:
            chunks = rollups.rebuild(since=since, until=until, days=max(1, chunk_days))
        except rollups.PrunedHistory as refused:
            raise CommandError(f"--since: {refused}") from None
        self.stdout.write(
            self.style.SUCCESS(f"rebuilt {chunks} chunk(s) of {chunk_days} day(s) in {time.monotonic() - started:.1f}s")
        )
