"""``manage.py run_worker``: the worker role — scheduled reports, alerts and their deliveries
(procrastinate jobs in PostgreSQL; ``outcomes.tasks``).

Thin: the role's settings checked, then procrastinate's worker on its own connection pool,
with a liveness file touched every few seconds while the worker's event loop turns
(``WORKER_HEALTH_FILE``; the Deployment's probe reads its age). SIGTERM stops taking jobs and
lets running ones finish (procrastinate's graceful stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from procrastinate.contrib.django import app

from analytics import roles

BEAT_SECONDS = 5


async def _beat(path: Path) -> None:
    while True:
        path.touch()
        await asyncio.sleep(BEAT_SECONDS)


class Command(BaseCommand):
    help = "Run the worker: scheduled reports, alerts and their deliveries."
    requires_system_checks = []

    def handle(self, *args, **options):
        roles.require("worker", CommandError)
        health = Path(settings.WORKER_HEALTH_FILE)
        health.parent.mkdir(parents=True, exist_ok=True)
        with app.replace_connector(app.connector.get_worker_connector()):
            asyncio.run(self._run(health))

    async def _run(self, health: Path) -> None:
        async with app.open_async():
            beat = asyncio.create_task(_beat(health))
            try:
                await app.run_worker_async()
            finally:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(health)
