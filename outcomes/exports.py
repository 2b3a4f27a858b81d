"""Bulk exports: the filtered outcomes streamed as CSV, NDJSON or an Excel workbook, in
constant memory.

PostgreSQL renders every value as text (decimals exactly as stored, timestamps as ISO 8601
UTC, NDJSON lines by concatenation with ``to_json`` for strings) and streams them with ``COPY … TO STDOUT``;
Python only passes the bytes on, a few chunks at a time (``_CopyStream``). The first bytes
leave at once: the default order (``event_time``, ``id``) is an index's, so no sort has to
finish first.

How an export is bounded, watched and audited as an HTTP response is ``export_session``'s.

Spreadsheets run a CSV cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return as a formula (``=HYPERLINK(…)`` in a user id would be a live link). By default the
text columns a message sets (bid id, user id, site domain, currency) are written with a
leading ``'`` in front of such a character (OWASP's guidance on CSV injection); programs
that want the values as stored ask for ``escape_formulas=false``. NDJSON is JSON: never
escaped. The workbook (``xlsx``) types its cells (no text there is ever a formula) and
applies the same rule, so a value reads the same in both files.

The workbook's rows are SpreadsheetML rendered by PostgreSQL like NDJSON lines; ``xlsx``
numbers them, deflates them into the package and adds its other parts.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import dataclass

from django.db import connections
from django.db.models import Func, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast, Coalesce
from django.db.models.query import QuerySet

from outcomes import xlsx
from outcomes.validation import MESSAGE_FIELDS

# The exported fields, in order. Same names and meanings as the list API's.
COLUMNS: tuple[str, ...] = ("id", *MESSAGE_FIELDS, "timestamp")
DEFAULT_ORDERING = ("event_time", "id")
# Orderings an index serves in full (``outcomes.models``): an export streams in index order
# from its first row; any other order would make PostgreSQL sort every matching row first.
ORDERINGS = tuple(
    f"{sign}{name}" for name in ("event_time", "timestamp", "win_price", "bid_price", "id") for sign in ("", "-")
)
# Text columns a message sets: a leading formula character is escaped in CSV by default.
FORMULA_COLUMNS = ("bid_id", "user_id", "site_domain", "currency")


@dataclass(frozen=True)
class ExportFormat:
    name: str
    content_type: str
    extension: str


FORMATS = {
    "csv": ExportFormat("csv", "text/csv; charset=utf-8", "csv"),
    "ndjson": ExportFormat("ndjson", "application/x-ndjson", "ndjson"),
    "xlsx": ExportFormat("xlsx", xlsx.CONTENT_TYPE, "xlsx"),
}
XLSX_ROWS_PER_SHEET = xlsx.MAX_ROWS - 1  # then the rows continue on a next sheet
# The workbook's columns and their widths (characters).
XLSX_COLUMNS = tuple(
    xlsx.Column(name, width)
    for name, width in zip(COLUMNS, (12, 38, 26, 28, 10, 12, 12, 9, 9, 40, 23, 18, 14, 23), strict=True)
)


# A timestamp as ISO 8601 UTC text with microseconds, e.g. 2026-11-29T14:03:07.120000Z.
_ISO_UTC = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


class _UtcIso(Func):
    template = _ISO_UTC.format("%(expressions)s")
    output_field = TextField()


def _as_text(name: str):
    """A column rendered as its export text (CSV cell, or JSON value inside NDJSON)."""
    if name in ("auction_timestamp", "timestamp"):
        return _UtcIso(name)
    if name == "site_domain":
        return Coalesce(name, Value(""), output_field=TextField())  # "" when the message had none, as in the API
    return Cast(name, TextField())


# SQL: a ' before a leading =, +, -, @, tab or carriage return of text ``{}``.
_FORMULA_SAFE = r"regexp_replace({}, '^([-=+@\t\r])', '''\1')"


class _FormulaSafe(Func):
    """The text with a ``'`` in front when it starts like a spreadsheet formula."""

    template = _FORMULA_SAFE.format("%(expressions)s")  # the expression once: its parameters are bound once
    output_field = TextField()


def _csv_values(queryset: QuerySet, *, escape_formulas: bool) -> QuerySet:
    def cell(name: str):
        text = _as_text(name)
        return _FormulaSafe(text) if escape_formulas and name in FORMULA_COLUMNS else text

    return queryset.values_list(*(cell(name) for name in COLUMNS))


