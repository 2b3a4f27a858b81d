"""The rollup catalogue: every grain the service keeps, declared once.

A grain is a table of pre-aggregated outcomes: a family (what it answers), a time unit, the
dimensions its rows are keyed by and the values they sum. Everything else is derived from
these declarations:

* the rollup models and their indexes (``outcomes.models``), so a migration follows from
  ``makemigrations``;
* the SQL a write appends its deltas with, and the SQL that recomputes a grain from the raw
  rows for ``verify`` and ``rebuild`` (``outcomes.rollups``);
* which filters each family applies itself (the query planner's choice);
* the table in the architecture documentation (``catalogue_table``).

Adding a grain is one declaration in ``GRAINS``, ``makemigrations``, and a test: see
docs/architecture.md, "Adding a rollup grain".

Pure: no Django, no database. The SQL fragments read the columns of ``DELTA_COLUMNS``: every
grain is computed from rows of that shape, whether they are a write's new rows, a delete's
``RETURNING`` or the raw table.
"""

from __future__ import annotations

from dataclasses import dataclass

from outcomes.buckets import ALL_TIME

# The shape every grain is computed from: one row per outcome, money in cents, no NULL domain
# or experiment tags ('' for none).
DELTA_COLUMNS = (
    "event_time, coalesce(site_domain, '') AS site_domain, win_status, (win_price * 100)::bigint AS w, "
    "(bid_price * 100)::bigint AS bd, currency, enriched, user_interests, "
    "coalesce(experiment, '') AS experiment, coalesce(variant, '') AS variant, user_id"
)


@dataclass(frozen=True)
class Dimension:
    """A key column of a grain: its name, SQL over a delta row (after the grain's
    ``expand``), its column type and whether a report filter of that name can use it."""

    name: str
    sql: str
    kind: str  # "text", "currency", "boolean", "cents", "slug"
    filter: bool = False
    help: str = ""


@dataclass(frozen=True)
class Values:
    """What a grain's rows sum: column names, each one's aggregate over delta rows, and help."""

    names: tuple[str, ...]
    aggregates: tuple[str, ...]
    helps: tuple[str, ...]
    kind: str = "sums"  # "sums" (bigint columns) or "sketch" (a HyperLogLog, kept by Python)
    # Sums that may outgrow a bigint (squares of cents): exact numeric columns.
    wide: frozenset[str] = frozenset()

    def total(self, name: str) -> str:
        """SQL summing column ``name`` of several rows, in the column's own type."""
        return f"sum({name})" if name in self.wide else f"sum({name})::bigint"


MEASURES = Values(
    names=("outcomes", "wins", "enriched_outcomes", "enriched_wins", "revenue_cents", "bid_cents", "won_bid_cents"),
    aggregates=(
        "count(*)",
        "count(*) FILTER (WHERE win_status)",
        "count(*) FILTER (WHERE enriched)",
        "count(*) FILTER (WHERE enriched AND win_status)",
        "coalesce(sum(w) FILTER (WHERE win_status), 0)",
        "coalesce(sum(bd), 0)",
        "coalesce(sum(bd) FILTER (WHERE win_status), 0)",
    ),
    helps=(
        "",
        "",
        "",
        "",
        "Sum of win_price over won auctions.",
        "Sum of bid_price over all outcomes.",
        "Sum of bid_price over won auctions.",
    ),
)
# The measures and the second moments of the money an experiment's results need for their
# variances (the delta method): squares and the cross product of win and bid prices over won
# auctions, in cents², exact. A variance from sums of squares is a difference of large numbers,
# which floating point would get wrong; numeric does not.
MOMENTS = ("revenue_sq", "won_bid_sq", "revenue_won_bid")
EXPERIMENT_MEASURES = Values(
    names=MEASURES.names + MOMENTS,
    aggregates=MEASURES.aggregates
    + (
        "coalesce(sum(w::numeric * w) FILTER (WHERE win_status), 0)",
        "coalesce(sum(bd::numeric * bd) FILTER (WHERE win_status), 0)",
        "coalesce(sum(w::numeric * bd) FILTER (WHERE win_status), 0)",
    ),
    helps=MEASURES.helps
    + (
        "Sum of win_price² over won auctions (cents²).",
        "Sum of bid_price² over won auctions (cents²).",
        "Sum of win_price × bid_price over won auctions (cents²).",
    ),
    wide=frozenset(MOMENTS),
)
# A user's outcomes in an experiment: the per-user sums a user-level analysis needs.
USER_MEASURES = Values(
    names=("outcomes", "wins", "revenue_cents", "won_bid_cents"),
    aggregates=(
        "count(*)",
        "count(*) FILTER (WHERE win_status)",
        "coalesce(sum(w) FILTER (WHERE win_status), 0)",
        "coalesce(sum(bd) FILTER (WHERE win_status), 0)",
    ),
    helps=("", "", "Sum of win_price over won auctions.", "Sum of bid_price over won auctions."),
)
PRICE_COUNTS = Values(
    names=("won_at_win_price", "won_at_bid_price", "lost_at_bid_price"),
    aggregates=("sum(p.ww)", "sum(p.wb)", "sum(p.lb)"),
    helps=(
        "Won auctions whose win_price is `cents`.",
        "Won auctions whose bid_price is `cents`.",
        "Lost auctions whose bid_price is `cents`.",
    ),
)
SKETCH = Values(names=("sketch",), aggregates=(), helps=("",), kind="sketch")
# The bid landscape: per price bucket, the outcomes that bid in it, those of them won, and the
# won auctions that paid a price in it (a second-price auction's market price).
LANDSCAPE_COUNTS = Values(
    names=("bids", "bid_wins", "paid"),
    aggregates=("sum(p.b)", "sum(p.bw)", "sum(p.pd)"),
    helps=(
        "Outcomes whose bid_price is in the bucket.",
        "Won auctions whose bid_price is in the bucket.",
        "Won auctions whose win_price is in the bucket.",
    ),
)

