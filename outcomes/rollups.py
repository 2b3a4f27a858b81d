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
domain     hour, day                   site_domain      site_domain filter (with win_status);
                                                        breakdown by site_domain
interest   hour                        interest         breakdown by interest
price      hour, day                   cents            exact percentiles and histograms
reach      hour, day                   (HLL sketch)     distinct users
========== =========================== ================ ===========================================

Every measures row stores: outcomes, wins, enriched_outcomes, enriched_wins, revenue_cents
(win_price over won), bid_cents (bid_price over all) and won_bid_cents (bid_price over won),
so a ``win_status`` filter is answered by every family without being a dimension.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection

from outcomes import models as m

HLL_LG_K = 12  # 4,096 registers: relative standard error 1.04 / sqrt(4096) ≈ 1.6%
COMPACT_LOCK = 0x6F75_7463  # pg advisory lock key shared by compaction and rebuild

MEASURES = ("outcomes", "wins", "enriched_outcomes", "enriched_wins", "revenue_cents", "bid_cents", "won_bid_cents")
PRICE_COUNTS = ("won_at_win_price", "won_at_bid_price", "lost_at_bid_price")
UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True)
class Grain:
    family: str
    unit: str
    model: type
    dims: tuple[str, ...]

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
    Grain("domain", "hour", m.DomainRollupHour, ("site_domain",)),
    Grain("domain", "day", m.DomainRollupDay, ("site_domain",)),
    Grain("interest", "hour", m.InterestRollupHour, ("interest",)),
    Grain("price", "hour", m.PriceRollupHour, ("cents",)),
    Grain("price", "day", m.PriceRollupDay, ("cents",)),
    Grain("reach", "hour", m.ReachRollupHour, ()),
    Grain("reach", "day", m.ReachRollupDay, ()),
)
FAMILIES: dict[str, dict[str, Grain]] = {}
for _grain in GRAINS:
    FAMILIES.setdefault(_grain.family, {})[_grain.unit] = _grain
# Which filters each family can apply itself (win_status works everywhere, via the measures).
FAMILY_FILTERS = {
    "outcomes": {"currency", "enriched"},
    "domain": {"site_domain"},
    "interest": set(),
    "price": set(),
    "reach": set(),
}


def truncate(moment: datetime, unit: str) -> datetime:
    if unit == "minute":
        return moment.replace(second=0, microsecond=0)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


# ---------------------------------------------------------------------------- deltas (pure)
@dataclass(frozen=True, slots=True)
class Fact:
    """What a rollup needs of one stored outcome."""

    event_time: datetime
    user_id: str
    site_domain: str | None
    win_status: bool
    win_cents: int
    bid_cents: int
    currency: str
    enriched: bool
    interests: tuple[str, ...]


def _hll():
    import datasketches

    return datasketches.hll_sketch(HLL_LG_K, datasketches.tgt_hll_type.HLL_8)


@dataclass
class Deltas:
    """The rollup rows one write appends: {grain: {key: values}} (+ reach sketches)."""

    sign: int = 1
    minute: dict = field(default_factory=dict)
    domain_hour: dict = field(default_factory=dict)
    interest_hour: dict = field(default_factory=dict)
    price_hour: dict = field(default_factory=dict)
    reach_hour: dict = field(default_factory=dict)  # hour -> hll sketch
    touched_hours: set = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.minute)

    def add(self, facts: Iterable[Fact], *, sketches: bool = True) -> Deltas:
        minute, domain, interest, price, reach = (
            self.minute,
            self.domain_hour,
            self.interest_hour,
            self.price_hour,
            self.reach_hour,
        )
        for f in facts:
            at = f.event_time
            hour = at.replace(minute=0, second=0, microsecond=0)
            won = f.win_status
            bid = f.bid_cents
            if won:
                win = f.win_cents
                vec = (1, 1, 1, 1, win, bid, bid) if f.enriched else (1, 1, 0, 0, win, bid, bid)
                pw = price.get((hour, win))
                if pw is None:
                    price[(hour, win)] = [1, 0, 0]
                else:
                    pw[0] += 1
                pb = price.get((hour, bid))
                if pb is None:
                    price[(hour, bid)] = [0, 1, 0]
                else:
                    pb[1] += 1
            else:
                vec = (1, 0, 1, 0, 0, bid, 0) if f.enriched else (1, 0, 0, 0, 0, bid, 0)
                pb = price.get((hour, bid))
                if pb is None:
                    price[(hour, bid)] = [0, 0, 1]
                else:
                    pb[2] += 1
            _accumulate(minute, (at.replace(second=0, microsecond=0), f.currency, f.enriched), vec)
            _accumulate(domain, (hour, f.site_domain or ""), vec)
            for name in f.interests or ("",):
                _accumulate(interest, (hour, name), vec)
            if sketches:
                sketch = reach.get(hour)
                if sketch is None:
                    sketch = reach[hour] = _hll()
                sketch.update(f.user_id)
            self.touched_hours.add(hour)
        return self

    def rows(self) -> dict[Grain, list[tuple]]:
        """Rows per grain, coarser grains derived from the finest, signed."""
        s = self.sign
        out: dict[Grain, list[tuple]] = {}
        fam = FAMILIES
        minute_rows = _signed(self.minute, s)
        out[fam["outcomes"]["minute"]] = minute_rows
        out[fam["outcomes"]["hour"]] = _signed(_coarsen(self.minute, "hour"), s)
        out[fam["outcomes"]["day"]] = _signed(_coarsen(self.minute, "day"), s)
        out[fam["domain"]["hour"]] = _signed(self.domain_hour, s)
        out[fam["domain"]["day"]] = _signed(_coarsen(self.domain_hour, "day"), s)
        out[fam["interest"]["hour"]] = _signed(self.interest_hour, s)
        out[fam["price"]["hour"]] = _signed(self.price_hour, s)
        out[fam["price"]["day"]] = _signed(_coarsen(self.price_hour, "day"), s)
        if self.reach_hour and s > 0:
            import datasketches

            days: dict = {}
            for hour, sketch in self.reach_hour.items():
                union = days.get(truncate(hour, "day"))
                if union is None:
                    union = days[truncate(hour, "day")] = datasketches.hll_union(HLL_LG_K)
                union.update(sketch)
            out[fam["reach"]["hour"]] = [(h, sk.serialize_compact()) for h, sk in self.reach_hour.items()]
            out[fam["reach"]["day"]] = [
                (d, u.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact()) for d, u in days.items()
            ]
        return out


