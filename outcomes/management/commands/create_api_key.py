"""``manage.py create_api_key --name NAME --scopes read[,write,admin] [--expires DAYS]``.

Prints what was created, then the key alone on the last line (so ``| tail -1`` captures it).
The key is shown only here: only its hash is stored.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from outcomes.models import APIKey


def scopes_list(value: str) -> list[str]:
    scopes = [part.strip() for part in value.split(",") if part.strip()]
    unknown = sorted(set(scopes) - set(APIKey.SCOPES))
    if not scopes or unknown:
        raise CommandError(f"--scopes must list some of {', '.join(APIKey.SCOPES)} (comma-separated); got {value!r}.")
    return sorted(set(scopes), key=APIKey.SCOPES.index)


class Command(BaseCommand):
    help = "Create an API key with scopes (read, write, admin) and print it once, alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="What the key is for (at most 50 characters).")
        parser.add_argument("--scopes", required=True, help="Comma-separated: read, write, admin.")
        parser.add_argument("--expires", type=int, metavar="DAYS", help="Days until the key stops working.")

    def handle(self, *args, name: str, scopes: str, expires: int | None = None, **options):
        name = name.strip()
        if not name or len(name) > 50:
            raise CommandError("--name must be 1 to 50 characters.")
        if expires is not None and expires < 1:
            raise CommandError("--expires must be a whole number of days, at least 1.")
        chosen = scopes_list(scopes)
        expiry = timezone.now() + timedelta(days=expires) if expires else None
        api_key, key = APIKey.objects.create_key(name=name, scopes=chosen, expiry_date=expiry)
        self.stdout.write(
            f"API key {api_key.prefix} ({name!r}) created with scopes {','.join(chosen)}, "
            f"{'expires ' + expiry.isoformat(timespec='seconds') if expiry else 'no expiry'}. "
            "It is shown only once: send it as 'Authorization: Api-Key <key>'."
        )
        self.stdout.write(key)
