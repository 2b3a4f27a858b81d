"""``manage.py check_role ROLE``: would this role start with these settings?

The check each role runs at its own start (analytics/roles.py), on its own: before a
deployment, or in a container's start script ahead of migrations.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from analytics import roles


class Command(BaseCommand):
    help = "Check the settings one role needs (api, consumer, writer, database); exit 1 naming each one missing."
    requires_system_checks = []  # settings only: quick at every container start

    def add_arguments(self, parser):
        parser.add_argument("role", choices=sorted(roles.ROLES))

    def handle(self, *args, role: str, **options):
        found = roles.problems(role)
        if found:
            raise CommandError(f"The {role} role cannot start:\n" + "\n".join(f"- {problem}" for problem in found))
        self.stdout.write(f"{role}: the settings it needs are set.")
