"""Rollups: exact pre-aggregates of the outcomes table, and which one answers what.

Owns the rollup tables (models ``*Rollup*``): computing a write's deltas (pure), appending
them in the writer's transaction, compacting partial rows, verifying against the raw rows
and rebuilding. It knows nothing about HTTP or Kafka; ``outcomes.writes`` calls it inside
its transactions and ``outcomes.queries`` reads what it describes here (``FAMILIES``).

How it stays exact and fast under concurrent writers (Druid's segments-then-compaction,
inside PostgreSQL):

* every write **appends** its own partial rows (``pending = true``): no upsert, so no row
  is ever locked by two writers, no deadlock, and consumers never wait for each other;
* readers sum all rows of a key, so partial rows and compacted rows give the same sum;
* ``compact()`` merges each key's rows into one with a single ``DELETE … RETURNING`` feeding
  an ``INSERT`` — one statement, one snapshot, so rows committed meanwhile are neither lost
  nor counted twice;
* a delete or update appends *negative* deltas. Reach sketches cannot subtract, so the
  affected buckets' sketches are rebuilt from the raw rows in the same transaction;
* only rows actually inserted are counted: the caller passes exactly those.

Families and grains (the router's table, also in the README):

========== =========================== ================ ===========================================
family     grains (time unit)          dimensions       answers
========== =========================== ================ ===========================================
outcomes   minute, hour, day           currency,        totals/series with win_status, currency,
                                       enriched         enriched filters
total      minute                      (none)           minute series without those filters
domain     hour, day, all              site_domain      site_domain filter (with win_status);
                                                        breakdown by site_domain
interest   hour                        interest         breakdown by interest
price      hour, day, all              cents            exact percentiles and histograms
reach      hour, day                   (HLL sketch)     distinct users
========== =========================== ================ ===========================================

Day and all-time (``all``: one bucket, 1970-01-01) grains of the domain and price families
are folded from their hour rows by compaction rather than written by each batch.

Every measures row stores: outcomes, wins, enriched_outcomes, enriched_wins, revenue_cents
(win_price over won), bid_cents (bid_price over all) and won_bid_cents (bid_price over won),
so a ``win_status`` filter is answered by every family without being a dimension.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction

from outcomes import models as m
from outcomes import pgcopy
from outcomes.buckets import ALL_TIME, UNITS, truncate

HLL_LG_K = 12  # 4,096 registers: relative standard error 1.04 / sqrt(4096) ≈ 1.6%
COMPACT_LOCK = 0x6F75_7463  # pg advisory lock key shared by compaction and rebuild

MEASURES = ("outcomes", "wins", "enriched_outcomes", "enriched_wins", "revenue_cents", "bid_cents", "won_bid_cents")
PRICE_COUNTS = ("won_at_win_price", "won_at_bid_price", "lost_at_bid_price")


@dataclass(frozen=True)
class Grain:
    family: str
    unit: str
    model: type
    dims: tuple[str, ...]
    # A grain "folded from" a finer one is not written by writers: compaction moves the finer
    # grain's partial rows into it in the statement that merges them. Until then, readers add
    # the finer grain's still-pending rows to it (``pending_source``), so answers stay exact.
    folded_from: str | None = None

    @property
    def pending_source(self) -> Grain | None:
        return FAMILIES[self.family][self.folded_from] if self.folded_from else None

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def values(self) -> tuple[str, ...]:
        if self.family == "price":
            return PRICE_COUNTS
        if self.family == "reach":
            return ("sketch",)
        return MEASURES


GRAINS = (
    Grain("outcomes", "minute", m.OutcomeRollupMinute, ("currency", "enriched")),
    Grain("outcomes", "hour", m.OutcomeRollupHour, ("currency", "enriched")),
    Grain("outcomes", "day", m.OutcomeRollupDay, ("currency", "enriched")),
    Grain("total", "minute", m.TotalRollupMinute, ()),
    Grain("domain", "hour", m.DomainRollupHour, ("site_domain",)),
    Grain("domain", "day", m.DomainRollupDay, ("site_domain",), folded_from="hour"),
    Grain("domain", "all", m.DomainRollupTotal, ("site_domain",), folded_from="hour"),
    Grain("interest", "hour", m.InterestRollupHour, ("interest",)),
    Grain("price", "hour", m.PriceRollupHour, ("cents",)),
    Grain("price", "day", m.PriceRollupDay, ("cents",), folded_from="hour"),
    Grain("price", "all", m.PriceRollupTotal, ("cents",), folded_from="hour"),
    Grain("reach", "hour", m.ReachRollupHour, ()),
    Grain("reach", "day", m.ReachRollupDay, ()),
)
FAMILIES: dict[str, dict[str, Grain]] = {}
for _grain in GRAINS:
    FAMILIES.setdefault(_grain.family, {})[_grain.unit] = _grain
# Which filters each family can apply itself (win_status works everywhere, via the measures).
FAMILY_FILTERS = {
    "outcomes": {"currency", "enriched"},
    "total": set(),
    "domain": {"site_domain"},
    "interest": set(),
    "price": set(),
    "reach": set(),
}


def bucket_sql(unit: str, column: str) -> str:
    """SQL for the ``unit`` bucket of timestamp ``column``."""
    if unit == "all":
        return f"'{ALL_TIME.isoformat()}'::timestamptz"
    return f"date_trunc('{unit}', {column}, 'UTC')"


# ---------------------------------------------------------------------------- deltas
# A write's deltas are computed by PostgreSQL from the very rows the write inserted (or
# deleted), in one statement inside the write's transaction: the rows are in its buffers
# already, and the database aggregates thousands of rows in a few milliseconds, which the
# consumer's Python thread could not (it would become the bottleneck of ingestion).

_DELTA_COLUMNS = (
    "event_time, coalesce(site_domain, '') AS site_domain, win_status, (win_price * 100)::bigint AS w, "
    "(bid_price * 100)::bigint AS bd, currency, enriched, user_interests"
)
# date_bin on a UTC origin is date_trunc(…, 'UTC') for whole minutes and hours, without a
# time-zone conversion per row (~10% of the deltas statement for a 10,000-row batch).
_BUCKETED = (
    "date_bin('1 minute', event_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS mi, "
    "date_bin('1 hour', event_time, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS h, "
    "site_domain, win_status, w, bd, currency, enriched, user_interests"
)


def _measures(sign: int) -> str:
    s = int(sign)
    return (
        f"{s} * count(*) AS outcomes, {s} * count(*) FILTER (WHERE win_status) AS wins, "
        f"{s} * count(*) FILTER (WHERE enriched) AS enriched_outcomes, "
        f"{s} * count(*) FILTER (WHERE enriched AND win_status) AS enriched_wins, "
        f"{s} * coalesce(sum(w) FILTER (WHERE win_status), 0) AS revenue_cents, "
        f"{s} * sum(bd) AS bid_cents, {s} * coalesce(sum(bd) FILTER (WHERE win_status), 0) AS won_bid_cents"
    )


def _deltas_statement(source: str, sign: int) -> str:
    """SQL appending the deltas of the rows ``source`` yields (``_DELTA_COLUMNS``); it returns
    the hours those rows fall in. ``source`` may be a ``DELETE … RETURNING``."""
    fam = FAMILIES
    measures = ", ".join(MEASURES)
    sums = ", ".join(f"sum({v})" for v in MEASURES)
    s = int(sign)
    materialized = "" if source.lstrip().upper().startswith("DELETE") else "MATERIALIZED "

    def coarser(grain: Grain) -> str:
        return (
            f"INSERT INTO {grain.table} (bucket, currency, enriched, {measures}) "
            f"SELECT date_trunc('{grain.unit}', bucket, 'UTC'), currency, enriched, {sums} FROM mm GROUP BY 1, 2, 3"
        )

    return f"""
    WITH rows AS {materialized}({source}),
    b AS MATERIALIZED (SELECT {_BUCKETED} FROM rows),
    mm AS MATERIALIZED (SELECT mi AS bucket, currency, enriched, {_measures(s)} FROM b GROUP BY 1, 2, 3),
    i_minute AS (INSERT INTO {fam["outcomes"]["minute"].table} (bucket, currency, enriched, {measures})
                 SELECT * FROM mm),
    i_total AS (INSERT INTO {fam["total"]["minute"].table} (bucket, {measures})
                SELECT bucket, {sums} FROM mm GROUP BY 1),
    i_hour AS ({coarser(fam["outcomes"]["hour"])}),
    i_day AS ({coarser(fam["outcomes"]["day"])}),
    i_domain AS (INSERT INTO {fam["domain"]["hour"].table} (bucket, site_domain, {measures})
                 SELECT h, site_domain, {_measures(s)} FROM b GROUP BY 1, 2),
    i_interest AS (INSERT INTO {fam["interest"]["hour"].table} (bucket, interest, {measures})
                   SELECT h, coalesce(i.value, ''), {_measures(s)}
                   FROM b LEFT JOIN LATERAL jsonb_array_elements_text(b.user_interests) i(value) ON true
                   GROUP BY 1, 2),
    i_price AS (INSERT INTO {fam["price"]["hour"].table} (bucket, cents, {", ".join(PRICE_COUNTS)})
                SELECT h, c, {s} * sum(ww), {s} * sum(wb), {s} * sum(lb) FROM (
                    SELECT h, w c, 1 ww, 0 wb, 0 lb FROM b WHERE win_status
                    UNION ALL
                    SELECT h, bd, 0, 1, 0 FROM b WHERE win_status
                    UNION ALL
                    SELECT h, bd, 0, 0, 1 FROM b WHERE NOT win_status
                ) p GROUP BY 1, 2)
    SELECT date_trunc('hour', bucket, 'UTC'), abs(sum(outcomes))::bigint FROM mm GROUP BY 1
    """


OUTCOMES = m.AuctionOutcome._meta.db_table


def sequence_mark(cursor) -> int:
    """The outcomes id sequence's position now: rows inserted from here on have larger ids."""
    cursor.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {_sequence(cursor)}")
    return cursor.fetchone()[0]


