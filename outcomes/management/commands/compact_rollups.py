"""``manage.py compact_rollups``: merge the rollups' partial rows (consumers do it as they go)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from outcomes import rollups


class Command(BaseCommand):
    help = "Merge each rollup key's partial rows into one row. Safe while consumers write."

    def handle(self, *args, **options):
        total = 0
        while True:
            merged = rollups.compact()
            done = sum(merged.values())
            total += done
            if not done:
                break
        self.stdout.write(self.style.SUCCESS(f"merged {total} partial row(s)"))