def _accumulate(target: dict, key: tuple, vec: tuple) -> None:
    acc = target.get(key)
    if acc is None:
        target[key] = list(vec)
    else:
        for i, v in enumerate(vec):
            acc[i] += v


def _coarsen(rows: dict, unit: str) -> dict:
    out: dict = {}
    for key, vec in rows.items():
        _accumulate(out, (truncate(key[0], unit), *key[1:]), vec)
    return out


def _signed(rows: dict, sign: int) -> list[tuple]:
    if sign > 0:
        return [(*key, *vec) for key, vec in rows.items()]
    return [(*key, *(-v for v in vec)) for key, vec in rows.items()]


# ---------------------------------------------------------------------------- writing
def append(cursor, deltas: Deltas) -> None:
    """Append a write's deltas to every rollup table (inside the caller's transaction)."""
    if not deltas:
        return
    for grain, rows in deltas.rows().items():
        if rows:
            _copy(cursor, grain, rows)


def _copy(cursor, grain: Grain, rows: list[tuple]) -> None:
    columns = ("bucket", *grain.dims, *grain.values)
    buffer = "".join("\t".join(_text(v) for v in row) + "\n" for row in rows)
    with connection.wrap_database_errors:
        cursor.copy_expert(
            f"COPY {grain.table} ({', '.join(columns)}) FROM STDIN", io.StringIO(buffer), max(8192, len(buffer) + 1)
        )


def _text(value) -> str:
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    if isinstance(value, str):
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        return value
    return str(value)


def rebuild_reach_buckets(cursor, hours: Iterable[datetime]) -> None:
    """Recompute the reach sketches of these hours (and their days) from the raw rows.

    Used after deletes and updates, which a HyperLogLog sketch cannot subtract. The sketch
    rows are deleted first and the raw rows read after, so a write committed in between is
    either in the raw read or keeps its own sketch row (a sketch union is idempotent).
    """
    hours = sorted(set(hours))
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
            sketch = sketches[hour] = _hll()
            for (user,) in users:
                sketch.update(user)
    return sketches


# ---------------------------------------------------------------------------- compaction
def compact(*, max_keys: int = 50_000) -> dict[str, int]:
    """Merge each key's partial rows into one. Safe beside concurrent writers; returns rows merged per table.

    Skips (returns {}) if another process is compacting or rebuilding right now.
    """
    merged: dict[str, int] = {}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [COMPACT_LOCK])
        if not cursor.fetchone()[0]:
            return merged
        try:
            for grain in GRAINS:
                if grain.family == "reach":
                    merged[grain.table] = _compact_reach(cursor, grain, max_keys)
                else:
                    merged[grain.table] = _compact_sums(cursor, grain, max_keys)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [COMPACT_LOCK])
    return merged


def _compact_sums(cursor, grain: Grain, max_keys: int) -> int:
    keys = ("bucket", *grain.dims)
    key_list = ", ".join(keys)
    join = " AND ".join(f"t.{k} = k.{k}" for k in keys)
    sums = ", ".join(f"sum({v})" for v in grain.values)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in grain.values)
    cursor.execute(
        f"""
        WITH k AS (SELECT DISTINCT {key_list} FROM {grain.table} WHERE pending LIMIT {int(max_keys)}),
        moved AS (DELETE FROM {grain.table} t USING k WHERE {join} RETURNING t.*),
        merged AS (
            INSERT INTO {grain.table} ({key_list}, {", ".join(grain.values)}, pending)
            SELECT {key_list}, {sums}, false FROM moved GROUP BY {key_list} HAVING {nonzero}
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM moved)
        """
    )
    return cursor.fetchone()[0]


