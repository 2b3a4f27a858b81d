"""``manage.py migrate_locked``: ``migrate`` under a PostgreSQL advisory lock.

Every API replica and the consumer run migrations on start (the specification's
entrypoint does); the lock makes concurrent starts take turns, so the first applies the
migrations and the others find nothing left to do.
"""

from __future__ import annotations

import time

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

# Any constant shared by all replicas; "analytcs" in ASCII.
MIGRATION_LOCK_ID = 0x616E616C79746373


class Command(BaseCommand):
    help = "Apply migrations, one process at a time (PostgreSQL advisory lock)."

    def add_arguments(self, parser):
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")

    def handle(self, *args, **options):
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_ID])
            try:
                waited = time.monotonic() - started
                if waited > 1:
                    self.stdout.write(f"waited {waited:.1f}s for another process's migrations")
                call_command("migrate", interactive=False, verbosity=options["verbosity"])
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_ID])