_SEQUENCE: list[str] = []


def _sequence(cursor) -> str:
    if not _SEQUENCE:
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [OUTCOMES])
        _SEQUENCE.append(cursor.fetchone()[0])
    return _SEQUENCE[0]


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
        f"SELECT {_DELTA_COLUMNS} FROM {OUTCOMES} WHERE id > {int(after_id)} AND id <= {last_id} "
        f"AND xmin = (SELECT xmin FROM {OUTCOMES} WHERE id = {last_id})"
    )
    cursor.execute(_deltas_statement(source, 1))
    return dict(cursor.fetchall())


def append_rows(cursor, *, ids: list[int]) -> dict[datetime, int]:
    """Append the deltas of these stored rows (an update's new version); {hour: rows}."""
    cursor.execute(_deltas_statement(f"SELECT {_DELTA_COLUMNS} FROM {OUTCOMES} WHERE id = ANY(%s)", 1), [ids])
    return dict(cursor.fetchall())


def delete_rows(cursor, *, ids: list[int]) -> dict[datetime, int]:
    """Delete outcomes and append their negative deltas; {hour: rows deleted}."""
    source = f"DELETE FROM {OUTCOMES} WHERE id = ANY(%s) RETURNING {_DELTA_COLUMNS}"
    cursor.execute(_deltas_statement(source, -1), [ids])
    return dict(cursor.fetchall())


