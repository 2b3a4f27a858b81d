"""Tables of the outcomes app: the auction outcomes themselves and what ingestion owns.

Indexes are chosen for the queries this service runs, because every index is paid for on
each ingested row (on PostgreSQL, ``db_index=True`` on a CharField adds a second ``_like``
index too, so no field here uses it). Each composite index's leading column also serves a
plain equality filter on that column, so no single-column indexes are needed:

=============================  ===========================================================
index                          queries it serves
=============================  ===========================================================
bid_id (unique constraint)     idempotent ingestion (``ON CONFLICT (bid_id)``), search by bid id
-timestamp, -id                the default list order and its keyset (cursor) pages
user_id, -timestamp            ``?user_id=`` lists and per-user reports (raw, small)
site_domain, -timestamp        ``?site_domain=`` lists and per-domain raw reports
event_time, id                 ``start``/``end`` on the raw table, ``ordering=event_time``
win_price, id                  ``ordering=win_price``, ``min_price``/``max_price`` ranges
bid_price, id                  ``ordering=bid_price``
site_domain, sample            percentiles and histograms of large ``site_domain`` sets, from
  (sample < 256, covering)     a uniform sample (``outcomes.queries``); partial: 1/4 of rows
sample, event_time             the same for other filters the price rollups lack
  (sample < 256, covering)
=============================  ===========================================================

Counts, totals, time series and breakdowns are not read from this table at all when the
filters allow: the rollup tables below answer them (``outcomes.rollups``).
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import F, Func, Q
from django.db.models.functions import Cast, Coalesce
from rest_framework_api_key.models import AbstractAPIKey

from outcomes import grains
from outcomes.validation import (
    CURRENCY_LENGTH,
    DEFAULT_CURRENCY,
    MAX_TEXT_LENGTH,
    PRICE_DIGITS,
    PRICE_PLACES,
    SLUG_LENGTH,
)

SAMPLE_BUCKETS = 1024  # ``sample`` is in [0, SAMPLE_BUCKETS)
SAMPLE_INDEXED = 256  # the sample indexes hold the rows with sample < SAMPLE_INDEXED (1/4)
_PRICES = ["event_time", "win_status", "win_price", "bid_price", "currency", "enriched"]


class AuctionOutcome(models.Model):
    # Primary identifiers
    bid_id = models.CharField(max_length=MAX_TEXT_LENGTH)
    user_id = models.CharField(max_length=MAX_TEXT_LENGTH)
    site_domain = models.CharField(max_length=MAX_TEXT_LENGTH, null=True, blank=True)

    # Auction results
    win_status = models.BooleanField(default=False)
    win_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    bid_price = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    currency = models.CharField(max_length=CURRENCY_LENGTH, default=DEFAULT_CURRENCY)

    # Enrichment data
    enriched = models.BooleanField(default=False)
    user_interests = models.JSONField(default=list, blank=True)

    # An experiment's key and the variant this auction served, when the bidder tagged it
    # (both or neither; registered or not: see ``Experiment``).
    experiment = models.CharField(max_length=SLUG_LENGTH, null=True, blank=True)
    variant = models.CharField(max_length=SLUG_LENGTH, null=True, blank=True)

    # Timestamps: `timestamp` is when the outcome was stored, `auction_timestamp` when the
    # auction ran (from the message; may be absent).
    timestamp = models.DateTimeField(auto_now_add=True)
    auction_timestamp = models.DateTimeField(null=True, blank=True)

    # Metadata: the complete message as received.
    raw_data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # When the outcome happened, for every report and time filter: the auction time, else
    # the storage time. Computed by PostgreSQL on every insert (COPY included) and indexed.
    event_time = models.GeneratedField(
        expression=Coalesce("auction_timestamp", "timestamp"),
        output_field=models.DateTimeField(),
        db_persist=True,
    )
    # A hash of the bid id in [0, 1024): ``sample < k`` is a uniform sample of k/1024 of
    # any set of outcomes (bid ids are unique and unrelated to prices), which percentiles
    # of sets too large to sort in a request are computed from. Computed by PostgreSQL.
    sample = models.GeneratedField(
        expression=Cast(Func(F("bid_id"), function="hashtext").bitand(SAMPLE_BUCKETS - 1), models.SmallIntegerField()),
        output_field=models.SmallIntegerField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["-timestamp", "-id"]
        permissions = [("export_auctionoutcome", "Can export auction outcomes (every row, user ids included)")]
        constraints = [
            models.UniqueConstraint(fields=["bid_id"], name="outcome_bid_id_uniq"),
        ]
        indexes = [
            models.Index(fields=["-timestamp", "-id"], name="outcome_ts_id_idx"),
            models.Index(fields=["user_id", "-timestamp"], name="outcome_user_ts_idx"),
            models.Index(fields=["site_domain", "-timestamp"], name="outcome_domain_ts_idx"),
            models.Index(fields=["event_time", "id"], name="outcome_event_time_idx"),
            models.Index(fields=["win_price", "id"], name="outcome_win_price_idx"),
            models.Index(fields=["bid_price", "id"], name="outcome_bid_price_idx"),
            models.Index(
                fields=["site_domain", "sample"],
                include=_PRICES,
                condition=Q(sample__lt=SAMPLE_INDEXED),
                name="outcome_domain_sample_idx",
            ),
            models.Index(
                fields=["sample", "event_time"],
                include=_PRICES[1:],
                condition=Q(sample__lt=SAMPLE_INDEXED),
                name="outcome_sample_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bid_id} ({'win' if self.win_status else 'loss'})"

    @property
    def is_winner(self) -> bool:
        return bool(self.win_status)

    @property
    def profit_margin(self) -> float | None:
        """Share of the bid kept by winning below it, in percent: (bid - win) / bid * 100.

        In a first-price auction (win price = bid price) it is 0.0; in a second-price auction
        it is what the clearing price saved. It is None for a lost auction (nothing was bought)
        and for a zero bid.
        """
        if not self.win_status or not self.bid_price:
            return None
        margin = (Decimal(self.bid_price) - Decimal(self.win_price)) / Decimal(self.bid_price) * 100
        return float(round(margin, 2))


class ConsumerOffset(models.Model):
    """Next offset to read, per consumer group and partition.

    Written in the same transaction as each batch of outcomes, so the stored data and the
    position in the stream can never disagree (Druid's Kafka ingestion does the same). The
    consumer seeks here on every partition assignment.
    """

    consumer_group = models.CharField(max_length=MAX_TEXT_LENGTH)
    topic = models.CharField(max_length=MAX_TEXT_LENGTH)
    partition = models.IntegerField()
    next_offset = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer_group", "topic", "partition"], name="consumer_offset_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer_group} {self.topic}[{self.partition}] @ {self.next_offset}"


class DeadLetter(models.Model):
    """A message the consumer could not store, with why and where it came from.

    The raw key and value are kept byte for byte, so nothing is lost: after a fix,
    ``manage.py replay_dead_letters`` parses them again.
    """

    class Reason(models.TextChoices):
        EMPTY_MESSAGE = "empty_message", "Empty message"
        OVERSIZED = "oversized", "Message too large"
        UNDECODABLE_KEY = "undecodable_key", "Key is not UTF-8"
        UNDECODABLE_VALUE = "undecodable_value", "Value is not UTF-8"
        INVALID_JSON = "invalid_json", "Not JSON"
        NOT_AN_OBJECT = "not_an_object", "JSON is not an object"
        MISSING_FIELD = "missing_field", "Required field missing"
        WRONG_TYPE = "wrong_type", "Field has the wrong type"
        INVALID_VALUE = "invalid_value", "Field has an invalid value"
        NEGATIVE_PRICE = "negative_price", "Negative price"
        PRICE_ABOVE_BOUND = "price_above_bound", "Price above the sanity bound"
        INVALID_CURRENCY = "invalid_currency", "Currency is not a 3-letter code"
        INVALID_TIMESTAMP = "invalid_timestamp", "Timestamp is not ISO 8601"
        INVALID_EXPERIMENT = "invalid_experiment", "Experiment or variant missing or not a slug"
        CONFLICTING_DUPLICATE = "conflicting_duplicate", "Same bid id, different content"

    topic = models.CharField(max_length=MAX_TEXT_LENGTH)
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    kafka_timestamp = models.DateTimeField(null=True, blank=True)
    key = models.BinaryField(null=True, blank=True)
    value = models.BinaryField(null=True, blank=True)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    detail = models.TextField(blank=True, default="")
    consumer_group = models.CharField(max_length=MAX_TEXT_LENGTH, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("replay_deadletter", "Can replay dead letters (store the ones valid now)")]
        constraints = [
            models.UniqueConstraint(fields=["topic", "partition", "offset"], name="dead_letter_position_uniq"),
        ]
        indexes = [models.Index(fields=["reason", "-id"], name="dead_letter_reason_idx")]

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}: {self.reason}"


class ErasedUser(models.Model):
    """A user erased on request (``manage.py erase_user``): a tombstone the write service
    checks, so a late Kafka message or a replayed dead letter never stores them again. Only a
    keyed hash of the id (``analytics.privacy.user_hash`` with ``PRIVACY_HASH_KEY``) is kept."""

    user_hash = models.CharField(max_length=64, unique=True)
    erased_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "erased user"

    def __str__(self) -> str:
        return f"{self.user_hash[:12]}… erased {self.erased_at:%Y-%m-%d}"


class LostOffsets(models.Model):
    """Messages a consumer group never read because Kafka deleted them first: when a
    partition was assigned, its stored next offset lay before the partition's first offset
    (retention removed messages nobody had stored). Offsets ``[first_offset, end_offset)``
    are lost; the stored offset moved to ``end_offset`` in the same transaction as this row.
    """

    consumer_group = models.CharField(max_length=MAX_TEXT_LENGTH)
    topic = models.CharField(max_length=MAX_TEXT_LENGTH)
    partition = models.IntegerField()
    first_offset = models.BigIntegerField(help_text="The stored next offset, no longer in Kafka.")
    end_offset = models.BigIntegerField(help_text="The partition's first offset: reading resumed here.")
    detected_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "lost offset range"
        verbose_name_plural = "lost offset ranges"

    @property
    def messages(self) -> int:
        return self.end_offset - self.first_offset

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] offsets {self.first_offset}–{self.end_offset - 1} lost"


# ---------------------------------------------------------------------------- rollups
# Pre-aggregated outcomes, maintained by the write service (``outcomes.writes``) in the same
# transaction as the raw rows, so they are exact at every commit. Each write appends its own
# partial rows (``pending``); ``outcomes.rollups.compact`` later merges a key's rows into one.
# Readers always sum every row of a key, so partial and compacted rows give the same answer.
# Sums and counts only, never averages: any set of rows merges exactly. Money is in cents.
# One model per grain of the catalogue (``outcomes.grains``), built from its declaration.


class RollupMeasures(models.Model):
    bucket = models.DateTimeField()
    pending = models.BooleanField(db_default=True, help_text="A partial row not yet merged by compaction.")

    class Meta:
        abstract = True


class PriceRollup(models.Model):
    """How many outcomes had each price, to the cent: exact percentiles and histograms."""

    bucket = models.DateTimeField()
    pending = models.BooleanField(db_default=True)

    class Meta:
        abstract = True


class ReachRollup(models.Model):
    """Distinct users per bucket as a serialized HyperLogLog sketch (Apache DataSketches)."""

    bucket = models.DateTimeField()
    pending = models.BooleanField(db_default=True)

    class Meta:
        abstract = True


_BASES = {
    grains.MEASURES: RollupMeasures,
    grains.EXPERIMENT_MEASURES: RollupMeasures,
    grains.USER_MEASURES: RollupMeasures,
    grains.PRICE_COUNTS: PriceRollup,
    grains.LANDSCAPE_COUNTS: PriceRollup,
    grains.SKETCH: ReachRollup,
}
# Squares of cents: up to 10^20 a row (prices below 10^8), summed over billions of rows.
WIDE_DIGITS = 40


def _dimension_field(dimension: grains.Dimension) -> models.Field:
    kind = dimension.kind
    if kind == "text":
        return models.CharField(max_length=MAX_TEXT_LENGTH, help_text=dimension.help)
    if kind == "currency":
        return models.CharField(max_length=CURRENCY_LENGTH)
    if kind == "slug":
        return models.CharField(max_length=SLUG_LENGTH, help_text=dimension.help)
    if kind == "boolean":
        return models.BooleanField()
    if kind == "cents":
        return models.IntegerField()
    raise ValueError(f"unknown dimension kind {kind!r}")


def _value_fields(values: grains.Values) -> dict[str, models.Field]:
    if values.kind == "sketch":
        return {"sketch": models.BinaryField()}
    fields: dict[str, models.Field] = {}
    for name, help in zip(values.names, values.helps, strict=True):
        extra = {"help_text": help} if help else {}
        if name in values.wide:
            fields[name] = models.DecimalField(max_digits=WIDE_DIGITS, decimal_places=0, default=0, **extra)
        else:
            fields[name] = models.BigIntegerField(default=0, **extra)
    return fields


def _index_name(name: str) -> str:
    """Django's limit is 30 characters: a longer name keeps its start and a hash of the whole."""
    if len(name) <= 30:
        return name
    return f"{name[:21]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _rollup_meta(grain: grains.Grain):
    """One (keys…) index, for reads and compaction. Every index is paid for on each appended
    row; compaction finds new partial rows by primary key. A grain that a coarser one is
    folded from also indexes its pending rows, which readers of the coarser grain add in (the
    index stays small: compaction empties it). ``by_bucket``: a grain keyed by its first
    dimension also indexes the bucket alone, for reports over a window with no filter on it."""
    short = grain.table.removeprefix("outcomes_rollup_")
    if grain.unit == "all":
        keys = list(grain.dims)
    elif grain.by_bucket:
        # The first dimension, then the bucket: a filter on it reads one range per window,
        # whatever the other dimensions hold.
        keys = [grain.dims[0], "bucket", *grain.dims[1:]]
    else:
        keys = ["bucket", *grain.dims]
    indexes = [models.Index(fields=keys, name=_index_name(f"rollup_{short}_key"))]
    if grain.by_bucket:
        indexes.append(models.Index(fields=["bucket"], name=_index_name(f"rollup_{short}_bucket")))
    if grain.pending_index:
        indexes.append(
            models.Index(
                fields=["bucket"], name=_index_name(f"rollup_{short}_pending"), condition=models.Q(pending=True)
            )
        )
    return type("Meta", (), {"db_table": grain.table, "indexes": indexes})


def _rollup_model(grain: grains.Grain) -> type[models.Model]:
    attrs = {
        "__module__": __name__,
        "__doc__": grain.doc or f"The {grain.family} rollup, by {grain.unit}.",
        "Meta": _rollup_meta(grain),
        **{d.name: _dimension_field(d) for d in grain.dimensions},
        **_value_fields(grain.values),
    }
    return type(grain.model, (_BASES[grain.values],), attrs)


ROLLUP_MODELS: dict[str, type[models.Model]] = {grain.key: _rollup_model(grain) for grain in grains.GRAINS}
globals().update({model.__name__: model for model in ROLLUP_MODELS.values()})  # OutcomeRollupMinute, …


class APIKey(AbstractAPIKey):
    """A program's credential: ``Authorization: Api-Key <prefix>.<secret>``.

    The library generates the key, shows it once and stores only its SHA-512 hash (keys are
    random, 190 bits: a slow password hash would add nothing but latency to every request).
    ``scopes`` say what the key may do; see ``outcomes.permissions``.
    """

    SCOPES = ("read", "export", "write", "admin")

    scopes = ArrayField(
        models.CharField(max_length=10, choices=[(s, s) for s in SCOPES]),
        default=list,
        help_text="read: every GET but the export; export: the bulk export (every row, user ids included); "
        "write: create and update outcomes; admin: delete them, and everything else.",
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class RawRetention(models.Model):
    """How far back the raw outcomes go: ``prune_outcomes`` deleted everything with an event
    time before ``before``. One row (id 1) at most.

    Reports keep answering for that time from the rollups (the long-term record), but lists
    and their counts only have the raw rows: list counts taken from rollups start here.
    """

    before = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "raw retention"


# Reference data (rates, the experiment registry), in their own module.
from outcomes.models.planning import BidModel, ExchangeRate, Experiment  # noqa: E402, F401
from outcomes.models.reporting import (  # noqa: E402, F401
    Alert,
    AlertEvent,
    Delivery,
    SavedReport,
    Subscription,
)
