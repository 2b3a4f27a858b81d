"""``manage.py revoke_api_key PREFIX [PREFIX ...]``: revoke keys for good, from a shell.

A key is named by its prefix, the part before the dot (shown in the admin's list and by
``create_api_key``). Revocation cannot be undone; every API process stops accepting the key
within ``API_KEY_CACHE_SECONDS``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from outcomes.models import APIKey


class Command(BaseCommand):
    help = "Revoke API keys, named by their prefix (the part of the key before the dot)."

    def add_arguments(self, parser):
        parser.add_argument("prefixes", nargs="+", metavar="PREFIX", help="A key's prefix, e.g. Xy12AbCd.")

    def handle(self, *args, prefixes: list[str], **options):
        wanted = list(dict.fromkeys(prefix.split(".", 1)[0].strip() for prefix in prefixes))
        with transaction.atomic():
            keys = {key.prefix: key for key in APIKey.objects.select_for_update().filter(prefix__in=wanted)}
            missing = [prefix for prefix in wanted if prefix not in keys]
            if missing:
                raise CommandError(f"No API key has the prefix {', '.join(map(repr, missing))}; nothing was revoked.")
            for prefix in wanted:
                key = keys[prefix]
                if key.revoked:
                    self.stdout.write(f"API key {prefix} ({key.name!r}) was already revoked.")
                    continue
                key.revoked = True
                key.save(update_fields=["revoked"])
                self.stdout.write(
                    f"API key {prefix} ({key.name!r}) revoked; every API process refuses it within "
                    f"{settings.API_KEY_CACHE_SECONDS} s."
                )
