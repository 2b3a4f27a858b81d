"""PostgreSQL's COPY text format: values in, one read of the buffer.

Both writers of bulk rows (the outcomes of a batch, the rollups' sketches) render rows as
COPY text and send them here. Pure except ``copy_in``.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection

NULL = "\\N"


def escape(text: str) -> str:
    """A string as a COPY text field (backslash, tab, newline and carriage return escaped)."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def field(value) -> str:
    """Any value as a COPY text field: None is NULL, booleans t/f, bytes bytea hex."""
    if value is None:
        return NULL
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    if isinstance(value, str):
        return escape(value)
    return str(value)


def rows_text(rows) -> str:
    return "".join("\t".join(field(v) for v in row) + "\n" for row in rows)


def copy_in(cursor, sql: str, text: str) -> None:
    """Run ``COPY … FROM STDIN`` with ``text`` on a Django cursor.

    ``copy`` is psycopg's own method: without wrap_database_errors its errors would escape
    Django's translation (IntegrityError, OperationalError, ...) the callers rely on. The
    whole buffer in one write: psycopg sends it without holding the GIL, so the thread
    preparing the next batch keeps running."""
    with connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        copy.write(text)
