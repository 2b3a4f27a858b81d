"""``manage.py verify_rollups``: recompute the rollups from the raw rows and report every difference."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from outcomes import rollups
from outcomes.management.commands._time import iso_datetime


class Command(BaseCommand):
    help = (
        "Recompute every rollup from the raw outcomes and print each difference. Exits 1 if any. "
        "After prune_outcomes, only the time that still has its raw rows is compared."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", type=iso_datetime, help="Only buckets from this day on (ISO 8601, UTC).")
        parser.add_argument("--until", type=iso_datetime, help="Only buckets before this time (ISO 8601, UTC).")
        parser.add_argument("--limit", type=int, default=50, help="Print at most this many differences (default 50).")

    def handle(self, *args, since=None, until=None, limit=50, **options):
        cut = rollups.raw_rows_start()
        if cut is not None and (since is None or since < cut):
            self.stdout.write(
                f"raw outcomes before {cut.date().isoformat()} were pruned: comparing from "
                f"{cut.date().isoformat()} on (the rollups are the record of the time before)"
            )
        differences = rollups.verify(since=since, until=until)
        for diff in differences[:limit]:
            key = ", ".join(str(part) for part in diff.key)
            self.stdout.write(f"{diff.table} [{key}]: stored {diff.stored}, raw rows say {diff.expected}")
        if differences:
            more = f" ({len(differences) - limit} not shown)" if len(differences) > limit else ""
            raise CommandError(
                f"{len(differences)} rollup difference(s){more}; `manage.py rebuild_rollups --since …` fixes them."
            )
        self.stdout.write(self.style.SUCCESS("rollups match the raw outcomes"))
