"""GET /api/outcomes/export/: CSV and NDJSON streamed from a server-side cursor."""

from __future__ import annotations

import csv
import io
import json
import socket
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from outcomes import exports
from tests.factories import raw_outcomes, wait_until
from tests.servers import exports_in_progress, free_port, start_api, stop

# The export reads on a connection of its own: the rows must be committed (transactional tests).
pytestmark = pytest.mark.django_db(transaction=True)


def body(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def test_csv_has_a_header_exact_decimals_and_utc_times(outcome_factory):
    late, early = outcome_factory(
        2, auction_timestamp=datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC), win_price=Decimal("0.10")
    )
    outcome_factory(1, auction_timestamp=datetime(2026, 2, 1, tzinfo=UTC), site_domain="", user_interests=["a", 'b"c'])
    response = APIClient().get("/api/outcomes/export/", {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="outcomes-')
    assert response["Content-Disposition"].endswith('.csv"')
    rows = list(csv.reader(io.StringIO(body(response))))
    assert rows[0] == list(exports.COLUMNS)
    records = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    # Ordered by event time, then id: the February outcome first.
    assert [r["auction_timestamp"] for r in records] == [
        "2026-02-01T00:00:00.000000Z",
        "2026-03-01T12:00:00.250000Z",
        "2026-03-01T12:00:00.250000Z",
    ]
    first = records[0]
    assert first["site_domain"] == "" and json.loads(first["user_interests"]) == ["a", 'b"c']
    assert records[1]["id"] == str(min(late.id, early.id))
    assert records[1]["win_price"] == "0.10" and records[1]["bid_price"] == "1.00"
    assert records[1]["win_status"] == "true" and records[1]["enriched"] == "true"
    assert records[1]["timestamp"].endswith("Z") and "T" in records[1]["timestamp"]


def test_ndjson_lines_are_objects_with_string_decimals(outcome_factory):
    outcome_factory(2, currency="EUR", win_price=Decimal("0.05"))
    outcome_factory(3, currency="USD")
    response = APIClient().get("/api/outcomes/export/", {"format": "ndjson", "currency": "EUR"})
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].endswith('.ndjson"')
    text = body(response)
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 2
    assert all(list(line) == list(exports.COLUMNS) for line in lines)
    assert {line["currency"] for line in lines} == {"EUR"}
    assert lines[0]["win_price"] == "0.05" and isinstance(lines[0]["id"], int)
    assert lines[0]["win_status"] is True and lines[0]["user_interests"] == ["sports"]
    assert lines[0]["auction_timestamp"] == "2025-10-25T12:00:00.000000Z"


def test_every_list_filter_and_the_window_apply(outcome_factory):
    outcome_factory(2, user_id="alice", auction_timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    outcome_factory(1, user_id="alice", auction_timestamp=datetime(2026, 1, 3, tzinfo=UTC))
    outcome_factory(1, user_id="bob", auction_timestamp=datetime(2026, 1, 1, tzinfo=UTC), win_status=False)
    client = APIClient()
    params = {"user_id": "alice", "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "format": "ndjson"}
    assert len(body(client.get("/api/outcomes/export/", params)).splitlines()) == 2
    lost = body(client.get("/api/outcomes/export/", {"win_status": "false", "format": "ndjson"}))
    assert [json.loads(line)["user_id"] for line in lost.splitlines()] == ["bob"]
    descending = body(client.get("/api/outcomes/export/", {"ordering": "-id", "format": "ndjson"}))
    ids = [json.loads(line)["id"] for line in descending.splitlines()]
    assert ids == sorted(ids, reverse=True) and len(ids) == 4


def test_an_empty_export_is_only_the_header():
    assert body(APIClient().get("/api/outcomes/export/")).splitlines() == [",".join(exports.COLUMNS)]
    assert body(APIClient().get("/api/outcomes/export/", {"format": "ndjson"})) == ""


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"format": "xml"}, "format"),
        ({"currency": "US"}, "currency"),
        ({"start": "yesterday"}, "start"),
        ({"page": "2"}, "page"),
        ({"min_price": "5", "max_price": "1"}, "min_price"),
    ],
)
def test_a_bad_parameter_is_a_400_before_any_row(params, named):
    response = APIClient().get("/api/outcomes/export/", params)
    assert response.status_code == 400 and not response.streaming
    assert response["Content-Type"] == "application/json"
    assert named in response.json()


@pytest.mark.slow
def test_a_client_that_leaves_frees_the_cursor_at_once():
    raw_outcomes(150_000)  # ~25 MB of CSV: far more than the socket buffers hold
    port = free_port()
    server = start_api(port)
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /api/outcomes/export/?format=csv HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200") and b"text/csv" in head
        # The server's COPY runs, or waits on the full socket.
        assert wait_until(lambda: exports_in_progress() == 1, timeout=10)
        sock.close()
        assert wait_until(lambda: exports_in_progress() == 0, timeout=5), "the export outlived its client"
        # The server is still fine afterwards.
        check = socket.create_connection(("127.0.0.1", port), timeout=10)
        check.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert check.recv(1024).startswith(b"HTTP/1.1 200")
        check.close()
    finally:
        stop(server)