# Price buckets of the bid landscape, by their lower bound in cents: 1 cent wide below 5.00,
# then 5 cents to 20.00, 50 cents to 100.00, 5.00 to 1,000.00, 100.00 above. Fine enough for a
# curve where bids are, few enough rows where they are not.
Steps = tuple[tuple[int | None, int], ...]
PRICE_STEPS: Steps = ((500, 1), (2000, 5), (10000, 50), (100000, 500), (None, 10000))
# Per site domain, ten times coarser below 1,000.00: a domain's curve needs fewer points, and a
# batch's rows per domain and bucket would otherwise outnumber its outcomes (the long tail of
# domains sees a handful of bids each), which every write would pay for.
DOMAIN_PRICE_STEPS: Steps = ((500, 10), (2000, 50), (10000, 500), (100000, 5000), (None, 10000))


def price_bucket_sql(cents: str, steps: Steps = PRICE_STEPS) -> str:
    """SQL: the lower bound (cents) of the landscape bucket of integer cents ``cents`` (``mod``,
    not ``%``: the statements go through the driver's parameter formatting)."""
    cases = " ".join(
        f"WHEN {cents} < {upper} THEN {cents}" + (f" - mod({cents}, {step})" if step > 1 else "")
        for upper, step in steps
        if upper is not None
    )
    return f"(CASE {cases} ELSE {cents} - mod({cents}, {steps[-1][1]}) END)"


def price_width_sql(cents: str, steps: Steps = PRICE_STEPS) -> str:
    """SQL: the width (cents) of the landscape bucket whose lower bound is ``cents``."""
    cases = " ".join(f"WHEN {cents} < {upper} THEN {step}" for upper, step in steps if upper is not None)
    return f"(CASE {cases} ELSE {steps[-1][1]} END)"


def price_bucket(cents: int, steps: Steps = PRICE_STEPS) -> tuple[int, int]:
    """The landscape bucket of ``cents``: (lower bound, width), in cents."""
    for upper, step in steps:
        if upper is None or cents < upper:
            return cents - cents % step, step
    raise AssertionError("unreachable")


# Dimensions shared by several grains.
CURRENCY = Dimension("currency", "currency", "currency", filter=True)
ENRICHED = Dimension("enriched", "enriched", "boolean", filter=True)
SITE_DOMAIN = Dimension(
    "site_domain", "site_domain", "text", filter=True, help="'' for outcomes without a site domain."
)
INTEREST = Dimension("interest", "coalesce(i.value, '')", "text", help="'' for outcomes without interests.")
CENTS = Dimension("cents", "p.cents", "cents")
PRICE_BUCKET = Dimension("cents", "p.cents", "cents", help="The price bucket's lower bound, in cents.")
EXPERIMENT = Dimension("experiment", "experiment", "slug", filter=True, help="'' for outcomes no experiment tagged.")
VARIANT = Dimension("variant", "variant", "slug", filter=True, help="'' for outcomes no experiment tagged.")
USER = Dimension("user_id", "user_id", "text", filter=True)


