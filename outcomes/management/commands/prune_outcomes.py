"""``manage.py prune_outcomes --older-than 30d [--dry-run]``: retention of the raw outcomes."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from outcomes import rollups, writes

logger = logging.getLogger("outcomes.lifecycle")
_AGE = re.compile(r"(\d+)d")


def age(text: str) -> timedelta:
    match = _AGE.fullmatch(text.strip())
    if not match or int(match.group(1)) < 1:
        raise CommandError(f"--older-than must be a number of days such as 30d, at least 1d; got {text!r}.")
    return timedelta(days=int(match.group(1)))


class Command(BaseCommand):
    help = (
        "Delete raw outcomes whose event time is older than N days (cut at a whole UTC day), in "
        "short batches that never block ingestion. Rollups are kept: reports over that time still work."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", required=True, help="Age in days, e.g. 30d.")
        parser.add_argument("--batch-size", type=int, default=5_000, help="Rows per transaction (default 5000).")
        parser.add_argument("--pause", type=float, default=0.0, help="Seconds to sleep between batches.")
        parser.add_argument("--dry-run", action="store_true", help="Count what would go; delete nothing.")

    def handle(self, *args, older_than: str, batch_size: int, pause: float, dry_run: bool, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        before = rollups.truncate(datetime.now(UTC) - age(older_than), "day")
        # Progress is for a person at a terminal; in a CronJob the output is a log stream and
        # the JSON line below says it all. A dry run's answer is always printed.
        chatty = dry_run or self.stdout.isatty()
        progress = writes.PruneProgress()
        for progress in writes.outcomes_prune(before=before, batch_size=batch_size, pause=pause, dry_run=dry_run):
            if chatty and not dry_run and progress.batches % 20 == 0:
                self.stdout.write(f"… {progress.deleted:,} deleted")
        verb = "would delete" if dry_run else "deleted"
        if chatty:
            self.stdout.write(
                f"{verb} {progress.deleted:,} outcomes with event time before {before.date().isoformat()}"
            )
        if not dry_run:
            logger.info(
                "outcomes pruned",
                extra={"before": before.isoformat(), "deleted": progress.deleted, "batches": progress.batches},
            )