# ---------------------------------------------------------------------------- reach sketches
def new_sketch():
    """An empty HyperLogLog sketch of the reach grains (lg_k 12, HLL_8)."""
    import datasketches

    return datasketches.hll_sketch(HLL_LG_K, datasketches.tgt_hll_type.HLL_8)


class Reach:
    """The users a write adds, as one HyperLogLog sketch per hour (sketches cannot subtract:
    deletes and updates rebuild the touched hours instead, see ``rebuild_reach_buckets``)."""

    def __init__(self) -> None:
        self.hours: dict[datetime, object] = {}

    def add(self, moment: datetime, user_id: str) -> None:
        hour = moment.replace(minute=0, second=0, microsecond=0)
        sketch = self.hours.get(hour)
        if sketch is None:
            sketch = self.hours[hour] = new_sketch()
        sketch.update(user_id)


def append_reach(cursor, reach: Reach) -> None:
    if not reach.hours:
        return
    import datasketches

    days: dict = {}
    for hour, sketch in reach.hours.items():
        union = days.get(truncate(hour, "day"))
        if union is None:
            union = days[truncate(hour, "day")] = datasketches.hll_union(HLL_LG_K)
        union.update(sketch)
    _copy(cursor, FAMILIES["reach"]["hour"], [(h, sk.serialize_compact()) for h, sk in reach.hours.items()])
    result = datasketches.tgt_hll_type.HLL_8
    _copy(cursor, FAMILIES["reach"]["day"], [(d, u.get_result(result).serialize_compact()) for d, u in days.items()])


