"""Saved reports: refused at save time with the endpoint's own message, run now in any format
the endpoint speaks (the same answer as the endpoint for the resolved window), with the
caller's scopes, and in the admin validated the same way."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from outcomes.models import APIKey, SavedReport

pytestmark = pytest.mark.django_db


def client(*scopes: str) -> APIClient:
    secret = APIKey.objects.create_key(name="t", scopes=list(scopes))[1]
    return APIClient(HTTP_AUTHORIZATION=f"Api-Key {secret}")


def save(api: APIClient, **fields):
    body = {"name": "Daily EUR", "report": "stats", "params": {"currency": "EUR"}} | fields
    return api.post("/api/reports/", body, format="json")


@pytest.mark.parametrize(
    ("report", "params"),
    [
        ("stats", {"win_status": "maybe"}),
        ("stats", {"usr_id": "u"}),
        ("stats", {"site_domain": ""}),
        ("timeseries", {"granularity": "fortnight"}),
        ("breakdown", {"by": "planet", "limit": "1000"}),
        ("results", {"win_status": "true"}),
        ("bid_landscape", {"convert_to": "euros"}),
        ("export", {"ordering": "user_id"}),
        ("export", {"escape_formulas": "perhaps"}),
        ("stats", {"start": "2026-12-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"}),
    ],
)
def test_a_report_the_endpoint_refuses_is_refused_with_its_message(report, params):
    api = client("read", "write", "export")
    path = {
        "results": "/api/experiments/floor-test/results/",
        "bid_landscape": "/api/insights/bid_landscape/",
        "export": "/api/outcomes/export/",
    }.get(report, f"/api/outcomes/{report}/")
    endpoint = api.get(path, params)
    assert endpoint.status_code == 400
    saved_params = {**params, "experiment": "floor-test"} if report == "results" else params
    response = save(api, report=report, params=saved_params)
    assert response.status_code == 400, response.content
    assert response.json() == {"params": endpoint.json()}
    assert not SavedReport.objects.exists()


def test_what_belongs_to_a_run_or_a_window_is_not_saved():
    api = client("read", "write")
    refused = save(api, params={"format": "xlsx"}).json()
    assert refused == {"params": {"format": ["The format is chosen when the report runs (…/run/?format=xlsx)."]}}
    refused = save(api, window="yesterday", params={"start": "2026-11-01T00:00:00Z"}).json()
    assert refused["params"]["start"] == ["A report with a window takes its start and end from it at each run."]
    assert "experiment" in save(api, report="results", params={}).json()["params"]
    assert save(api, window="last_year").json()["window"] == ['"last_year" is not a valid choice.']
    assert save(api, timezone="Mars/Olympus").json()["timezone"] == ['"Mars/Olympus" is not a valid choice.']
    refused = save(api, report="timeseries", timezone="Europe/Berlin", params={"tz": "UTC"}).json()
    assert refused["params"]["tz"] == ["The report's timezone is Europe/Berlin: give the same tz, or leave it out."]
    assert save(api, params=["currency", "EUR"]).status_code == 400
    assert save(api, colour="blue").json() == {"colour": ["Unknown field."]}
    for params in ({"site_domain": "a\x00b"}, {"site\x00domain": "a"}):
        refused = save(api, params=params)
        assert refused.status_code == 400 and "Control characters" in str(refused.json()["params"])


def test_scopes_read_to_list_and_run_write_to_save_admin_to_delete(settings):
    settings.API_READ_ACCESS = "authenticated"
    reader, writer, admin = client("read"), client("write"), client("admin")
    assert save(reader).status_code == 403
    created = save(writer)
    assert created.status_code == 201, created.content
    report = created.json()
    assert report["created_by"].startswith("api-key:") and report["window"] == "" and report["timezone"] == "UTC"
    assert reader.get("/api/reports/").json()["results"][0]["id"] == report["id"]
    assert reader.get(f"/api/reports/{report['id']}/run/").status_code == 200
    assert APIClient().get(f"/api/reports/{report['id']}/run/").status_code == 401
    assert writer.delete(f"/api/reports/{report['id']}/").status_code == 403
    assert admin.delete(f"/api/reports/{report['id']}/").status_code == 204


def test_a_run_is_the_endpoints_answer_for_the_window_resolved_now(outcome_factory):
    now = datetime.now(UTC)
    outcome_factory(2, currency="EUR", auction_timestamp=now - timedelta(hours=1))
    outcome_factory(3, currency="EUR", auction_timestamp=now - timedelta(hours=30))
    outcome_factory(4, currency="USD", auction_timestamp=now - timedelta(hours=2))
    api = client("read", "write", "export")
    last_day = save(api, window="last_24h").json()
    week = save(api, window="last_7d", name="Week").json()
    answer = api.get(f"/api/reports/{last_day['id']}/run/").json()
    assert answer["total_outcomes"] == 2 and answer["currency"] == "EUR"
    assert api.get(f"/api/reports/{week['id']}/run/").json()["total_outcomes"] == 5
    direct = api.get(
        "/api/outcomes/stats/",
        {
            "currency": "EUR",
            "start": (now - timedelta(days=7)).isoformat(),
            "end": (now + timedelta(minutes=1)).isoformat(),
        },
    ).json()
    assert {k: v for k, v in direct.items()} == api.get(f"/api/reports/{week['id']}/run/").json()

    # The same run as a workbook, and a saved export as CSV and as a workbook.
    workbook = api.get(f"/api/reports/{week['id']}/run/", {"format": "xlsx"})
    assert workbook.status_code == 200 and workbook["Content-Disposition"].startswith('attachment; filename="stats-')
    summary = dict(
        openpyxl.load_workbook(io.BytesIO(workbook.content))["Summary"].iter_rows(min_row=2, values_only=True)
    )
    assert summary["total_outcomes"] == 5
    bad = api.get(f"/api/reports/{week['id']}/run/", {"format": "pdf"})
    assert bad.status_code == 400 and bad.json()["format"][0].startswith("Unknown format 'pdf'")
    # A stats report has no CSV: the endpoint's own answer.
    refused = api.get(f"/api/reports/{week['id']}/run/", {"format": "csv"}).json()["format"][0]
    assert refused.startswith("Unknown format 'csv': use json or ") and refused.endswith(" or xlsx.")


@pytest.mark.django_db(transaction=True)  # an export reads on a connection of its own
def test_a_saved_export_streams_with_the_export_scope(outcome_factory, settings):
    settings.API_READ_ACCESS = "authenticated"
    now = datetime.now(UTC)
    outcome_factory(2, currency="EUR", auction_timestamp=now - timedelta(hours=1))
    outcome_factory(4, currency="USD", auction_timestamp=now - timedelta(hours=2))
    outcome_factory(3, currency="EUR", auction_timestamp=now - timedelta(hours=30))
    export = save(client("write"), report="export", window="last_24h", params={"ordering": "id"}).json()
    assert client("read").get(f"/api/reports/{export['id']}/run/").status_code == 403
    api = client("read", "export")
    streamed = api.get(f"/api/reports/{export['id']}/run/")
    assert streamed.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(streamed.streaming_content).decode())))
    assert len(rows) == 1 + 6 and {row[7] for row in rows[1:]} == {"EUR", "USD"}
    workbook = api.get(f"/api/reports/{export['id']}/run/", {"format": "xlsx"})
    book = openpyxl.load_workbook(io.BytesIO(b"".join(workbook.streaming_content)))
    assert book["Outcomes"].max_row == 7
    assert dict(book["Query"].iter_rows(values_only=True))["filter: ordering"] == "id"
    assert api.get(f"/api/reports/{export['id']}/run/", {"format": "csv", "x": "1"}).status_code == 400


def test_results_and_timeseries_run_on_their_paths(outcome_factory):
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    outcome_factory(
        3, experiment="floor-test", variant="B", win_price=Decimal("0.50"), auction_timestamp=now - timedelta(hours=3)
    )
    outcome_factory(3, experiment="floor-test", variant="control", auction_timestamp=now - timedelta(hours=3))
    api = client("read", "write")
    results = save(api, report="results", params={"experiment": "floor-test", "convert_to": "none"}).json()
    assert results["params"] == {"experiment": "floor-test", "convert_to": "none"}
    answer = api.get(f"/api/reports/{results['id']}/run/").json()
    assert answer["experiment"] == "floor-test" and {v["variant"] for v in answer["variants"]} == {"B", "control"}
    series = save(api, report="timeseries", window="today", timezone="Europe/Berlin", params={"granularity": "hour"})
    answer = api.get(f"/api/reports/{series.json()['id']}/run/").json()
    assert answer["tz"] == "Europe/Berlin" and answer["buckets"][0]["bucket"].endswith(("+01:00", "+02:00"))


def test_the_admin_validates_as_the_api_does(admin_client):
    page = admin_client.post(
        "/admin/outcomes/savedreport/add/",
        {"name": "x", "report": "stats", "params": '{"win_status": "maybe"}', "window": "", "timezone": "UTC"},
    )
    assert page.status_code == 200
    assert "win_status: &#x27;maybe&#x27; is not a boolean; use true or false." in page.content.decode()
    assert not SavedReport.objects.exists()
    done = admin_client.post(
        "/admin/outcomes/savedreport/add/",
        {"name": "x", "report": "stats", "params": '{"currency": "EUR"}', "window": "yesterday", "timezone": "UTC"},
    )
    assert done.status_code == 302
    saved = SavedReport.objects.get()
    assert saved.created_by == User.objects.get().username and saved.window == "yesterday"