def test_an_exported_line_is_the_list_apis_outcome_less_its_computed_and_bookkeeping_fields(outcome_factory):
    """The export's columns and the API's fields cannot drift apart: same names, same values
    (times compared as instants: the export always writes microseconds)."""
    outcome_factory(2, site_domain="", user_interests=["a", 'b"c'], auction_timestamp=datetime(2026, 2, 1, tzinfo=UTC))
    outcome_factory(2, win_status=False, win_price=Decimal("0"), currency="EUR", enriched=False)
    # Strings JSON must escape: quotes, backslashes, control characters (0x1e is the export's
    # own COPY quote byte), tabs, and characters beyond ASCII.
    outcome_factory(
        1,
        bid_id='q"\\x\u00e9\U0001f600',
        user_id="tab\there\x1erecord\x1funit",
        site_domain="\u00fcber.example",
        user_interests=["new\nline", "\\", ""],
    )
    listed = APIClient().get("/api/outcomes/", {"ordering": "id"}).json()["results"]
    exported = [
        json.loads(line)
        for line in body(APIClient().get("/api/outcomes/export/", {"format": "ndjson", "ordering": "id"})).splitlines()
    ]
    left_out = {"is_winner", "profit_margin", "created_at", "updated_at"}
    assert {name for name in listed[0] if name not in left_out} == set(exports.COLUMNS)

    def instants(outcome: dict) -> dict:
        return {
            name: datetime.fromisoformat(value) if name in ("timestamp", "auction_timestamp") and value else value
            for name, value in outcome.items()
            if name not in left_out
        }

    assert [instants(line) for line in exported] == [instants(outcome) for outcome in listed]


def test_cells_that_would_run_as_spreadsheet_formulas_are_escaped_by_default(outcome_factory):
    outcome_factory(1, user_id='=HYPERLINK("http://x.invalid","y")', site_domain="@sum.example", bid_id="+1-bid")
    outcome_factory(1, user_id="-neg", site_domain="plain.example", bid_id="\tbid")
    rows = list(csv.DictReader(io.StringIO(body(APIClient().get("/api/outcomes/export/", {"format": "csv"})))))
    by_domain = {row["site_domain"]: row for row in rows}
    risky = by_domain["'@sum.example"]
    assert risky["user_id"] == '\'=HYPERLINK("http://x.invalid","y")' and risky["bid_id"] == "'+1-bid"
    assert by_domain["plain.example"]["user_id"] == "'-neg" and by_domain["plain.example"]["bid_id"] == "'\tbid"
    # Programs ask for the values as stored; NDJSON is never escaped.
    raw = body(APIClient().get("/api/outcomes/export/", {"format": "csv", "escape_formulas": "false"}))
    assert {row["site_domain"] for row in csv.DictReader(io.StringIO(raw))} == {"@sum.example", "plain.example"}
    lines = body(APIClient().get("/api/outcomes/export/", {"format": "ndjson"})).splitlines()
    assert {json.loads(line)["user_id"] for line in lines} == {'=HYPERLINK("http://x.invalid","y")', "-neg"}
    refused = APIClient().get("/api/outcomes/export/", {"escape_formulas": "maybe"})
    assert refused.status_code == 400 and "escape_formulas" in refused.json()


def test_only_orderings_an_index_serves_are_taken(outcome_factory):
    outcome_factory(2)
    refused = APIClient().get("/api/outcomes/export/", {"ordering": "site_domain,-bid_price,user_id"})
    assert refused.status_code == 400
    message = refused.json()["ordering"][0]
    assert "event_time, -event_time, timestamp" in message and "-bid_price" in message
    for ordering in exports.ORDERINGS:
        response = APIClient().get("/api/outcomes/export/", {"ordering": ordering})
        assert response.status_code == 200 and len(body(response).splitlines()) == 3


def test_the_export_needs_its_own_scope_or_permission(settings, outcome_factory, person):
    from outcomes.models import APIKey

    settings.API_READ_ACCESS = "authenticated"
    outcome_factory(1)

    def key(*scopes: str) -> dict:
        return {"HTTP_AUTHORIZATION": "Api-Key " + APIKey.objects.create_key(name="t", scopes=list(scopes))[1]}

    reader = APIClient().get("/api/outcomes/export/", **key("read"))
    assert reader.status_code == 403 and reader.json() == {"detail": "This API key lacks the 'export' scope."}
    assert APIClient().get("/api/outcomes/", **key("read")).status_code == 200
    for scopes in (("export",), ("admin",)):
        response = APIClient().get("/api/outcomes/export/", **key(*scopes))
        assert response.status_code == 200
        body(response)
    viewer = person.client(person("view_auctionoutcome", staff=True))
    refused = viewer.get("/api/outcomes/export/")
    assert refused.status_code == 403 and "export auction outcomes" in refused.json()["detail"]
    exporter = person.client(person("export_auctionoutcome"))
    assert body(exporter.get("/api/outcomes/export/")).startswith("id,bid_id")