def _ndjson_line_sql(table: str) -> str:
    """One compact JSON object per row, written by concatenation: strings through
    ``to_json`` (JSON's escaping), prices as exact decimal strings, times ISO 8601 UTC.
    ``json_build_object`` gave the same values ~30% slower, with a space around every colon
    (10% more bytes)."""

    def column(name: str) -> str:
        return f'"{table}"."{name}"'

    def quoted(sql: str) -> str:
        return f"'\"' || {sql} || '\"'"

    values = {
        "id": f"{column('id')}::text",
        "bid_id": f"to_json({column('bid_id')})::text",
        "user_id": f"to_json({column('user_id')})::text",
        "site_domain": f"to_json(coalesce({column('site_domain')}, ''))::text",  # "" as in the API
        "win_status": f"{column('win_status')}::text",
        "win_price": quoted(f"{column('win_price')}::text"),
        "bid_price": quoted(f"{column('bid_price')}::text"),
        "currency": f"to_json({column('currency')})::text",
        "enriched": f"{column('enriched')}::text",
        "user_interests": f"coalesce({column('user_interests')}::text, '[]')",
        "auction_timestamp": f"coalesce({quoted(_ISO_UTC.format(column('auction_timestamp')))}, 'null')",
        "experiment": f"coalesce(to_json({column('experiment')})::text, 'null')",
        "variant": f"coalesce(to_json({column('variant')})::text, 'null')",
        "timestamp": quoted(_ISO_UTC.format(column("timestamp"))),
    }
    assert tuple(values) == COLUMNS
    members = [f"'{'{' if i == 0 else ','}\"{name}\":' || {sql}" for i, (name, sql) in enumerate(values.items())]
    return " || ".join(members) + " || '}'"


def _xlsx_row_sql(table: str, *, escape_formulas: bool) -> str:
    """One SpreadsheetML row of typed cells (``xlsx``): numbers, booleans, money, UTC
    date-times, inline strings; an empty cell for NULL (site_domain: as in the CSV)."""

    def column(name: str) -> str:
        return f'"{table}"."{name}"'

    def text(name: str) -> str:
        value = column(name)
        if escape_formulas and name in FORMULA_COLUMNS:
            value = _FORMULA_SAFE.format(value)
        return xlsx.text_sql(value)

    cells = {
        "id": xlsx.number_sql(column("id")),
        "bid_id": text("bid_id"),
        "user_id": text("user_id"),
        "site_domain": xlsx.nullable(text("site_domain")),
        "win_status": xlsx.boolean_sql(column("win_status")),
        "win_price": xlsx.number_sql(column("win_price"), xlsx.MONEY_STYLE),
        "bid_price": xlsx.number_sql(column("bid_price"), xlsx.MONEY_STYLE),
        "currency": text("currency"),
        "enriched": xlsx.boolean_sql(column("enriched")),
        "user_interests": xlsx.nullable(xlsx.text_sql(f"{column('user_interests')}::text")),
        "auction_timestamp": xlsx.nullable(xlsx.time_sql(column("auction_timestamp"))),
        "experiment": xlsx.nullable(text("experiment")),
        "variant": xlsx.nullable(text("variant")),
        "timestamp": xlsx.time_sql(column("timestamp")),
    }
    assert tuple(cells) == COLUMNS
    return xlsx.row_sql(list(cells.values()))


def _xlsx_values(queryset: QuerySet, *, escape_formulas: bool) -> QuerySet:
    row = _xlsx_row_sql(queryset.model._meta.db_table, escape_formulas=escape_formulas)
    return queryset.values_list(RawSQL(row, (), output_field=TextField()))  # noqa: S611 - constant SQL


def _ndjson_values(queryset: QuerySet) -> QuerySet:
    # Built from the constant column names and the model's table: nothing from the request.
    line = RawSQL(_ndjson_line_sql(queryset.model._meta.db_table), (), output_field=TextField())  # noqa: S611
    return queryset.values_list(line)


def stream(
    queryset: QuerySet,
    export_format: ExportFormat,
    *,
    using: str,
    statement_timeout_ms: int,
    escape_formulas: bool = True,
    query: list | None = None,
) -> _CopyStream:
    """The export's bytes, chunk by chunk, from PostgreSQL's ``COPY … TO STDOUT``, under its
    own ``statement_timeout`` (0: none). ``close()`` cancels the query at once. ``query``:
    the label–value pairs of a workbook's "Query" sheet (``xlsx.query_sheet``)."""
    if export_format.name == "csv":
        values = _csv_values(queryset, escape_formulas=escape_formulas)
    elif export_format.name == "xlsx":
        values = _xlsx_values(queryset, escape_formulas=escape_formulas)
    else:
        values = _ndjson_values(queryset)
    sql, params = values.query.get_compiler(using=using).as_sql()
    return _CopyStream(
        connections[using],
        sql,
        params,
        header=export_format.name == "csv",
        statement_timeout_ms=statement_timeout_ms,
        workbook=query if export_format.name == "xlsx" else None,
    )


_END = object()


class _Closed(Exception):
    """The response was closed: stop copying."""


