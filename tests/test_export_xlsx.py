"""GET /api/outcomes/export/?format=xlsx: the workbook read back (openpyxl) and opened by a
real spreadsheet program (LibreOffice Calc, headless) equals the CSV export cell by cell."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest
from openpyxl.utils.escape import unescape
from rest_framework.test import APIClient

from outcomes import exports, xlsx

pytestmark = pytest.mark.django_db(transaction=True)  # the export reads on a connection of its own

# Text a spreadsheet or XML could take for something else.
AWKWARD = [
    '=HYPERLINK("http://evil.example","x")',
    "+1-555",
    "@SUM(A1)",
    "-2",
    "\ttabbed",
    "a&b<c>d\"e'f",
    "line\nbreak\r\nwindows",
    "ctl\x01\x08\x0b\x1f-end",
    "_x0041_ is not A",
    "  spaced  ",
    "ünï 日本 🎯",
]


def get(params: dict):
    response = APIClient().get("/api/outcomes/export/", params)
    assert response.status_code == 200, response.content[:300]
    return response, b"".join(response.streaming_content)


def workbook(data: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def csv_records(params: dict) -> list[list[str]]:
    _response, data = get({**params, "format": "csv"})
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert rows[0] == list(exports.COLUMNS)
    return rows[1:]


def expected_cell(name: str, text: str):
    """The CSV cell's text as the workbook types it."""
    if text == "":
        return None  # an empty cell (site_domain of none, a message without auction time…)
    if name == "id":
        return int(text)
    if name in ("win_status", "enriched"):
        return text == "true"
    if name in ("win_price", "bid_price"):
        return Decimal(text)
    if name in ("auction_timestamp", "timestamp"):  # Excel shows milliseconds; openpyxl rounds to them
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
        return moment.replace(microsecond=0) + timedelta(milliseconds=round(moment.microsecond / 1000))
    return text


def workbook_cell(name: str, value):
    if isinstance(value, float) and name in ("win_price", "bid_price"):
        return Decimal(str(value)).quantize(Decimal("0.01"))
    if value == "":
        return None
    if isinstance(value, str):  # SpreadsheetML's _xHHHH_ (Excel and Calc decode it; openpyxl leaves it)
        return unescape(value)
    return value


def seed(outcome_factory):
    moment = datetime(2026, 3, 1, 12, 0, 0, 250_333, tzinfo=UTC)
    for i, text in enumerate(AWKWARD):
        outcome_factory(
            1,
            user_id=text,
            site_domain=text if i % 2 else f"site{i}.example",
            bid_price=Decimal("999.99") if i == 0 else Decimal("1.05"),
            win_price=Decimal("0.10"),
            win_status=i % 3 != 0,
            enriched=i % 2 == 0,
            user_interests=["a", 'b"c', text] if i % 4 == 0 else ["news"],
            auction_timestamp=moment + timedelta(seconds=i, microseconds=999_700 if i == 1 else 0),
        )
    outcome_factory(
        1, site_domain="", user_interests=[], experiment="floor-test", variant="B", auction_timestamp=moment
    )
    outcome_factory(1, site_domain=None, auction_timestamp=None)