def _copy(cursor, grain: Grain, rows: list[tuple]) -> None:
    columns = ("bucket", *grain.dims, *grain.values)
    pgcopy.copy_in(cursor, f"COPY {grain.table} ({', '.join(columns)}) FROM STDIN", pgcopy.rows_text(rows))


def rebuild_reach_buckets(cursor, hours: Iterable[datetime]) -> None:
    """Recompute the reach sketches of these hours (and their days) from the raw rows.

    Used after deletes and updates, which a HyperLogLog sketch cannot subtract. The sketch
    rows are deleted first and the raw rows read after, so a write committed in between is
    either in the raw read or keeps its own sketch row (a sketch union is idempotent). Hours
    before ``raw_rows_start()`` are left alone (their raw rows are gone).
    """
    # Never where the raw rows were pruned: rebuilt from the few left there (a late outcome),
    # the sketch would forget every user of that time. There it stays as it is.
    cut = raw_rows_start()
    hours = sorted({h for h in hours if cut is None or h >= cut})
    if not hours:
        return
    days = sorted({truncate(h, "day") for h in hours})
    hour_grain, day_grain = FAMILIES["reach"]["hour"], FAMILIES["reach"]["day"]
    cursor.execute(f"DELETE FROM {day_grain.table} WHERE bucket = ANY(%s)", [days])
    cursor.execute(f"DELETE FROM {hour_grain.table} WHERE bucket IN (SELECT b FROM unnest(%s) b)", [hours])
    # Every hour of each affected day is needed to rebuild the day sketch.
    cursor.execute(
        f"SELECT bucket, sketch FROM {hour_grain.table} WHERE bucket >= %s AND bucket < %s",
        [days[0], days[-1] + UNITS["day"]],
    )
    kept = cursor.fetchall()
    sketches = _raw_sketches(cursor, hours)
    hour_rows = [(h, s.serialize_compact()) for h, s in sketches.items()]
    import datasketches

    unions: dict = {}
    for hour, blob in [*kept, *hour_rows]:
        day = truncate(hour, "day")
        if day not in days:
            continue
        union = unions.setdefault(day, datasketches.hll_union(HLL_LG_K))
        union.update(datasketches.hll_sketch.deserialize(bytes(blob)))
    if hour_rows:
        _copy(cursor, hour_grain, hour_rows)
    day_rows = [(d, u.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact()) for d, u in unions.items()]
    if day_rows:
        _copy(cursor, day_grain, day_rows)


def _raw_sketches(cursor, hours: list[datetime]) -> dict:
    sketches: dict = {}
    for hour in hours:
        cursor.execute(
            f"SELECT DISTINCT user_id FROM {_RAW} WHERE event_time >= %s AND event_time < %s",
            [hour, hour + UNITS["hour"]],
        )
        users = cursor.fetchall()
        if users:
            sketch = sketches[hour] = new_sketch()
            for (user,) in users:
                sketch.update(user)
    return sketches


# ---------------------------------------------------------------------------- compaction
# Per process: the highest id below which every partial row has been merged, per table.
# New partial rows are found by a primary-key range scan above it; a row that committed late
# with a lower id is picked up by the full scan every FULL_SCAN_EVERY runs (until then it is
# simply one more row to sum: correctness never depends on compaction).
_WATERMARKS: dict[str, int] = {}
_RUNS = [0]
FULL_SCAN_EVERY = 60


def compact(*, max_keys: int = 50_000) -> dict[str, int]:
    """Merge each key's partial rows into one. Safe beside concurrent writers; returns rows merged per table.

    Skips (returns {}) if another process is compacting or rebuilding right now.
    """
    merged: dict[str, int] = {}
    _RUNS[0] += 1
    full = _RUNS[0] % FULL_SCAN_EVERY == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [COMPACT_LOCK])
        if not cursor.fetchone()[0]:
            return merged
        try:
            for grain in GRAINS:
                cursor.execute(f"SELECT coalesce(max(id), 0) FROM {grain.table}")
                top = cursor.fetchone()[0]
                since = 0 if full else _WATERMARKS.get(grain.table, 0)
                if grain.family == "reach":
                    merged[grain.table], done = _compact_reach(cursor, grain, max_keys, since)
                else:
                    merged[grain.table], done = _compact_sums(cursor, grain, max_keys, since)
                if done:
                    _WATERMARKS[grain.table] = top
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [COMPACT_LOCK])
    return merged


