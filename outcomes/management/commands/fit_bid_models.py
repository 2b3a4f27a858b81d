"""``manage.py fit_bid_models``: fit the bid models (W(b) per segment) and store a new
version of each; the API serves the latest. A CronJob runs it (kubernetes/)."""

from __future__ import annotations

import resource
import time
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from outcomes.management.commands._time import iso_datetime
from outcomes.modeling import MIN_OUTCOMES, fit_bid_models


class Command(BaseCommand):
    help = (
        "Fit the win-probability curve W(b) of every currency and of every site domain in it with enough "
        "outcomes, over whole UTC days, and store each as a new version."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=28, help="Whole UTC days to fit on (default 28).")
        parser.add_argument(
            "--end", type=iso_datetime, help="The window's end, a UTC midnight (default: the next one, today included)."
        )
        parser.add_argument(
            "--min-outcomes",
            type=int,
            default=MIN_OUTCOMES,
            help=f"A segment with fewer gets no model of its own (default {MIN_OUTCOMES}).",
        )

    def handle(self, *args, days: int, end: datetime | None, min_outcomes: int, **options):
        if not 1 <= days <= 3660:
            raise CommandError("--days: from 1 to 3660.")
        if min_outcomes < 1:
            raise CommandError("--min-outcomes: at least 1.")
        if end is None:
            end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        elif end != end.replace(hour=0, minute=0, second=0, microsecond=0) or end.utcoffset():
            raise CommandError(f"--end {end.isoformat()}: a UTC midnight, such as 2026-12-01.")
        start = end - timedelta(days=days)
        started = time.monotonic()
        summary = fit_bid_models(start=start, end=end, min_outcomes=min_outcomes)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.stdout.write(
            self.style.SUCCESS(
                f"fitted {summary.segments} bid model(s) on {summary.outcomes:,} outcomes from "
                f"{start:%Y-%m-%d} to {end:%Y-%m-%d} in {time.monotonic() - started:.1f} s "
                f"({summary.pooled} shrunk toward their currency's curve, {summary.skipped} domain(s) with fewer "
                f"than {min_outcomes} outcomes served their currency's; peak memory {peak_mb:.0f} MB)"
            )
        )
