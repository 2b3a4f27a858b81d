"""``manage.py migrate_locked``: ``migrate`` under a PostgreSQL advisory lock.

Every API replica and the consumer run migrations on start (the specification's
entrypoint does); the lock makes concurrent starts take turns, so the first applies the
migrations and the others find nothing left to do.

The others wait by trying the lock every ``POLL_S`` rather than blocking on it: a blocked
``pg_advisory_lock`` is a statement in progress, and an index built ``CONCURRENTLY`` by the
migration that holds the lock waits for every statement in progress — they would wait for
each other for ever.
"""

from __future__ import annotations

import logging
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

logger = logging.getLogger("outcomes.migrations")

# Any constant shared by all replicas; "analytcs" in ASCII.
MIGRATION_LOCK_ID = 0x616E616C79746373
POLL_S = 0.5


class Command(BaseCommand):
    help = "Apply migrations, one process at a time (PostgreSQL advisory lock)."

    def add_arguments(self, parser):
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")

    def handle(self, *args, **options):
        # At a terminal, migrate's own report. Otherwise (a container's init step, whose output
        # is a log stream) one JSON line naming what was applied.
        person = self.stdout.isatty()
        started = time.monotonic()
        with connection.cursor() as cursor:
            while True:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK_ID])
                if cursor.fetchone()[0]:
                    break
                time.sleep(POLL_S)
            try:
                waited = time.monotonic() - started
                if waited > 1 and person:
                    self.stdout.write(f"waited {waited:.1f}s for another process's migrations")
                executor = MigrationExecutor(connection)
                plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
                call_command("migrate", interactive=False, verbosity=options["verbosity"] if person else 0)
                if not person:
                    logger.info(
                        "migrations applied" if plan else "no migrations to apply",
                        extra={
                            "applied": [f"{migration.app_label}.{migration.name}" for migration, _ in plan],
                            "waited_for_lock_s": round(waited, 1),
                            "seconds": round(time.monotonic() - started, 1),
                        },
                    )
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_ID])
