"""``manage.py erase_user USER_ID``: a privacy request — one user's data out of the service."""

from __future__ import annotations

import hashlib
import logging

from django.core.management.base import BaseCommand, CommandError

from outcomes import writes

audit = logging.getLogger("outcomes.audit")


class Command(BaseCommand):
    help = (
        "Remove one user's outcomes (rollups kept exact, reach sketches of the touched hours rebuilt) "
        "and every dead letter mentioning the user id, then log an audit line."
    )

    def add_arguments(self, parser):
        parser.add_argument("user_id")

    def handle(self, *args, user_id: str, **options):
        if not user_id or "\x00" in user_id:
            raise CommandError("USER_ID must be a non-empty string without NUL.")
        erased = writes.user_erase(user_id=user_id)
        # The audit line proves the erasure without keeping the id: its SHA-256 only.
        audit.info(
            "user erased",
            extra={
                "action": "erase_user",
                "user_sha256": hashlib.sha256(user_id.encode()).hexdigest(),
                "outcomes": erased.outcomes,
                "dead_letters": erased.dead_letters,
            },
        )
        self.stdout.write(f"erased {erased.outcomes} outcome(s) and {erased.dead_letters} dead letter(s)")
