"""``manage.py simulate_fx_rates FILE``: simulated reference rates for the simulated auctions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from outcomes.simulation import reference_rates_csv


class Command(BaseCommand):
    help = (
        "Write simulated euro reference rates (USD, GBP, CAD, JPY, CHF) for every working day of "
        "the last --days days through today, in the ECB's CSV layout, for `load_fx_rates`. For "
        "development and demos: real rates come from the ECB."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Where to write the CSV.")
        parser.add_argument("--days", type=int, default=60, help="How many days back (default 60).")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, file: str, days: int, seed: int, **options):
        if not 1 <= days <= 36_500:
            raise CommandError("--days must be between 1 and 36500.")
        today = datetime.now(UTC)
        text = reference_rates_csv(first=today - timedelta(days=days), last=today, seed=seed)
        path = Path(file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.stdout.write(f"wrote {len(text.splitlines()) - 1} days of simulated rates to {path}")