def _folded_into(grain: Grain) -> list[Grain]:
    return [other for other in GRAINS if other.family == grain.family and other.folded_from == grain.unit]


def _compact_sums(cursor, grain: Grain, max_keys: int, since: int) -> tuple[int, bool]:
    """Returns (rows merged, whether every pending row above ``since`` was handled).

    For a grain another is folded from, the same statement adds the merged partial rows'
    sums to the coarser grain: a partial row is counted there exactly when it stops being
    pending here, which is what readers rely on.
    """
    keys = ("bucket", *grain.dims)
    key_list = ", ".join(keys)
    join = " AND ".join(f"t.{k} = k.{k}" for k in keys)
    sums = ", ".join(f"sum({v})" for v in grain.values)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in grain.values)
    cursor.execute(
        f"SELECT count(*) FROM (SELECT DISTINCT {key_list} FROM {grain.table} WHERE id > %s AND pending) k",
        [since],
    )
    pending_keys = cursor.fetchone()[0]
    if not pending_keys:
        return 0, True
    cursor.execute(
        f"""
        WITH k AS (
            SELECT DISTINCT {key_list} FROM {grain.table} WHERE id > {int(since)} AND pending LIMIT {int(max_keys)}
        ),
        moved AS (DELETE FROM {grain.table} t USING k WHERE {join} RETURNING t.*),
        merged AS (
            INSERT INTO {grain.table} ({key_list}, {", ".join(grain.values)}, pending)
            SELECT {key_list}, {sums}, false FROM moved GROUP BY {key_list} HAVING {nonzero}
            RETURNING 1
        ){_fold_sql(grain)}
        SELECT (SELECT count(*) FROM moved)
        """
    )
    return cursor.fetchone()[0], pending_keys <= max_keys


def _fold_sql(grain: Grain) -> str:
    dims = ", ".join(grain.dims)
    sums = ", ".join(f"sum({v})" for v in grain.values)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in grain.values)
    return "".join(
        f""",
        folded_{target.unit} AS (
            INSERT INTO {target.table} (bucket, {dims}, {", ".join(grain.values)}, pending)
            SELECT {bucket_sql(target.unit, "bucket")}, {dims}, {sums}, true FROM moved
            WHERE pending GROUP BY 1, {dims} HAVING {nonzero}
            RETURNING 1
        )"""
        for target in _folded_into(grain)
    )


def _compact_reach(cursor, grain: Grain, max_keys: int, since: int) -> tuple[int, bool]:
    import datasketches

    cursor.execute(
        f"SELECT DISTINCT bucket FROM {grain.table} WHERE id > %s AND pending LIMIT {int(max_keys) + 1}", [since]
    )
    buckets = [row[0] for row in cursor.fetchall()]
    if not buckets:
        return 0, True
    complete = len(buckets) <= max_keys
    buckets = buckets[:max_keys]
    cursor.execute(f"DELETE FROM {grain.table} WHERE bucket = ANY(%s) RETURNING bucket, sketch", [buckets])
    unions: dict = {}
    moved = 0
    for bucket, blob in cursor.fetchall():
        moved += 1
        unions.setdefault(bucket, datasketches.hll_union(HLL_LG_K)).update(
            datasketches.hll_sketch.deserialize(bytes(blob))
        )
    rows = [(b, u.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact(), False) for b, u in unions.items()]
    pgcopy.copy_in(cursor, f"COPY {grain.table} (bucket, sketch, pending) FROM STDIN", pgcopy.rows_text(rows))
    return moved, complete


# ---------------------------------------------------------------------------- verify / rebuild
_RAW = m.AuctionOutcome._meta.db_table
_RAW_MEASURES = (
    "count(*)",
    "count(*) FILTER (WHERE win_status)",
    "count(*) FILTER (WHERE enriched)",
    "count(*) FILTER (WHERE enriched AND win_status)",
    "coalesce(sum(win_price * 100) FILTER (WHERE win_status), 0)::bigint",
    "coalesce(sum(bid_price * 100), 0)::bigint",
    "coalesce(sum(bid_price * 100) FILTER (WHERE win_status), 0)::bigint",
)


