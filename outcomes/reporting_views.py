"""The reporting schema: stable SQL views over the rollups, for tools that read SQL (Grafana,
a BI tool), and the read-only role that may read them and nothing else.

The views are a contract (docs/operations.md, "Grafana over the business data"): their names
and columns stay, whatever the rollup tables become. Each sums every row of a key — the
partial rows ingestion appends and compaction merges later — so a view is exact at every
commit, as the API's reports are. Money is in the outcome's currency, in units (not cents).
They never read the raw outcomes table.

The role is made by ``manage.py create_reporting_role`` (it needs a database user allowed to
create roles, which migrations should not need): it logs in with its own password (a secret),
may use the ``reporting`` schema and select from its views, runs every statement read-only
and under its own ``statement_timeout``.
"""

from __future__ import annotations

SCHEMA = "reporting"
ROLE = "analytics_reporting"
# The views, each with what it answers (the documented contract; the migration creates them).
VIEWS = {
    "outcomes_hourly": "outcomes, wins, enriched outcomes, revenue and bids per UTC hour and currency",
    "domains_hourly": "the same per UTC hour, site domain and currency",
    "experiment_variants_hourly": "the same per UTC hour, experiment, variant and currency (tagged outcomes)",
}
STATEMENT_TIMEOUT = "10s"


def grants(role: str = ROLE) -> list[str]:
    """What the role may do: read the reporting views, nothing else, read-only."""
    return [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}",
        f"GRANT USAGE ON SCHEMA {SCHEMA} TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {role}",
        # views a later migration adds (created by the same user) are readable too
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT SELECT ON TABLES TO {role}",
        f"ALTER ROLE {role} SET default_transaction_read_only = on",
        f"ALTER ROLE {role} SET statement_timeout = '{STATEMENT_TIMEOUT}'",
        f"ALTER ROLE {role} SET search_path = {SCHEMA}",
    ]