@pytest.mark.parametrize("escape", ["true", "false"])
def test_the_workbook_equals_the_csv_export_cell_by_cell(outcome_factory, escape):
    seed(outcome_factory)
    params = {"escape_formulas": escape, "ordering": "id"}
    response, data = get({**params, "format": "xlsx"})
    assert response["Content-Type"] == xlsx.CONTENT_TYPE
    assert response["Content-Disposition"].endswith('.xlsx"')
    book = workbook(data)
    assert book.sheetnames == ["Outcomes", "Query"]
    sheet = book["Outcomes"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == exports.COLUMNS
    expected = csv_records(params)
    assert len(rows) - 1 == len(expected) == len(AWKWARD) + 2
    for got, want in zip(rows[1:], expected, strict=True):
        for name, value, text in zip(exports.COLUMNS, got, want, strict=True):
            typed = expected_cell(name, text)
            if isinstance(typed, datetime):  # openpyxl rounds the serial to the millisecond
                exact = datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
                assert abs(value - exact) <= timedelta(microseconds=500), (name, value, text)
            else:
                assert workbook_cell(name, value) == typed, (name, value, text)
    users = [unescape(row[2]) for row in rows[1 : len(AWKWARD) + 1]]
    if escape == "true":  # the CSV export's rule: a leading =, +, -, @ or tab gets a '
        assert users[:5] == ["'" + text for text in AWKWARD[:5]]
    else:
        assert users == AWKWARD
    assert users[7] == "ctl\x01\x08\x0b\x1f-end" and users[8] == "_x0041_ is not A" and users[9] == "  spaced  "

    # Typed and formatted: numbers, booleans, money with two decimals, date-times; never a formula.
    second = sheet[2]
    assert second[0].data_type == "n" and second[4].data_type == "b" and second[1].data_type == "s"
    assert second[5].number_format == "0.00" and second[6].number_format == "0.00"
    assert second[10].number_format == xlsx.TIME_FORMAT and second[10].is_date
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == f"A1:N{len(rows)}"
    assert sheet.column_dimensions["B"].width == 38

    query = dict(book["Query"].iter_rows(values_only=True))
    assert query["report"] == "outcomes export" and query["time zone"] == "UTC"
    assert query["filter: escape_formulas"] == escape and query["filter: ordering"] == "id"
    assert query["rows"] == len(expected) and query["sheets"] == 1
    generated = datetime.fromisoformat(query["generated at"])
    assert abs(generated - datetime.now(UTC)) < timedelta(minutes=1)


def test_a_filtered_export_and_an_empty_one(outcome_factory):
    outcome_factory(2, currency="EUR")
    outcome_factory(3, currency="USD")
    _response, data = get({"format": "xlsx", "currency": "EUR"})
    rows = list(workbook(data)["Outcomes"].iter_rows(values_only=True))
    assert len(rows) == 3 and {row[7] for row in rows[1:]} == {"EUR"}
    _response, data = get({"format": "xlsx", "currency": "GBP"})
    book = workbook(data)
    assert list(book["Outcomes"].iter_rows(values_only=True)) == [exports.COLUMNS]
    assert dict(book["Query"].iter_rows(values_only=True))["rows"] == 0


def test_rows_beyond_a_sheet_continue_on_the_next(outcome_factory, monkeypatch):
    monkeypatch.setattr(exports, "XLSX_ROWS_PER_SHEET", 4)
    stored = outcome_factory(10)
    _response, data = get({"format": "xlsx", "ordering": "id"})
    book = workbook(data)
    assert book.sheetnames == ["Outcomes", "Outcomes (2)", "Outcomes (3)", "Query"]
    ids = []
    for name in book.sheetnames[:3]:
        rows = list(book[name].iter_rows(values_only=True))
        assert rows[0] == exports.COLUMNS and book[name].freeze_panes == "A2"
        ids += [row[0] for row in rows[1:]]
    assert ids == sorted(o.id for o in stored)
    assert [book[name].max_row for name in book.sheetnames[:3]] == [5, 5, 3]
    query = dict(book["Query"].iter_rows(values_only=True))
    assert query["rows"] == 10 and query["sheets"] == 3


def test_a_bad_format_names_the_formats():
    response = APIClient().get("/api/outcomes/export/", {"format": "xls"})
    assert response.status_code == 400
    assert response.json()["format"] == ["Unknown export format 'xls': use csv, ndjson, xlsx."]


def test_libreoffice_opens_the_workbook_and_reads_the_same_values(outcome_factory, tmp_path):
    assert shutil.which("soffice"), "LibreOffice Calc is missing: scripts/services.sh up installs it"
    seed(outcome_factory)
    params = {"ordering": "id"}
    _response, data = get({**params, "format": "xlsx"})
    (tmp_path / "export.xlsx").write_bytes(data)
    subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation=file://{tmp_path}/profile",
            "--headless",
            "--convert-to",
            "csv:Text - txt - csv (StarCalc):44,34,76,1",
            "--outdir",
            str(tmp_path),
            str(tmp_path / "export.xlsx"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    converted = list(csv.reader(io.StringIO((tmp_path / "export.csv").read_text(encoding="utf-8"), newline="")))
    assert converted[0] == list(exports.COLUMNS)
    expected = csv_records(params)
    assert len(converted) - 1 == len(expected)
    for got, want in zip(converted[1:], expected, strict=True):
        for name, shown, text in zip(exports.COLUMNS, got, want, strict=True):
            value = expected_cell(name, text)
            if value is None:
                assert shown == "", name
            elif isinstance(value, bool):
                assert shown == ("TRUE" if value else "FALSE"), name
            elif isinstance(value, datetime):  # the cell's format, to the millisecond (Calc may cut, not round)
                exact = datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
                assert abs(datetime.strptime(shown, "%Y-%m-%d %H:%M:%S.%f") - exact) < timedelta(milliseconds=1), name
            elif isinstance(value, Decimal):
                assert Decimal(shown) == value, name
            elif name == "user_id" and "\n" in value:
                assert shown == value.replace("\r\n", "\n"), name  # Calc keeps a line break, as one
            else:
                assert shown == str(value), name
