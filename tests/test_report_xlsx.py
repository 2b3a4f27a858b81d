"""?format=xlsx on the reports: each workbook read back (openpyxl) equals the JSON answer for
the same parameters, cell by cell, with typed cells, the currency in the money headers, times
in the report's time zone, a native chart where the report has a series, and a Query sheet."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest
from rest_framework.test import APIClient

from outcomes import xlsx

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 10, 24, 9, 30, tzinfo=UTC)


@pytest.fixture
def seeded(outcome_factory):
    for i in range(30):
        outcome_factory(
            1 + i % 3,
            site_domain=f"site{i % 4}.example",
            win_status=i % 3 != 0,
            win_price=Decimal("0.40") + Decimal(i) / 100,
            bid_price=Decimal("0.90") + Decimal(i) / 50,
            currency="EUR",
            user_id=f"user-{i % 7}",
            experiment="floor-test",
            variant="B" if i % 2 else "control",
            auction_timestamp=T0 + timedelta(hours=5 * i, minutes=i),
        )


def answers(path: str, params: dict):
    api = APIClient()
    json_response = api.get(path, params)
    assert json_response.status_code == 200, json_response.content[:300]
    book_response = api.get(path, {**params, "format": "xlsx"})
    assert book_response.status_code == 200, book_response.content[:300]
    assert book_response["Content-Type"] == xlsx.CONTENT_TYPE
    name = path.rstrip("/").rsplit("/", 1)[-1]
    assert book_response["Content-Disposition"].startswith(f'attachment; filename="{name}-')
    data = book_response.content
    return json_response.json(), openpyxl.load_workbook(io.BytesIO(data)), zipfile.ZipFile(io.BytesIO(data))


def cell(value, json_value, field: str):
    """The JSON value as the workbook types it."""
    if json_value is None:
        return value is None
    if isinstance(json_value, bool):
        return value is json_value
    if isinstance(json_value, int | float):
        return value == pytest.approx(json_value, rel=1e-12, abs=1e-12)
    if field in ("bucket", "bucket_end", "start", "end", "window_start", "window_end", "fitted_at"):
        return value == datetime.fromisoformat(json_value.replace("Z", "+00:00")).replace(tzinfo=None)
    if field == "date":
        return value == datetime.combine(date.fromisoformat(json_value), datetime.min.time())
    return value == json_value


def same_table(sheet, rows: list[dict], currency: str | None = None, *, money: tuple[str, ...] = ()):
    header = [c.value for c in sheet[1]]
    fields = list(rows[0])
    assert header == [f"{f} ({currency})" if f in money else f for f in fields]
    assert sheet.max_row == len(rows) + 1
    for r, row in enumerate(rows, start=2):
        for c, field in enumerate(fields, start=1):
            value = sheet.cell(row=r, column=c).value
            assert cell(value, row[field], field), (sheet.title, r, field, value, row[field])
    assert sheet.freeze_panes == "A2"


def summary(book) -> dict:
    return {row[0]: row[1] for row in book["Summary"].iter_rows(min_row=2, values_only=True)}


def has_chart(archive: zipfile.ZipFile) -> bool:
    return any(name.startswith("xl/charts/chart") for name in archive.namelist())


def test_timeseries_in_a_time_zone_with_its_chart(seeded):
    params = {
        "granularity": "hour",
        "tz": "Europe/Berlin",
        "start": "2025-10-24T10:00:00Z",
        "end": "2025-10-25T02:00:00Z",
        "currency": "EUR",
    }
    answer, book, archive = answers("/api/outcomes/timeseries/", params)
    assert book.sheetnames == ["buckets", "Summary", "Query"]
    money = ("revenue", "average_win_price", "average_bid_price")
    same_table(book["buckets"], answer["buckets"], "EUR", money=money)
    first = book["buckets"]["A2"]
    assert first.is_date and first.value == datetime(2025, 10, 24, 12, 0)  # Berlin's wall clock (UTC+2)
    header = [c.value for c in book["buckets"][1]]
    revenue = book["buckets"].cell(row=2, column=header.index("revenue (EUR)") + 1)
    assert (
        revenue.number_format == "0.00"
        and book["buckets"].cell(row=2, column=header.index("wins") + 1).number_format == "General"
    )
    assert summary(book)["granularity"] == "hour" and summary(book)["currency"] == "EUR"
    assert has_chart(archive)
    query = dict(book["Query"].iter_rows(values_only=True))
    assert query["report"] == "/api/outcomes/timeseries/" and query["time zone"] == "Europe/Berlin"
    assert query["parameter: granularity"] == "hour" and query["rows: buckets"] == len(answer["buckets"])
    assert "parameter: format" not in query


def test_stats_and_daily_stats(seeded):
    answer, book, archive = answers("/api/outcomes/stats/", {"currency": "EUR"})
    values = summary(book)
    assert values["total_outcomes"] == answer["total_outcomes"] == 60
    assert values["total_revenue (EUR)"] == pytest.approx(answer["total_revenue"])
    assert values["win_price_percentiles.p50 (EUR)"] == pytest.approx(answer["win_price_percentiles"]["p50"])
    assert values["mixed_currencies"] is False and values["percentiles_sample"] is None
    assert not has_chart(archive)  # no series

    days, book, archive = answers("/api/outcomes/daily_stats/", {"currency": "EUR"})
    same_table(book["rows"], days, "EUR", money=("total_revenue", "average_win_price", "average_bid_price", "ecpm"))
    header = [c.value for c in book["rows"][1]]
    assert book["rows"].cell(row=2, column=header.index("date") + 1).is_date and has_chart(archive)


def test_breakdown_with_others_and_total(seeded):
    answer, book, archive = answers("/api/outcomes/breakdown/", {"by": "site_domain", "limit": 2, "currency": "EUR"})
    same_table(book["rows"], answer["rows"], "EUR", money=("revenue", "average_win_price", "ecpm"))
    values = summary(book)
    assert values["others.outcomes"] == answer["others"]["outcomes"]
    assert values["total.values"] == answer["total"]["values"] == 4
    assert has_chart(archive)


def test_experiment_results_and_the_landscape(seeded):
    answer, book, _archive = answers("/api/experiments/floor-test/results/", {"convert_to": "none"})
    assert book.sheetnames[:2] == ["variants", "comparisons"]
    same_table(
        book["variants"], answer["variants"], "EUR", money=("revenue", "ecpm", "avg_win_price", "revenue_per_outcome")
    )
    same_table(book["comparisons"], answer["comparisons"])  # a comparison's value is not always money
    assert summary(book)["registered"] is False and summary(book)["srm"] is None is answer["srm"]

    answer, book, archive = answers("/api/insights/bid_landscape/", {"currency": "EUR"})
    same_table(book["points"], answer["points"], "EUR", money=("bid_price", "bid_price_high"))
    assert has_chart(archive)


def test_histogram_and_reach(seeded):
    answer, book, _archive = answers("/api/outcomes/histogram/", {"price": "bid_price"})
    same_table(book["bins"], answer["bins"], money=())
    answer, book, _archive = answers("/api/outcomes/reach/", {})
    assert summary(book)["reach"] == answer["reach"] == 7


def test_an_error_stays_json():
    response = APIClient().get("/api/outcomes/stats/", {"format": "xlsx", "win_status": "maybe"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"win_status": ["'maybe' is not a boolean; use true or false."]}
