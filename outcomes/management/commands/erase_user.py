"""``manage.py erase_user USER_ID``: a privacy request — one user's data out of the service."""

from __future__ import annotations

import logging

from django.core.management.base import BaseCommand, CommandError

from analytics import roles
from outcomes import writes

audit = logging.getLogger("outcomes.audit")


class Command(BaseCommand):
    help = (
        "Remove one user's outcomes (rollups kept exact, reach sketches of the touched hours rebuilt) "
        "and every dead letter mentioning the user id, leave a tombstone so they are never stored again, "
        "then log an audit line."
    )

    def add_arguments(self, parser):
        parser.add_argument("user_id")

    def handle(self, *args, user_id: str, **options):
        if not user_id or "\x00" in user_id:
            raise CommandError("USER_ID must be a non-empty string without NUL.")
        roles.require("writer", CommandError)
        erased = writes.user_erase(user_id=user_id)
        # The audit line proves the erasure without keeping the id: a keyed hash (HMAC-SHA256
        # with PRIVACY_HASH_KEY), which a guessable id cannot be recovered from without the key.
        audit.info(
            "user erased",
            extra={
                "action": "erase_user",
                "user_hmac": writes.erasure_hash(user_id),
                "outcomes": erased.outcomes,
                "dead_letters": erased.dead_letters,
            },
        )
        self.stdout.write(f"erased {erased.outcomes} outcome(s) and {erased.dead_letters} dead letter(s)")
