"""``manage.py load_fx_rates FILE``: reference exchange rates from an ECB CSV file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from outcomes.models import ExchangeRate
from outcomes.money import parse_ecb_csv

logger = logging.getLogger("outcomes.fx")
MAX_FILE_BYTES = 64 * 2**20  # the ECB's whole history since 1999 is ~0.6 MB


class Command(BaseCommand):
    help = (
        "Load euro reference exchange rates from a CSV in the ECB's layout (eurofxref-hist.csv, "
        "or the daily eurofxref.csv). Rates already stored for a day and currency are replaced; "
        "the whole file loads or nothing does."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the CSV file, or - for standard input.")

    def handle(self, *args, file: str, **options):
        text = self._read(file)
        try:
            rates = parse_ecb_csv(text)
        except ValueError as exc:
            raise CommandError(f"{file}: {exc}") from None
        source = "stdin" if file == "-" else Path(file).name
        rows = [ExchangeRate(day=day, currency=currency, per_euro=rate, source=source) for day, currency, rate in rates]
        with transaction.atomic():
            stored = set(
                ExchangeRate.objects.filter(
                    day__gte=min(r.day for r in rows), day__lte=max(r.day for r in rows)
                ).values_list("currency", "day")
            )
            ExchangeRate.objects.bulk_create(
                rows,
                batch_size=5000,
                update_conflicts=True,
                unique_fields=["currency", "day"],
                update_fields=["per_euro", "source", "loaded_at"],
            )
        replaced = sum((row.currency, row.day) in stored for row in rows)
        currencies = sorted({row.currency for row in rows})
        first, last = min(row.day for row in rows), max(row.day for row in rows)
        self.stdout.write(
            f"loaded {len(rows):,} rates ({len(rows) - replaced:,} new, {replaced:,} replaced) of "
            f"{len(currencies)} currencies from {first.isoformat()} to {last.isoformat()}: {', '.join(currencies)}"
        )
        logger.info(
            "exchange rates loaded",
            extra={"rates": len(rows), "replaced": replaced, "first": first.isoformat(), "last": last.isoformat()},
        )

    def _read(self, file: str) -> str:
        try:
            if file == "-":
                data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
            else:
                with open(file, "rb") as handle:
                    data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None
        if len(data) > MAX_FILE_BYTES:
            raise CommandError(f"{file} is larger than {MAX_FILE_BYTES // 2**20} MB: not a reference-rate file")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CommandError(f"{file} is not UTF-8 text (byte {exc.start})") from None
