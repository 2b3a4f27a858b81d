"""The reporting schema's views (``outcomes.reporting_views``): a stable SQL contract over the
rollups, each summing every row of a key (partial rows included), money in units."""

from django.db import migrations

MONEY = """
    sum(outcomes)::bigint AS outcomes,
    sum(wins)::bigint AS wins,
    sum(enriched_outcomes)::bigint AS enriched_outcomes,
    (sum(revenue_cents) / 100.0)::numeric(20, 2) AS revenue,
    (sum(bid_cents) / 100.0)::numeric(20, 2) AS bids,
    (sum(won_bid_cents) / 100.0)::numeric(20, 2) AS won_bids"""

FORWARD = f"""
CREATE SCHEMA IF NOT EXISTS reporting;

CREATE VIEW reporting.outcomes_hourly AS
SELECT bucket AS time, currency,{MONEY}
FROM public.outcomes_rollup_hour
GROUP BY bucket, currency;

CREATE VIEW reporting.domains_hourly AS
SELECT bucket AS time, site_domain, currency,{MONEY}
FROM public.outcomes_rollup_domain_hour
GROUP BY bucket, site_domain, currency;

CREATE VIEW reporting.experiment_variants_hourly AS
SELECT bucket AS time, experiment, variant, currency,{MONEY}
FROM public.outcomes_rollup_experiment_hour
WHERE experiment <> ''
GROUP BY bucket, experiment, variant, currency;

COMMENT ON SCHEMA reporting IS 'Stable views over the rollups for SQL tools (Grafana): a documented contract.';
COMMENT ON VIEW reporting.outcomes_hourly IS 'Outcomes, wins, enriched outcomes, revenue and bids per UTC hour and currency.';
COMMENT ON VIEW reporting.domains_hourly IS 'The same per UTC hour, site domain and currency.';
COMMENT ON VIEW reporting.experiment_variants_hourly IS 'The same per UTC hour, experiment, variant and currency.';
"""

BACKWARD = """
DROP VIEW IF EXISTS reporting.experiment_variants_hourly;
DROP VIEW IF EXISTS reporting.domains_hourly;
DROP VIEW IF EXISTS reporting.outcomes_hourly;
DROP SCHEMA IF EXISTS reporting;
"""


class Migration(migrations.Migration):
    dependencies = [("outcomes", "0021_subscriptions_and_alerts")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
