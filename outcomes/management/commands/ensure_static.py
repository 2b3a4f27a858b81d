"""``manage.py ensure_static``: the static files' manifest exists before the API serves.

With DEBUG=False every page names its CSS and JS through the manifest ``collectstatic``
writes (``staticfiles.json``: hashed, compressed copies). The image collects them when it
is built; a checkout run with DEBUG=False has none, and every admin and dashboard page
would be a 500 ("Missing staticfiles manifest entry"). The api entrypoint runs this:
nothing to do when the manifest exists, a ``collectstatic`` when it does not, and a clear
stop when STATIC_ROOT cannot be written.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Collect static files when the manifest production pages need is missing (DEBUG=False only)."
    requires_system_checks = []

    def handle(self, *args, **options):
        manifest = getattr(staticfiles_storage, "manifest_name", None)
        if settings.DEBUG or manifest is None:
            return  # files are served from the apps' directories as they are
        if staticfiles_storage.manifest_storage.exists(manifest):
            return
        root = settings.STATIC_ROOT
        self.stdout.write(f"{root}/{manifest} is missing: collecting static files (once, ~20 s)…")
        try:
            call_command("collectstatic", interactive=False, verbosity=0)
        except OSError as exc:
            raise CommandError(
                f"Static files are not collected and STATIC_ROOT={root} cannot be written ({exc.strerror}): "
                "run `manage.py collectstatic` where it can be, or set STATIC_ROOT to a writable directory."
            ) from None
        self.stdout.write(f"static files collected into {root}")
