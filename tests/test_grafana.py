"""Grafana over the business data, tested where Grafana cannot run: every panel's SQL of
``monitoring/grafana-business-dashboard.json``, with Grafana's macros and template variables
expanded (``tests.grafana``), runs as the read-only reporting role against real PostgreSQL on
randomized data and equals the REST answer; the role cannot write or read the tables; the
provisioning files hold together."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import yaml
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from outcomes import reporting_views
from outcomes.models import AuctionOutcome
from tests.grafana import expand

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"
DASHBOARD = json.loads((MONITORING / "grafana-business-dashboard.json").read_text())
PANELS = {panel["title"]: panel["targets"][0]["rawSql"] for panel in DASHBOARD["panels"]}
START = datetime(2025, 10, 24, tzinfo=UTC)
END = datetime(2025, 10, 26, tzinfo=UTC)  # REST's end is exclusive, Grafana's range inclusive:
GRAFANA_END = END - timedelta(seconds=1)
DOMAINS = [f"site{i}.example" for i in range(13)]
PASSWORD = "reporting-" + "x" * 40
ALL = "__all"


@pytest.fixture
def data(outcome_factory):
    rng = random.Random(20261203)
    made = []
    for _ in range(160):
        won = rng.random() < 0.6
        bid = Decimal(rng.randint(20, 400)) / 100
        tagged = rng.random() < 0.5
        n = rng.randint(1, 3)
        fields = dict(
            site_domain=rng.choice(DOMAINS[: rng.randint(1, len(DOMAINS))]),
            currency=rng.choice(["EUR", "USD", "USD"]),
            win_status=won,
            bid_price=bid,
            win_price=(bid * Decimal(rng.randint(30, 100)) / 100).quantize(Decimal("0.01")) if won else None,
            user_id=f"user-{rng.randint(1, 50)}",
            experiment="floor-test" if tagged else None,
            variant=rng.choice(["control", "B"]) if tagged else None,
            auction_timestamp=START - timedelta(hours=3) + timedelta(minutes=rng.randint(0, 60 * 54)),
        )
        made.extend([fields] * n)
    outcome_factory.many(made)


@pytest.fixture
def reporting(monkeypatch):
    """A connection as the reporting role, made by its command."""
    monkeypatch.setenv("REPORTING_DB_PASSWORD", PASSWORD)
    call_command("create_reporting_role")
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        dbname=db["NAME"],
        user=reporting_views.ROLE,
        password=PASSWORD,
        autocommit=True,
    ) as conn:
        yield conn


def panel(conn, title: str, *, domain: str = ALL, currency: str = ALL) -> list[tuple]:
    sql = expand(
        PANELS[title],
        start=START,
        end=GRAFANA_END,
        interval_seconds=3600,
        variables={"domain": domain, "currency": currency},
    )
    with conn.cursor() as cursor:
        cursor.execute(sql)
        return [tuple(float(v) if isinstance(v, Decimal) else v for v in row) for row in cursor.fetchall()]


def rest(path: str, **params) -> dict:
    response = APIClient().get(path, {"start": "2025-10-24T00:00:00Z", "end": "2025-10-26T00:00:00Z", **params})
    assert response.status_code == 200, response.content
    return response.json()


def epoch(bucket: str) -> float:
    return datetime.fromisoformat(bucket.replace("Z", "+00:00")).timestamp()


def approx(value):
    return pytest.approx(value, rel=1e-9, abs=1e-9)


def percent(value):
    """The API gives rates in percent to two decimals."""
    return pytest.approx(value, abs=0.005 + 1e-9)


@pytest.mark.parametrize(
    ("domain", "currency"), [(ALL, ALL), ("site0.example", ALL), (ALL, "EUR"), ("site1.example", "USD")]
)
def test_every_panel_equals_the_rest_answer(data, reporting, domain, currency):
    filters = {k: v for k, v in {"site_domain": domain, "currency": currency}.items() if v != ALL}
    stats = rest("/api/outcomes/stats/", **filters)
    assert stats["total_outcomes"] > 0
    [(outcomes,)] = panel(reporting, "Outcomes", domain=domain, currency=currency)
    assert outcomes == stats["total_outcomes"]
    [(win_rate,)] = panel(reporting, "Win rate", domain=domain, currency=currency)
    assert win_rate == percent(stats["win_rate"])

    revenue = dict(panel(reporting, "Revenue by currency", domain=domain, currency=currency))
    for code in revenue:
        assert revenue[code] == approx(rest("/api/outcomes/stats/", **{**filters, "currency": code})["total_revenue"])

    series = rest("/api/outcomes/timeseries/", granularity="hour", **filters)["buckets"]
    filled = [b for b in series if b["outcomes"]]
    assert [(t, o, w) for t, o, w in panel(reporting, "Outcomes and wins", domain=domain, currency=currency)] == [
        (epoch(b["bucket"]), b["outcomes"], b["wins"]) for b in filled
    ]
    rates = panel(reporting, "Win rate over time", domain=domain, currency=currency)
    assert [t for t, _ in rates] == [epoch(b["bucket"]) for b in filled]
    assert [r for _, r in rates] == [percent(b["win_rate"]) for b in filled]

    by_currency = {}
    for t, code, value in panel(reporting, "Revenue", domain=domain, currency=currency):
        by_currency.setdefault(code, {})[t] = value
    ecpm = {}
    for t, code, value in panel(reporting, "eCPM", domain=domain, currency=currency):
        ecpm.setdefault(code, {})[t] = value
    for code in by_currency:
        buckets = [
            b
            for b in rest("/api/outcomes/timeseries/", granularity="hour", **{**filters, "currency": code})["buckets"]
            if b["outcomes"]
        ]
        assert by_currency[code] == {epoch(b["bucket"]): approx(b["revenue"]) for b in buckets}
        # eCPM: revenue per 1,000 wins (none in an hour without wins)
        assert ecpm[code] == {
            epoch(b["bucket"]): (approx(b["revenue"] * 1000 / b["wins"]) if b["wins"] else None) for b in buckets
        }


def test_tables_equal_the_breakdowns_and_the_experiment_reports(data, reporting):
    breakdown = rest("/api/outcomes/breakdown/", by="site_domain", limit=100)["rows"]
    top = panel(reporting, "Top domains")
    assert len(top) == 10
    expected = sorted(breakdown, key=lambda row: (-row["outcomes"], row["site_domain"]))[:10]
    assert [(d, o, w) for d, o, w, _, _ in top] == [(r["site_domain"], r["outcomes"], r["wins"]) for r in expected]
    assert [rate for *_, rate, _ in top] == [percent(r["win_rate"]) for r in expected]
    assert [revenue for *_, revenue in top] == [approx(r["revenue"]) for r in expected]

    split = panel(reporting, "Currency split", currency="EUR")  # the currency variable does not apply
    currencies = rest("/api/outcomes/breakdown/", by="currency")["rows"]
    assert dict(split) == {r["currency"]: r["outcomes"] for r in currencies} and len(split) == 2

    variants = panel(reporting, "Experiment variants", currency="USD")
    assert [(e, v) for e, v, *_ in variants] == [("floor-test", "B"), ("floor-test", "control")]
    for experiment, variant, outcomes, wins, rate, revenue, ecpm in variants:
        stats = rest("/api/outcomes/stats/", experiment=experiment, variant=variant, currency="USD")
        assert (outcomes, wins) == (stats["total_outcomes"], stats["total_wins"])
        assert rate == percent(stats["win_rate"]) and revenue == approx(stats["total_revenue"])
        assert ecpm == pytest.approx(stats["total_revenue"] * 1000 / stats["total_wins"], abs=0.005 + 1e-9)


def test_the_template_variables_list_what_is_stored(data, reporting):
    for variable in DASHBOARD["templating"]["list"]:
        with reporting.cursor() as cursor:
            sql = expand(variable["query"], start=START, end=GRAFANA_END, interval_seconds=3600, variables={})
            cursor.execute(sql)
            values = [row[0] for row in cursor.fetchall()]
        field = {"domain": "site_domain", "currency": "currency"}[variable["name"]]
        stored = AuctionOutcome.objects.filter(event_time__gte=START, event_time__lt=END).values_list(field, flat=True)
        assert values == sorted(set(stored)) and variable["includeAll"] and variable["allValue"] == ALL


def test_the_role_reads_the_views_and_nothing_else(data, reporting):
    with reporting.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == reporting_views.STATEMENT_TIMEOUT
        cursor.execute("SHOW default_transaction_read_only")
        assert cursor.fetchone()[0] == "on"
        for view in reporting_views.VIEWS:
            cursor.execute(f"SELECT count(*) FROM reporting.{view}")
            assert cursor.fetchone()[0] > 0
    refused = [
        f"SELECT count(*) FROM public.{AuctionOutcome._meta.db_table}",
        "SELECT count(*) FROM public.outcomes_rollup_hour",
        "SELECT count(*) FROM public.outcomes_apikey",
        "INSERT INTO reporting.outcomes_hourly (currency) VALUES ('EUR')",
        "CREATE TABLE reporting.scratch (x int)",
        "CREATE TABLE public.scratch (x int)",
        f"DELETE FROM public.{AuctionOutcome._meta.db_table}",
        "SET default_transaction_read_only = off; CREATE TABLE reporting.scratch (x int)",
    ]
    for statement in refused:
        with pytest.raises(psycopg.Error) as caught, reporting.cursor() as cursor:
            cursor.execute(statement)
        # permission denied, read-only transaction, or a view that cannot take rows
        assert caught.value.sqlstate in ("42501", "25006", "55000"), (statement, caught.value)
    # running it again changes nothing but the password
    call_command("create_reporting_role")


def test_the_dashboard_reads_only_the_views_through_the_provisioned_source():
    source = yaml.safe_load((MONITORING / "grafana-provisioning/datasources/analytics-business.yaml").read_text())
    [datasource] = source["datasources"]
    assert datasource["type"] == "grafana-postgresql-datasource" and datasource["user"] == reporting_views.ROLE
    assert datasource["secureJsonData"]["password"] == "$REPORTING_DB_PASSWORD"  # from the environment, not here
    providers = yaml.safe_load((MONITORING / "grafana-provisioning/dashboards/analytics.yaml").read_text())
    assert providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"
    views = {f"{reporting_views.SCHEMA}.{view}" for view in reporting_views.VIEWS}
    queries = [target["rawSql"] for p in DASHBOARD["panels"] for target in p["targets"]]
    queries += [variable["query"] for variable in DASHBOARD["templating"]["list"]]
    for sql in queries:
        relations = set(re.findall(r"\b(?:FROM|JOIN)\s+([a-z_][\w.]*)", sql, flags=re.IGNORECASE))
        assert relations and relations <= views, (relations, sql)
    for p in DASHBOARD["panels"]:
        assert p["datasource"]["uid"] == datasource["uid"] and p["targets"][0]["datasource"]["uid"] == datasource["uid"]
    titles = set(PANELS)
    assert {
        "Outcomes and wins",
        "Win rate over time",
        "Revenue",
        "eCPM",
        "Top domains",
        "Currency split",
        "Experiment variants",
    } <= titles
    assert [v["name"] for v in DASHBOARD["templating"]["list"]] == ["domain", "currency"]
