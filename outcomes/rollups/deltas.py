"""A write's deltas: every grain written by rows gets the signed sums of exactly the rows a
statement inserted (or deleted), appended in the write's transaction.

PostgreSQL computes them from those very rows, in one statement built from the catalogue
(``outcomes.grains``): the rows are in its buffers already, and the database aggregates
thousands of rows in a few milliseconds, which the consumer's Python thread could not (it
would become the bottleneck of ingestion).
"""

from __future__ import annotations

from datetime import datetime

from outcomes import grains
from outcomes.grains import DELTA_COLUMNS, Grain
from outcomes.models import AuctionOutcome

OUTCOMES = AuctionOutcome._meta.db_table

# date_bin on a UTC origin is date_trunc(…, 'UTC') for whole minutes and hours, without a
# time-zone conversion per row (~10% of the deltas statement for a 10,000-row batch).
_BUCKETED = (
    "date_bin('1 minute', event_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS mi, "
    "date_bin('1 hour', event_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS h, "
    "site_domain, win_status, w, bd, currency, enriched, user_interests, experiment, variant, user_id"
)
_ROW_BUCKET = {"minute": "mi", "hour": "h", "day": "date_trunc('day', h, 'UTC')"}


def grain_select(grain: Grain, relation: str, bucket: str, *, sign: int = 1) -> str:
    """``grain``'s rows from ``relation`` (rows of ``DELTA_COLUMNS`` shape: a table or
    ``(SELECT …) b``; a name when ``grain`` expands by copies, which read it once each), with
    ``bucket`` as their bucket expression and every sum multiplied by ``sign``. The write path
    and the raw recomputation both use it."""
    s = int(sign)
    expand = grain.expand
    # With copies, the dimensions not read from a copy's own columns are carried through each copy.
    carried = [d for d in grain.dimensions if expand.copies and not d.sql.startswith(f"{expand.alias}.")]
    dims = [(d.name if d in carried else f"{d.sql} AS {d.name}") for d in grain.dimensions]
    values = zip(grain.values.names, grain.values.aggregates, strict=True)
    sums = [f"{s} * {aggregate} AS {name}" for name, aggregate in values]
    keys = ", ".join(str(i) for i in range(1, len(dims) + 2))
    select = ", ".join([*dims, *sums])
    only = f" AND ({grain.where})" if grain.where else ""
    if expand.copies:
        through = "".join(f"{d.sql} AS {d.name}, " for d in carried)
        copies = " UNION ALL ".join(
            f"SELECT {bucket} AS bk, {through}{columns} FROM {relation} WHERE {where}{only}"
            for columns, where in expand.copies
        )
        return f"SELECT bk AS bucket, {select} FROM ({copies}) {expand.alias} GROUP BY {keys}"
    where = f" WHERE {grain.where}" if grain.where else ""
    return f"SELECT {bucket} AS bucket, {select} FROM {relation} {expand.sql}{where} GROUP BY {keys}"


def _summed(grain: Grain, base: Grain) -> str:
    """``grain``'s deltas from ``base``'s, computed in the same statement (coarser bucket,
    fewer dimensions)."""
    bucket = "bucket" if grain.unit == base.unit else f"date_trunc('{grain.unit}', bucket, 'UTC')"
    dims = ", ".join(grain.dims)
    sums = ", ".join(f"sum({v})" for v in grain.values.names)
    keys = ", ".join(str(i) for i in range(1, len(grain.dims) + 2))
    select_dims = f"{dims}, " if dims else ""
    return f"SELECT {bucket}, {select_dims}{sums} FROM d_{_name(base)} GROUP BY {keys}"


def _name(grain: Grain) -> str:
    return f"{grain.family}_{grain.unit}"


def _columns(grain: Grain) -> str:
    return ", ".join(("bucket", *grain.dims, *grain.values.names))