def _compact_reach(cursor, grain: Grain, max_keys: int) -> int:
    import datasketches

    cursor.execute(f"SELECT DISTINCT bucket FROM {grain.table} WHERE pending LIMIT {int(max_keys)}")
    buckets = [row[0] for row in cursor.fetchall()]
    if not buckets:
        return 0
    cursor.execute(f"DELETE FROM {grain.table} WHERE bucket = ANY(%s) RETURNING bucket, sketch", [buckets])
    unions: dict = {}
    moved = 0
    for bucket, blob in cursor.fetchall():
        moved += 1
        unions.setdefault(bucket, datasketches.hll_union(HLL_LG_K)).update(
            datasketches.hll_sketch.deserialize(bytes(blob))
        )
    rows = [(b, u.get_result(datasketches.tgt_hll_type.HLL_8).serialize_compact(), False) for b, u in unions.items()]
    columns = ("bucket", "sketch", "pending")
    buffer = "".join("\t".join(_text(v) for v in row) + "\n" for row in rows)
    with connection.wrap_database_errors:
        cursor.copy_expert(f"COPY {grain.table} ({', '.join(columns)}) FROM STDIN", io.StringIO(buffer))
    return moved


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


def _raw_select(grain: Grain, since: datetime | None, until: datetime | None) -> tuple[str, list]:
    """SQL computing ``grain``'s rows from the raw table, over [since, until)."""
    bucket = f"date_trunc('{grain.unit}', event_time, 'UTC')"
    where, params = ["true"], []
    if since is not None:
        where.append("event_time >= %s")
        params.append(since)
    if until is not None:
        where.append("event_time < %s")
        params.append(until)
    cond = " AND ".join(where)
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
    where, params = ["true"], []
    if since is not None:
        where.append("bucket >= %s")
        params.append(since)
    if until is not None:
        where.append("bucket < %s")
        params.append(until)
    keys = ", ".join(("bucket", *grain.dims))
    sums = ", ".join(f"sum({v})::bigint" for v in grain.values)
    nonzero = " OR ".join(f"sum({v}) <> 0" for v in grain.values)
    sql = f"SELECT {keys}, {sums} FROM {grain.table} WHERE {' AND '.join(where)} GROUP BY {keys} HAVING {nonzero}"
    return sql, params


@dataclass
class Difference:
    table: str
    key: tuple
    stored: tuple | None
    expected: tuple | None


def verify(*, since: datetime | None = None, until: datetime | None = None) -> list[Difference]:
    """Every difference between the rollups and what the raw rows say, over [since, until).

    Buckets are compared whole: ``since`` is rounded down to the day.
    """
    since = truncate(since.astimezone(UTC), "day") if since else None
    differences: list[Difference] = []
    with connection.cursor() as cursor:
        for grain in GRAINS:
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

    where, params = ["true"], []
    if since is not None:
        where.append("bucket >= %s")
        params.append(since)
    if until is not None:
        where.append("bucket < %s")
        params.append(until)
    cursor.execute(f"SELECT bucket, sketch FROM {grain.table} WHERE {' AND '.join(where)}", params)
    stored: dict = {}
    for bucket, blob in cursor.fetchall():
        stored.setdefault(bucket, datasketches.hll_union(HLL_LG_K)).update(
            datasketches.hll_sketch.deserialize(bytes(blob))
        )
    raw_where = " AND ".join(w.replace("bucket", "event_time") for w in where)
    expected = {}
    cursor.execute(
        f"SELECT DISTINCT date_trunc('{grain.unit}', event_time, 'UTC'), user_id FROM {_RAW} WHERE {raw_where}", params
    )
    for bucket, user in cursor.fetchall():
        sketch = expected.get(bucket)
        if sketch is None:
            sketch = expected[bucket] = _hll()
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


def _union_estimate(sketches: list) -> float:
    import datasketches

    union = datasketches.hll_union(HLL_LG_K)
    for sketch in sketches:
        union.update(sketch)
    return union.get_result().get_estimate()


def rebuild(*, since: datetime | None = None, until: datetime | None = None, chunk: timedelta = UNITS["day"]) -> int:
    """Recompute every rollup from the raw rows over [since, until), one ``chunk`` per transaction.

    Online: each chunk is replaced by one statement (one snapshot), so writes committed
    meanwhile are neither lost nor doubled. ``since`` is rounded down to the day; without it
    the rebuild starts at the oldest raw row. Returns the number of chunks rebuilt.
    """
    from django.db import transaction

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min(event_time), max(event_time) FROM {_RAW}")
        oldest, newest = cursor.fetchone()
    if oldest is None and since is None:
        return 0
    start = truncate((since or oldest).astimezone(UTC), "day")
    stop = until or (truncate(newest, "day") + UNITS["day"] if newest else start + UNITS["day"])
    chunks = 0
    while start < stop:
        end = min(start + chunk, stop)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [COMPACT_LOCK])
            for grain in GRAINS:
                if grain.family == "reach":
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
        chunks += 1
        start = end
    return chunks