class PrunedHistory(ValueError):
    """A rebuild asked to start where the raw rows were pruned: it would erase the rollups
    there, which are the only record left of that time."""


def raw_rows_start() -> datetime | None:
    """Where the raw outcomes start, if ``prune_outcomes`` deleted older ones (a whole UTC
    day). Before it the rollups are the record: nothing raw is left to compare or rebuild.

    The row ``queries.raw_horizon`` reads for the API (on the read replica, on every list
    count); this one reads the primary, where verify and rebuild run, and also answers on a
    database migrated only part-way (migration 0004 rebuilds the rollups before 0008 adds it)."""
    table = m.RawRetention._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [table])  # migration 0004 rebuilds before 0008 makes it
        if cursor.fetchone()[0] is None:
            return None
        cursor.execute(f"SELECT before FROM {table} WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row else None


def _window(column: str, since: datetime | None, until: datetime | None) -> tuple[str, list]:
    """``column`` in [since, until), either end open when None."""
    where, params = ["true"], []
    if since is not None:
        where.append(f"{column} >= %s")
        params.append(since)
    if until is not None:
        where.append(f"{column} < %s")
        params.append(until)
    return " AND ".join(where), params


def _raw_select(grain: Grain, since: datetime | None, until: datetime | None) -> tuple[str, list]:
    """SQL computing ``grain``'s rows from the raw table, over [since, until). Written apart
    from the write path's delta statement on purpose: ``verify`` checks one against the other."""
    bucket = bucket_sql(grain.unit, "event_time")
    cond, params = _window("event_time", since, until)
    if grain.family == "price":
        sql = f"""
            SELECT b, c, sum(ww)::bigint, sum(wb)::bigint, sum(lb)::bigint FROM (
                SELECT {bucket} b, (win_price * 100)::int c, 1 ww, 0 wb, 0 lb FROM {_RAW} WHERE win_status AND {cond}
                UNION ALL
                SELECT {bucket}, (bid_price * 100)::int, 0, 1, 0 FROM {_RAW} WHERE win_status AND {cond}
                UNION ALL
                SELECT {bucket}, (bid_price * 100)::int, 0, 0, 1 FROM {_RAW} WHERE NOT win_status AND {cond}
            ) x GROUP BY b, c"""
        return sql, params * 3
    if grain.family == "total":
        sql = f"SELECT {bucket}, {', '.join(_RAW_MEASURES)} FROM {_RAW} WHERE {cond} GROUP BY 1"
        return sql, params
    if grain.family == "outcomes":
        dims = "currency, enriched"
        source = _RAW
    elif grain.family == "domain":
        dims = "coalesce(site_domain, '')"
        source = _RAW
    else:  # interest: one row per interest, '' for none
        dims = "interest"
        source = (
            f"(SELECT o.*, coalesce(i.value, '') AS interest FROM {_RAW} o "
            f"LEFT JOIN LATERAL jsonb_array_elements_text(o.user_interests) i(value) ON true) o"
        )
    sql = f"SELECT {bucket}, {dims}, {', '.join(_RAW_MEASURES)} FROM {source} WHERE {cond} GROUP BY 1, {dims}"
    return sql, params


def _rollup_select(grain: Grain, since: datetime | None, until: datetime | None) -> tuple[str, list]:
    """What readers see of ``grain`` (for a folded grain: its rows plus the finer grain's pending ones)."""
    cond, params = _window("bucket", since, until)
    columns = ", ".join((*grain.dims, *grain.values))
    source = f"SELECT bucket, {columns} FROM {grain.table} WHERE {cond}"
    if grain.pending_source is not None:
        source += (
            f" UNION ALL SELECT {bucket_sql(grain.unit, 'bucket')}, {columns} "
            f"FROM {grain.pending_source.table} WHERE pending AND {cond}"
        )
        params = params * 2
    keys = ", ".join(("bucket", *grain.dims))
    sums = ", ".join(f"sum({v})::bigint" for v in grain.values)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in grain.values)
    sql = f"SELECT {keys}, {sums} FROM ({source}) x GROUP BY {keys} HAVING {nonzero}"
    return sql, params