def deltas_statement(source: str, sign: int) -> str:
    """SQL appending the deltas of the rows ``source`` yields (``DELTA_COLUMNS``) to every
    grain written by rows; it returns the hours those rows fall in. ``source`` may be a
    ``DELETE … RETURNING``."""
    materialized = "" if source.lstrip().upper().startswith("DELETE") else "MATERIALIZED "
    written = [g for g in grains.GRAINS if g.written_by_rows]
    bases = {grains.BY_KEY[g.summed_from].key for g in grains.GRAINS if g.summed_from} | {grains.COUNTED.key}
    ctes = [f"rows AS {materialized}({source})", f"b AS MATERIALIZED (SELECT {_BUCKETED} FROM rows)"]
    for grain in written:
        select = grain_select(grain, "b", _ROW_BUCKET[grain.unit], sign=sign)
        if grain.key in bases:
            ctes.append(f"d_{_name(grain)} AS MATERIALIZED ({select})")
            select = f"SELECT * FROM d_{_name(grain)}"
        ctes.append(f"i_{_name(grain)} AS (INSERT INTO {grain.table} ({_columns(grain)}) {select})")
    for grain in grains.GRAINS:
        if grain.summed_from:
            base = grains.BY_KEY[grain.summed_from]
            ctes.append(f"i_{_name(grain)} AS (INSERT INTO {grain.table} ({_columns(grain)}) {_summed(grain, base)})")
    counted = f"d_{_name(grains.COUNTED)}"
    hours = f"SELECT date_trunc('hour', bucket, 'UTC'), abs(sum(outcomes))::bigint FROM {counted} GROUP BY 1"
    return "WITH " + ",\n".join(ctes) + "\n" + hours


def _run(cursor, source: str, sign: int, params=None) -> dict[datetime, int]:
    cursor.execute(deltas_statement(source, sign), params)
    return dict(cursor.fetchall())


# ---------------------------------------------------------------------------- the rows of a write
_SEQUENCE: list[str] = []


def _sequence(cursor) -> str:
    if not _SEQUENCE:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [OUTCOMES])
        _SEQUENCE.append(cursor.fetchone()[0])
    return _SEQUENCE[0]


def sequence_mark(cursor) -> int:
    """The outcomes id sequence's position now: rows inserted from here on have larger ids."""
    cursor.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {_sequence(cursor)}")
    return cursor.fetchone()[0]


def append_inserted(cursor, *, after_id: int, last_id: int | None = None) -> dict[datetime, int]:
    """Append the deltas of the rows the last insert statement of this session stored, all of
    them after ``sequence_mark`` gave ``after_id``. Returns {hour: rows} of those rows.

    The statement's rows are the ids in (after_id, last_id] that share the xmin of row
    ``last_id`` — by default currval, this session's own last id (pass the largest id an
    ``INSERT … ON CONFLICT`` returned instead: rows skipped on conflict use up ids too).
    Rows other sessions inserted in that id range carry their own transaction ids. This
    holds under savepoints too (the subtransaction's id).
    """
    if last_id is None:
        cursor.execute(f"SELECT currval('{_sequence(cursor)}')")
        last_id = cursor.fetchone()[0]
    last_id = int(last_id)
    source = (
        f"SELECT {DELTA_COLUMNS} FROM {OUTCOMES} WHERE id > {int(after_id)} AND id <= {last_id} "
        f"AND xmin = (SELECT xmin FROM {OUTCOMES} WHERE id = {last_id})"
    )
    return _run(cursor, source, 1)


def append_rows(cursor, *, ids: list[int]) -> dict[datetime, int]:
    """Append the deltas of these stored rows (an update's new version); {hour: rows}."""
    return _run(cursor, f"SELECT {DELTA_COLUMNS} FROM {OUTCOMES} WHERE id = ANY(%s)", 1, [ids])


def delete_rows(cursor, *, ids: list[int]) -> dict[datetime, int]:
    """Delete outcomes and append their negative deltas; {hour: rows deleted}."""
    return _run(cursor, f"DELETE FROM {OUTCOMES} WHERE id = ANY(%s) RETURNING {DELTA_COLUMNS}", -1, [ids])