@dataclass(frozen=True)
class Expansion:
    """Several rows of one outcome: a lateral join (``sql``), or ``copies`` of the rows as a
    union of filtered scans, each a select list (after the bucket) and the condition of the
    outcomes it applies to, read as relation ``alias``. Three filtered scans of a batch's
    rows take a third of the time of a lateral ``VALUES`` per row (3 ms against 10.5 ms for
    10,000 rows, PostgreSQL 15), which ingestion feels."""

    sql: str = ""
    copies: tuple[tuple[str, str], ...] = ()
    alias: str = ""


# One outcome as one row per interest ('' when it has none) …
EACH_INTEREST = Expansion("LEFT JOIN LATERAL jsonb_array_elements_text(user_interests) i(value) ON true")
# … or as the prices it reports: its win price if won, its bid price won or lost.
EACH_PRICE = Expansion(
    copies=(
        ("w AS cents, 1 AS ww, 0 AS wb, 0 AS lb", "win_status"),
        ("bd, 0, 1, 0", "win_status"),
        ("bd, 0, 0, 1", "NOT win_status"),
    ),
    alias="p",
)


# … or as its bid's bucket (every outcome) and its win price's bucket (won ones).
def _bid_and_paid(steps: Steps) -> Expansion:
    return Expansion(
        copies=(
            (f"{price_bucket_sql('bd', steps)} AS cents, 1 AS b, win_status::int AS bw, 0 AS pd", "true"),
            (f"{price_bucket_sql('w', steps)}, 0, 0, 1", "win_status"),
        ),
        alias="p",
    )


EACH_BID_AND_PAID = _bid_and_paid(PRICE_STEPS)
EACH_BID_AND_PAID_BY_DOMAIN = _bid_and_paid(DOMAIN_PRICE_STEPS)
NO_EXPANSION = Expansion()


@dataclass(frozen=True)
class Grain:
    family: str
    unit: str  # "minute", "hour", "day" or "all" (one bucket: 1970-01-01)
    model: str  # the model class (``outcomes.models``); its table is ``table``
    table: str
    dimensions: tuple[Dimension, ...]
    values: Values = MEASURES
    expand: Expansion = NO_EXPANSION
    # How writes reach it: computed from their rows (None); summed in the same statement from
    # a finer grain's deltas (``summed_from``, "family.unit"); or, for day and all-time grains
    # read less often, folded by compaction from a finer grain (``folded_from``, a unit).
    summed_from: str | None = None
    folded_from: str | None = None
    pending_index: bool = False  # readers of a grain folded from this one add its pending rows
    # Only the outcomes this SQL condition over a delta row holds for ('' : all of them).
    where: str = ""
    by_bucket: bool = False  # also indexed by bucket alone (reports with no filter on the dimension)
    doc: str = ""

    @property
    def key(self) -> str:
        return f"{self.family}.{self.unit}"

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    @property
    def filters(self) -> frozenset[str]:
        return frozenset(d.name for d in self.dimensions if d.filter)

    @property
    def pending_source(self) -> Grain | None:
        return FAMILIES[self.family][self.folded_from] if self.folded_from else None

    @property
    def written_by_rows(self) -> bool:
        return self.values.kind == "sums" and not self.summed_from and not self.folded_from


