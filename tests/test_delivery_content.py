"""What an e-mail of a scheduled report says at its top, and a report as CSV (pure)."""

from __future__ import annotations

import csv
import io

import pytest

from outcomes import deliveries, report_workbooks

pytestmark = pytest.mark.fast

BREAKDOWN = {
    "by": "site_domain",
    "limit": 2,
    "rows": [
        {"site_domain": "a.example", "outcomes": 5, "wins": 2},
        {"site_domain": "b.example", "outcomes": 3, "wins": 1},
    ],
    "others": {"outcomes": 9, "wins": 4, "values": 7},
    "total": {"outcomes": 17, "wins": 7, "values": 9},
}
SERIES = {
    "granularity": "hour",
    "tz": "UTC",
    "buckets": [{"bucket": "t0", "outcomes": 4, "revenue": 1.25}, {"bucket": "t1", "outcomes": 6, "revenue": 2.5}],
}


def test_a_breakdown_leads_with_its_total_not_the_request_or_the_others():
    sheets, summary = report_workbooks.tables(BREAKDOWN)
    assert deliveries.headline(summary, sheets["rows"]) == [
        ("total.outcomes", 17),
        ("total.wins", 7),
        ("total.values", 9),
    ]


def test_a_series_leads_with_the_totals_of_its_additive_columns():
    sheets, summary = report_workbooks.tables(SERIES)
    assert deliveries.headline(summary, sheets["buckets"]) == [("outcomes (total)", 10), ("revenue (total)", 3.75)]


def test_stats_lead_with_their_own_figures():
    sheets, summary = report_workbooks.tables({"total_outcomes": 10, "win_rate": 40.0, "mixed_currencies": False})
    assert deliveries.headline(summary, []) == [("total_outcomes", 10), ("win_rate", 40.0)]


def test_a_report_as_csv_is_its_table_or_its_figures():
    rows = list(csv.reader(io.StringIO(deliveries.report_csv(BREAKDOWN))))
    assert rows == [["site_domain", "outcomes", "wins"], ["a.example", "5", "2"], ["b.example", "3", "1"]]
    figures = list(csv.reader(io.StringIO(deliveries.report_csv({"total_outcomes": 10, "currency": None}))))
    assert figures == [["name", "value"], ["total_outcomes", "10"], ["currency", ""]]


def test_a_report_of_several_tables_keeps_them_all_in_one_csv():
    results = {
        "key": "floor-test",
        "variants": [{"variant": "control", "outcomes": 10}, {"variant": "B", "outcomes": 12}],
        "comparisons": [{"variant": "B", "metric": "win_rate", "ci_low": -1.5, "ci_high": 4.0}],
        "srm": {"mismatch": False, "p_value": 0.7},
    }
    rows = list(csv.reader(io.StringIO(deliveries.report_csv(results))))
    assert rows == [
        ["table", "variant", "outcomes", "metric", "ci_low", "ci_high"],
        ["variants", "control", "10", "", "", ""],
        ["variants", "B", "12", "", "", ""],
        ["comparisons", "B", "", "win_rate", "-1.5", "4.0"],
    ]


def test_text_a_spreadsheet_would_run_is_quoted_and_numbers_are_not():
    answer = {"rows": [{"site_domain": '=HYPERLINK("http://x")', "lift": "-0.25"}, {"site_domain": "@a", "lift": "+x"}]}
    rows = list(csv.reader(io.StringIO(deliveries.report_csv(answer))))
    assert rows == [["site_domain", "lift"], ['\'=HYPERLINK("http://x")', "-0.25"], ["'@a", "'+x"]]
    figures = list(csv.reader(io.StringIO(deliveries.report_csv({"note": "=1+1", "delta": "-3"}))))
    assert figures == [["name", "value"], ["note", "'=1+1"], ["delta", "-3"]]
