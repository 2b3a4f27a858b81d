"""The streamed workbook writer on its own (no database): a valid package, typed cells, sheets
continued at the row limit, the Query sheet escaped."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime

import openpyxl
import pytest

from outcomes import xlsx

pytestmark = pytest.mark.fast

COLUMNS = [xlsx.Column("n", 8), xlsx.Column("name <&>", 20), xlsx.Column("ok", 6)]


def write(rows: list[bytes], *, per_sheet: int = xlsx.MAX_ROWS - 1, query=()) -> tuple[bytes, int]:
    out = io.BytesIO()
    writes = []

    def sink(data: bytes) -> None:
        writes.append(len(data))
        out.write(data)

    book = xlsx.StreamedWorkbook(sink, sheet="Data", columns=COLUMNS, rows_per_sheet=per_sheet)
    for row in rows:
        book.write_row(row)
    book.close(list(query))
    return out.getvalue(), len(writes)


def row(n: int) -> bytes:
    return f'<c><v>{n}</v></c><c t="inlineStr"><is><t>r{n}</t></is></c><c t="b"><v>{n % 2}</v></c></row>'.encode()


def test_column_letters():
    assert [xlsx.column_letter(i) for i in (0, 13, 25, 26, 51, 701, 702)] == ["A", "N", "Z", "AA", "AZ", "ZZ", "AAA"]


def test_a_package_with_typed_rows_a_frozen_header_and_the_query():
    data, _writes = write(
        [row(n) for n in range(5)],
        query=xlsx.query_sheet(
            what="test",
            filters=[("site_domain", "a<b>&c")],
            time_zone="UTC",
            generated=datetime(2026, 1, 2, tzinfo=UTC),
        ),
    )
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["Data", "Query"]
    rows = list(book["Data"].iter_rows(values_only=True))
    assert rows == [("n", "name <&>", "ok"), *((n, f"r{n}", bool(n % 2)) for n in range(5))]
    assert book["Data"].freeze_panes == "A2" and book["Data"].auto_filter.ref == "A1:C6"
    assert book["Data"].column_dimensions["B"].width == 20
    assert list(book["Query"].iter_rows(values_only=True)) == [
        ("report", "test"),
        ("filter: site_domain", "a<b>&c"),
        ("time zone", "UTC"),
        ("generated at", "2026-01-02T00:00:00+00:00"),
        ("rows", 5),
        ("sheets", 1),
    ]


def test_rows_continue_on_numbered_sheets_and_bytes_leave_as_they_are_compressed():
    data, writes = write([row(n) for n in range(20_000)], per_sheet=7_000)
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    assert book.sheetnames == ["Data", "Data (2)", "Data (3)", "Query"]
    seen = []
    for name in book.sheetnames[:3]:
        rows = list(book[name].iter_rows(values_only=True))
        assert rows[0] == ("n", "name <&>", "ok")
        seen += [r[0] for r in rows[1:]]
    assert seen == list(range(20_000))
    assert writes > 3  # streamed: not one write of the whole package at the end


def test_an_empty_workbook_has_its_header_and_no_filters():
    data, _writes = write(
        [], query=xlsx.query_sheet(what="t", filters=[], time_zone="UTC", generated=datetime(2026, 1, 2, tzinfo=UTC))
    )
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert list(book["Data"].iter_rows(values_only=True)) == [("n", "name <&>", "ok")]
    assert dict(book["Query"].iter_rows(values_only=True))["filters"] == "none"