@dataclass
class Difference:
    table: str
    key: tuple
    stored: tuple | None
    expected: tuple | None


def verify(*, since: datetime | None = None, until: datetime | None = None) -> list[Difference]:
    """Every difference between the rollups and what the raw rows say, over [since, until).

    Buckets are compared whole: ``since`` is rounded down to the day. All-time grains are
    compared only when the whole range is (no ``since``, no ``until``). After a prune the
    comparison starts where the raw rows do (``raw_rows_start``), whatever ``since`` says:
    the rollups of pruned time have no raw rows left to agree with.
    """
    since = truncate(since.astimezone(UTC), "day") if since else None
    cut = raw_rows_start()
    if cut is not None and (since is None or since < cut):
        since = cut
    differences: list[Difference] = []
    # One snapshot for every read: consumers commit rows and their deltas together, so raw
    # rows and rollups agree within a snapshot, but not across statements while they write.
    # (Inside a caller's transaction, the caller's isolation applies.)
    outermost = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if outermost:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for grain in GRAINS:
            if grain.unit == "all" and (since or until):
                continue
            if grain.family == "reach":
                differences.extend(_verify_reach(cursor, grain, since, until))
                continue
            raw_sql, raw_params = _raw_select(grain, since, until)
            cursor.execute(raw_sql, raw_params)
            expected = {tuple(row[: 1 + len(grain.dims)]): tuple(row[1 + len(grain.dims) :]) for row in cursor}
            sql, params = _rollup_select(grain, since, until)
            cursor.execute(sql, params)
            stored = {tuple(row[: 1 + len(grain.dims)]): tuple(row[1 + len(grain.dims) :]) for row in cursor}
            for key in sorted(expected.keys() | stored.keys(), key=repr):
                if expected.get(key) != stored.get(key):
                    differences.append(Difference(grain.table, key, stored.get(key), expected.get(key)))
    return differences


def _verify_reach(cursor, grain: Grain, since, until) -> list[Difference]:
    import datasketches

    cond, params = _window("bucket", since, until)
    cursor.execute(f"SELECT bucket, sketch FROM {grain.table} WHERE {cond}", params)
    stored: dict = {}
    for bucket, blob in cursor.fetchall():
        stored.setdefault(bucket, datasketches.hll_union(HLL_LG_K)).update(
            datasketches.hll_sketch.deserialize(bytes(blob))
        )
    raw_where, params = _window("event_time", since, until)
    expected = {}
    cursor.execute(
        f"SELECT DISTINCT date_trunc('{grain.unit}', event_time, 'UTC'), user_id FROM {_RAW} WHERE {raw_where}", params
    )
    for bucket, user in cursor.fetchall():
        sketch = expected.get(bucket)
        if sketch is None:
            sketch = expected[bucket] = new_sketch()
        sketch.update(user)
    differences = []
    for bucket in sorted(expected.keys() | stored.keys()):
        want = expected.get(bucket)
        have = stored.get(bucket)
        if want is not None:
            union = datasketches.hll_union(HLL_LG_K)
            union.update(want)
            want = union
        want_state = _sketch_state(want) if want is not None else None
        have_state = _sketch_state(have) if have is not None else None
        if want_state is None and have is not None and have.is_empty():
            continue
        if want_state != have_state:
            differences.append(
                Difference(
                    grain.table,
                    (bucket,),
                    (round(have.get_estimate()),) if have is not None else None,
                    (round(want.get_estimate()),) if want is not None else None,
                )
            )
    return differences


def _sketch_state(union):
    """What two sketches of the same users share: their registers (HLL mode) or, for a
    handful of users (coupon mode), their estimate. The estimate of a sketch in HLL mode
    depends on how it was built (in order or merged), so registers are compared instead."""
    import datasketches

    data = union.get_result(datasketches.tgt_hll_type.HLL_8).serialize_updatable()
    if data[0] == 10:  # preamble ints of HLL mode; 2 and 3 are the coupon list and set
        return data[40:]
    return round(union.get_estimate(), 6)


