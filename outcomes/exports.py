"""Bulk exports: the filtered outcomes streamed as CSV or NDJSON, in constant memory.

PostgreSQL renders every value as text (decimals exactly as stored, timestamps as ISO 8601
UTC, NDJSON lines with ``json_build_object``), a server-side cursor hands them over a chunk
at a time, and Python only joins them into the response. Nothing is held beyond one chunk,
and the first bytes leave as soon as the first chunk is read: the default order
(``event_time``, ``id``) is an index's, so no sort has to finish first.

A client that disconnects ends the response: the WSGI server closes the generator, which
closes the cursor and ends its transaction at once.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connections, transaction
from django.db.models import Func, TextField, Value
from django.db.models.functions import Cast, Coalesce
from django.db.models.query import QuerySet

# The exported fields, in order. Same names and meanings as the list API's.
COLUMNS: tuple[str, ...] = (
    "id",
    "bid_id",
    "user_id",
    "site_domain",
    "win_status",
    "win_price",
    "bid_price",
    "currency",
    "enriched",
    "user_interests",
    "auction_timestamp",
    "timestamp",
)
DEFAULT_ORDERING = ("event_time", "id")
CHUNK_ROWS = 5_000
_cursor_numbers = itertools.count(1)


@dataclass(frozen=True)
class ExportFormat:
    name: str
    content_type: str
    extension: str


FORMATS = {
    "csv": ExportFormat("csv", "text/csv; charset=utf-8", "csv"),
    "ndjson": ExportFormat("ndjson", "application/x-ndjson", "ndjson"),
}


class _UtcIso(Func):
    """A timestamp as ISO 8601 UTC text with microseconds, e.g. 2026-11-29T14:03:07.120000Z."""

    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    output_field = TextField()


def _as_text(name: str):
    """A column rendered as its export text (CSV cell, or JSON value inside NDJSON)."""
    if name in ("auction_timestamp", "timestamp"):
        return _UtcIso(name)
    if name == "site_domain":
        return Coalesce(name, Value(""), output_field=TextField())  # "" when the message had none, as in the API
    return Cast(name, TextField())


def _csv_values(queryset: QuerySet) -> QuerySet:
    return queryset.values_list(*(_as_text(name) for name in COLUMNS))


def _ndjson_values(queryset: QuerySet) -> QuerySet:
    pairs = []
    for name in COLUMNS:
        if name in ("id", "win_status", "enriched", "user_interests", "bid_id", "user_id", "currency"):
            value = name  # JSON numbers, booleans, the interests array, strings: as they are
        else:
            value = _as_text(name)  # prices as exact decimal strings, timestamps ISO 8601 UTC
        pairs.extend([Value(name), value])
    line = Cast(Func(*pairs, function="json_build_object"), TextField())
    return queryset.values_list(line)


def stream(queryset: QuerySet, export_format: ExportFormat, *, using: str) -> Iterator[str]:
    """The export's text, chunk by chunk. Run the first ``next()`` in the view: it opens the
    cursor, so a database failure is an ordinary error response rather than a cut stream."""
    values = _csv_values(queryset) if export_format.name == "csv" else _ndjson_values(queryset)
    sql, params = values.query.get_compiler(using=using).as_sql()
    connection = connections[using]
    connection.ensure_connection()
    # A named (server-side) cursor, inside a transaction: PostgreSQL keeps the result and we
    # fetch CHUNK_ROWS at a time.
    with (
        transaction.atomic(using=using),
        connection.connection.cursor(name=f"export_{next(_cursor_numbers)}") as cursor,
    ):
        cursor.itersize = CHUNK_ROWS
        cursor.execute(sql, params)
        if export_format.name == "csv":
            yield from _csv_chunks(cursor)
        else:
            yield from _ndjson_chunks(cursor)


def _csv_chunks(cursor) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180
    writer.writerow(COLUMNS)
    rows = cursor.fetchmany(CHUNK_ROWS)
    while True:
        writer.writerows(rows)
        yield buffer.getvalue()
        if len(rows) < CHUNK_ROWS:
            return
        buffer.seek(0)
        buffer.truncate()
        rows = cursor.fetchmany(CHUNK_ROWS)


def _ndjson_chunks(cursor) -> Iterator[str]:
    rows = cursor.fetchmany(CHUNK_ROWS)
    if not rows:
        yield ""  # the first chunk primes the cursor (see stream)
        return
    while rows:
        yield "\n".join(row[0] for row in rows) + "\n"
        if len(rows) < CHUNK_ROWS:
            return
        rows = cursor.fetchmany(CHUNK_ROWS)