class _CopyStream:
    """``COPY (the export's query) TO STDOUT`` on a connection of its own, in a thread that
    hands ``CHUNK_BYTES`` chunks through a bounded queue: PostgreSQL renders every byte, Python
    only passes them on, and memory stays at a few chunks whatever the size.

    The session streams in index order (``enable_sort`` off: the first bytes never wait for a
    sort of every matching row) under the export's own ``statement_timeout`` (an export is one
    statement as long as the data: ``API_EXPORT_STATEMENT_TIMEOUT_MS``, not the requests');
    it ends when the copy does, when the client leaves, or after ``STALL_S`` without a reader.
    NDJSON lines come out as CSV of one column with separators JSON text never holds raw
    (PostgreSQL escapes control characters in JSON), so nothing is ever quoted."""

    CHUNK_BYTES = 256 * 1024
    FIRST_CHUNK_BYTES = 8 * 1024  # the first bytes leave early, even when few rows match
    QUEUE_CHUNKS = 8
    STALL_S = 300

    def __init__(
        self, wrapper, sql: str, params, *, header: bool, statement_timeout_ms: int, workbook: list | None = None
    ) -> None:
        self._conn = wrapper.get_new_connection(wrapper.get_connection_params())
        try:
            self._conn.autocommit = True
            with self._conn.cursor() as cursor:
                statement = cursor.mogrify(sql, params)
                cursor.execute("SELECT set_config('statement_timeout', %s, false)", [str(int(statement_timeout_ms))])
                # Stream in index order rather than sort first: every ordering has an index, and
                # a plan that sorts would read every matching row before sending the first.
                cursor.execute("SET enable_sort = off")
                # No JIT compilation: it costs the first byte ~150 ms for a plan that only
                # formats rows (measured: no throughput gain).
                cursor.execute("SET jit = off")
        except BaseException:
            self._conn.close()
            raise
        # The header is ours: COPY's would name the expressions (to_char, coalesce…), not the columns.
        self._header = (",".join(COLUMNS) + "\n").encode() if header else b""
        options = "FORMAT csv" if header else "FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e'"
        self._copy = f"COPY ({statement}) TO STDOUT WITH ({options})"
        self._workbook = workbook  # a workbook's Query sheet, or None: the COPY's bytes as they are
        self._book: xlsx.StreamedWorkbook | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=self.QUEUE_CHUNKS)
        self._closed = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="export-copy", daemon=True)
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        return self.next_chunk()

    def next_chunk(self, timeout: float | None = None) -> bytes:
        """The next chunk; ``StopIteration`` at the end, the copy's error if it failed, and
        ``queue.Empty`` if none came within ``timeout`` seconds (the caller may look around)."""
        if self._done:
            raise StopIteration
        item = self._queue.get(timeout=timeout)
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    @property
    def rows(self) -> int | None:
        """Rows written, when the stream counts them (a workbook); None otherwise."""
        if self._workbook is None:
            return None
        return self._book.rows if self._book is not None else 0

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._conn.cancel_safe(timeout=5)  # ends the COPY on the server now
            while self._thread.is_alive():  # let a blocked put() see the flag
                with contextlib.suppress(queue.Empty):
                    self._queue.get(timeout=0.05)
        self._done = True

    # ---------------------------------------------------------------- on the copy thread
    def _run(self) -> None:
        chunks = _ChunkWriter(self._put, first=self.FIRST_CHUNK_BYTES, then=self.CHUNK_BYTES)
        try:
            if self._header:
                chunks.write(self._header)
            with self._conn.cursor() as cursor:
                sink = chunks
                if self._workbook is not None:
                    self._book = xlsx.StreamedWorkbook(
                        chunks.write, sheet="Outcomes", columns=XLSX_COLUMNS, rows_per_sheet=XLSX_ROWS_PER_SHEET
                    )
                    sink = _Rows(self._book)
                with cursor.copy(self._copy) as copy:
                    for row in copy:  # one row of the COPY output each
                        sink.write(bytes(row))
                if self._book is not None:
                    self._book.close(self._workbook)
            chunks.flush()
            self._put(_END)
        except _Closed:
            pass
        except Exception as exc:  # noqa: BLE001 - handed to the reader, raised in the response
            if not self._closed.is_set():
                with contextlib.suppress(_Closed):
                    self._put(exc)
        finally:
            with contextlib.suppress(Exception):
                self._conn.close()

    def _put(self, item) -> None:
        waited = 0.0
        while True:
            if self._closed.is_set():
                raise _Closed
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                waited += 0.5
                if waited >= self.STALL_S:
                    raise _Closed from None  # nobody reads any more: give the connection back


class _Rows:
    """The file COPY writes a workbook's rows to (one line each): each to the workbook."""

    def __init__(self, book: xlsx.StreamedWorkbook) -> None:
        self._book = book

    def write(self, data) -> None:
        line = data if isinstance(data, bytes) else data.encode()
        self._book.write_row(line.rstrip(b"\n"))


class _ChunkWriter:
    """The file COPY writes to (one call per row): joins rows into chunks for ``put``."""

    def __init__(self, put, *, first: int, then: int) -> None:
        self._put = put
        self._threshold = first
        self._then = then
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data) -> None:
        self._parts.append(data if isinstance(data, bytes) else data.encode())
        self._size += len(data)
        if self._size >= self._threshold:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self._put(b"".join(self._parts))
            self._parts, self._size, self._threshold = [], 0, self._then