GRAINS: tuple[Grain, ...] = (
    Grain("outcomes", "minute", "OutcomeRollupMinute", "outcomes_rollup_minute", (CURRENCY, ENRICHED)),
    Grain(
        "outcomes",
        "hour",
        "OutcomeRollupHour",
        "outcomes_rollup_hour",
        (CURRENCY, ENRICHED),
        summed_from="outcomes.minute",
    ),
    Grain(
        "outcomes",
        "day",
        "OutcomeRollupDay",
        "outcomes_rollup_day",
        (CURRENCY, ENRICHED),
        summed_from="outcomes.minute",
    ),
    Grain(
        "total",
        "minute",
        "TotalRollupMinute",
        "outcomes_rollup_total_minute",
        (),
        summed_from="outcomes.minute",
        doc="Every outcome per minute, no dimension: a day of minutes is 1,440 rows here, where the "
        "currency × enriched grain holds one per combination (a time series with neither filter).",
    ),
    Grain(
        "domain",
        "hour",
        "DomainRollupHour",
        "outcomes_rollup_domain_hour",
        (SITE_DOMAIN, CURRENCY),
        pending_index=True,
        by_bucket=True,
    ),
    Grain(
        "domain",
        "day",
        "DomainRollupDay",
        "outcomes_rollup_domain_day",
        (SITE_DOMAIN, CURRENCY),
        folded_from="hour",
        by_bucket=True,
    ),
    Grain(
        "domain",
        "all",
        "DomainRollupTotal",
        "outcomes_rollup_domain_total",
        (SITE_DOMAIN, CURRENCY),
        folded_from="hour",
        doc="All time per domain (``bucket`` is always 1970-01-01): unbounded domain reports read "
        "~2,000 rows here instead of a row per domain and day.",
    ),
    Grain(
        "interest",
        "hour",
        "InterestRollupHour",
        "outcomes_rollup_interest_hour",
        (INTEREST, CURRENCY),
        expand=EACH_INTEREST,
    ),
    Grain(
        "price",
        "hour",
        "PriceRollupHour",
        "outcomes_rollup_price_hour",
        (CENTS,),
        PRICE_COUNTS,
        expand=EACH_PRICE,
        pending_index=True,
    ),
    Grain(
        "price",
        "day",
        "PriceRollupDay",
        "outcomes_rollup_price_day",
        (CENTS,),
        PRICE_COUNTS,
        expand=EACH_PRICE,
        folded_from="hour",
    ),
    Grain(
        "price",
        "all",
        "PriceRollupTotal",
        "outcomes_rollup_price_total",
        (CENTS,),
        PRICE_COUNTS,
        expand=EACH_PRICE,
        folded_from="hour",
        doc="All time (``bucket`` is always 1970-01-01): unbounded percentiles read one row per price.",
    ),
    Grain(
        "experiment",
        "hour",
        "ExperimentRollupHour",
        "outcomes_rollup_experiment_hour",
        (EXPERIMENT, VARIANT, CURRENCY),
        EXPERIMENT_MEASURES,
        doc="Per experiment, variant and currency by hour: experiments' results and reports filtered by "
        "experiment. Untagged outcomes add one row per hour and currency (experiment ''). The second "
        "moments of the money give the results' variances.",
    ),
    Grain(
        "experiment_user",
        "day",
        "ExperimentUserRollupDay",
        "outcomes_rollup_experiment_user_day",
        (EXPERIMENT, VARIANT, CURRENCY, USER),
        USER_MEASURES,
        where="experiment <> ''",
        pending_index=True,
        doc="Per experiment, variant, currency and user by UTC day, tagged outcomes only: the exact "
        "per-user sums the results of an experiment randomised by user are computed from.",
    ),
    Grain(
        "experiment_user",
        "all",
        "ExperimentUserRollupTotal",
        "outcomes_rollup_experiment_user_total",
        (EXPERIMENT, VARIANT, CURRENCY, USER),
        USER_MEASURES,
        where="experiment <> ''",
        folded_from="day",
        doc="All time per experiment, variant, currency and user (``bucket`` is always 1970-01-01): an "
        "experiment's whole run reads one row per user, and a window from its start to now the same "
        "minus what lies outside it.",
    ),
    Grain(
        "landscape",
        "hour",
        "LandscapeRollupHour",
        "outcomes_rollup_bids_hour",
        (CURRENCY, PRICE_BUCKET),
        LANDSCAPE_COUNTS,
        expand=EACH_BID_AND_PAID,
        pending_index=True,
        doc="The bid landscape by currency and price bucket per hour: win rate by bid, market prices.",
    ),
    Grain(
        "landscape",
        "day",
        "LandscapeRollupDay",
        "outcomes_rollup_bids_day",
        (CURRENCY, PRICE_BUCKET),
        LANDSCAPE_COUNTS,
        expand=EACH_BID_AND_PAID,
        folded_from="hour",
    ),
    Grain(
        "landscape",
        "all",
        "LandscapeRollupTotal",
        "outcomes_rollup_bids_total",
        (CURRENCY, PRICE_BUCKET),
        LANDSCAPE_COUNTS,
        expand=EACH_BID_AND_PAID,
        folded_from="hour",
        doc="All time (``bucket`` is always 1970-01-01): a landscape over most of the stored time reads one "
        "row per currency and price, less what lies outside its window.",
    ),
    Grain(
        "landscape_domain",
        "day",
        "LandscapeDomainRollupDay",
        "outcomes_rollup_bids_site_day",
        (SITE_DOMAIN, CURRENCY, PRICE_BUCKET),
        LANDSCAPE_COUNTS,
        expand=EACH_BID_AND_PAID_BY_DOMAIN,
        by_bucket=True,
        doc="The bid landscape per site domain, currency and (coarser) price bucket by UTC day: one "
        "domain's curve, and the segments bid models are fitted on.",
    ),
    Grain("reach", "hour", "ReachRollupHour", "outcomes_rollup_reach_hour", (), SKETCH),
    Grain("reach", "day", "ReachRollupDay", "outcomes_rollup_reach_day", (), SKETCH),
)
FAMILIES: dict[str, dict[str, Grain]] = {}
for _grain in GRAINS:
    FAMILIES.setdefault(_grain.family, {})[_grain.unit] = _grain