def rebuild(*, since: datetime | None = None, until: datetime | None = None, days: int = 1) -> int:
    """Recompute every rollup from the raw rows over [since, until), ``days`` per transaction.

    Online: each table's chunk is replaced by one statement (one snapshot), so writes
    committed meanwhile are neither lost nor doubled. ``since`` is rounded down and
    ``until`` up to whole days (day rows cannot be rebuilt in part); without ``since`` the
    rebuild starts at the oldest raw row. Returns the number of chunks rebuilt.

    Never before ``raw_rows_start()``: the rollups of pruned time are the only record of it.
    Without ``since`` the rebuild starts there at the earliest (late outcomes stored after a
    prune may be older); a ``since`` before it raises ``PrunedHistory``.
    """

    cut = raw_rows_start()
    if since is not None and cut is not None and truncate(since.astimezone(UTC), "day") < cut:
        raise PrunedHistory(
            f"raw outcomes before {cut.date().isoformat()} were pruned: a rebuild from "
            f"{since.date().isoformat()} would erase the rollups of that time, which are its only record. "
            f"Rebuild from {cut.date().isoformat()} on."
        )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min(event_time), max(event_time) FROM {_RAW}")
        oldest, newest = cursor.fetchone()
    if oldest is None and since is None:
        return 0
    start = truncate((since or oldest).astimezone(UTC), "day")
    if cut is not None:
        start = max(start, cut)
    if until is not None:
        stop = truncate(until.astimezone(UTC), "day")
        stop = stop if stop == until else stop + UNITS["day"]
    else:
        stop = truncate(newest, "day") + UNITS["day"] if newest else start + UNITS["day"]
    chunk = UNITS["day"] * max(1, days)
    chunks = 0
    while start < stop:
        start = _next_filled_day(start, stop)  # years without data cost nothing
        if start >= stop:
            break
        end = min(start + chunk, stop)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [COMPACT_LOCK])
            for grain in GRAINS:
                if grain.family == "reach" or grain.unit == "all":
                    continue
                raw_sql, raw_params = _raw_select(grain, start, end)
                columns = ", ".join(("bucket", *grain.dims, *grain.values))
                cursor.execute(
                    f"""
                    WITH gone AS (DELETE FROM {grain.table} WHERE bucket >= %s AND bucket < %s RETURNING 1)
                    INSERT INTO {grain.table} ({columns}, pending)
                    SELECT *, false FROM ({raw_sql}) fresh
                    """,
                    [start, end, *raw_params],
                )
            hours = []
            moment = start
            while moment < end:
                hours.append(moment)
                moment += UNITS["hour"]
            rebuild_reach_buckets(cursor, hours)
            for grain in GRAINS:
                if grain.unit == "all":
                    _rebuild_total(cursor, grain)
        chunks += 1
        start = end
    return chunks


def _next_filled_day(start: datetime, stop: datetime) -> datetime:
    """The first day at or after ``start`` with raw rows or rollup rows (``stop`` if none):
    a day with neither has nothing to rebuild. Every raw row has a minute row, so the minute
    grain stands for the rollups."""
    minute = FAMILIES["outcomes"]["minute"].table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT least((SELECT min(event_time) FROM {_RAW} WHERE event_time >= %s), "
            f"(SELECT min(bucket) FROM {minute} WHERE bucket >= %s))",
            [start, start],
        )
        found = cursor.fetchone()[0]
    return stop if found is None else max(start, truncate(found.astimezone(UTC), "day"))


def _rebuild_total(cursor, grain: Grain) -> None:
    """An all-time grain is the sum of its family's day rows and still-pending hour rows (not
    of the raw rows: rollups outlive them). One statement, like every rebuild step."""
    day, hour = FAMILIES[grain.family]["day"], grain.pending_source
    dims = ", ".join(grain.dims)
    values = ", ".join(grain.values)
    sums = ", ".join(f"sum({v})" for v in grain.values)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in grain.values)
    cursor.execute(
        f"""
        WITH gone AS (DELETE FROM {grain.table} RETURNING 1)
        INSERT INTO {grain.table} (bucket, {dims}, {values}, pending)
        SELECT %s, {dims}, {sums}, false FROM (
            SELECT {dims}, {values} FROM {day.table}
            UNION ALL
            SELECT {dims}, {values} FROM {hour.table} WHERE pending
        ) x GROUP BY {dims} HAVING {nonzero}
        """,
        [ALL_TIME],
    )
