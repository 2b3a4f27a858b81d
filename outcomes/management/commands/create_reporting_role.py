"""``manage.py create_reporting_role`` — the read-only database role SQL tools (Grafana) log in
as: it may read the ``reporting`` views and nothing else, every statement read-only and under
its own statement timeout (``outcomes.reporting_views``). Idempotent: run it again to change
the password or after an upgrade.

The password is REPORTING_DB_PASSWORD (or the file REPORTING_DB_PASSWORD_FILE names: the
Kubernetes secret); the database user running it needs CREATEROLE.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from psycopg import sql

from analytics.env import env_str
from analytics.roles import MIN_SECRET_LENGTH, placeholder
from outcomes import reporting_views


class Command(BaseCommand):
    help = "Create (or update) the read-only role that reads the reporting views."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--role", default=reporting_views.ROLE, help="The role's name.")

    def handle(self, *args, role, **options):
        password = env_str("REPORTING_DB_PASSWORD", "")
        if not password:
            raise CommandError(
                "REPORTING_DB_PASSWORD (or REPORTING_DB_PASSWORD_FILE) is required: the role's password."
            )
        if placeholder(password) or len(password) < MIN_SECRET_LENGTH:
            raise CommandError(
                "REPORTING_DB_PASSWORD is a placeholder or shorter than 32 characters: use a random value."
            )
        name = sql.Identifier(role)
        database = sql.Identifier(connection.settings_dict["NAME"])
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            verb = "ALTER" if cursor.fetchone() else "CREATE"
            statements = [
                # made without SUPERUSER, CREATEDB or CREATEROLE (the defaults), and stays so
                sql.SQL("{} ROLE {} WITH LOGIN NOINHERIT PASSWORD {}").format(
                    sql.SQL(verb), name, sql.Literal(password)
                ),
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, name),
                *(sql.SQL(statement).format(role=name) for statement in reporting_views.grants("{role}")),
            ]
            for statement in statements:
                cursor.execute(statement.as_string(connection.connection))
        views = ", ".join(f"{reporting_views.SCHEMA}.{view}" for view in reporting_views.VIEWS)
        self.stdout.write(f"role {role} {verb.lower()}d: it reads {views}, read-only")