BY_KEY: dict[str, Grain] = {grain.key: grain for grain in GRAINS}
# Which filters each family can apply itself (win_status works everywhere, via the measures).
FAMILY_FILTERS: dict[str, frozenset[str]] = {
    family: frozenset().union(*(g.filters for g in grains.values())) for family, grains in FAMILIES.items()
}
# The price buckets of each landscape family.
LANDSCAPE_STEPS: dict[str, Steps] = {"landscape": PRICE_STEPS, "landscape_domain": DOMAIN_PRICE_STEPS}
# What each family answers, for the documentation table.
ANSWERS = {
    "outcomes": "totals and series with win_status, currency, enriched filters",
    "total": "minute series without those filters",
    "domain": "site_domain filter (with win_status, currency); breakdown by site_domain",
    "interest": "breakdown by interest",
    "price": "exact percentiles and histograms",
    "experiment": "experiment and variant filters (with win_status, currency); results of experiments by auction",
    "experiment_user": "results of experiments randomised by user (per-user sums)",
    "landscape": "the bid landscape (currency, start, end filters)",
    "landscape_domain": "the bid landscape of a site domain; bid models' segments",
    "reach": "distinct users (HyperLogLog sketches)",
}
# The grain whose deltas say which hours a write touched (every outcome has a row there).
COUNTED = BY_KEY["outcomes.minute"]


def bucket_sql(unit: str, column: str) -> str:
    """SQL for the ``unit`` bucket of timestamp ``column``."""
    if unit == "all":
        return f"'{ALL_TIME.isoformat()}'::timestamptz"
    return f"date_trunc('{unit}', {column}, 'UTC')"


def catalogue_table() -> str:
    """The catalogue as a Markdown table (docs/architecture.md carries it; a test compares)."""
    lines = [
        "The measures: " + ", ".join(MEASURES.names) + ".",
        "",
        "| family | grain | dimensions | values | how writes reach it | answers |",
        "|---|---|---|---|---|---|",
    ]
    for family, grains in FAMILIES.items():
        for grain in grains.values():
            if grain.values.kind == "sketch":
                how = "a sketch per write, merged by compaction"
            elif grain.summed_from:
                how = f"summed from {grain.summed_from} in the write"
            elif grain.folded_from:
                how = f"folded from {family}.{grain.folded_from} by compaction"
            else:
                how = "computed from the written rows"
                if grain.where:
                    how += f" where `{grain.where}`"
            dims = ", ".join(grain.dims) or "—"
            if grain.values is MEASURES:
                values = "the measures"
            elif grain.values.names[: len(MEASURES.names)] == MEASURES.names:
                values = "the measures, " + ", ".join(grain.values.names[len(MEASURES.names) :])
            else:
                values = ", ".join(grain.values.names)
            lines.append(f"| {family} | {grain.unit} | {dims} | {values} | {how} | {ANSWERS[family]} |")
    return "\n".join(lines)
