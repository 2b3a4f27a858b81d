"""Rollups: exact pre-aggregates of the outcomes table, kept in the writer's transaction.

The grains themselves are declared in ``outcomes.grains`` (the catalogue); this package keeps
them exact and fast under concurrent writers (Druid's segments-then-compaction, inside
PostgreSQL):

* every write **appends** its own partial rows (``pending = true``): no upsert, so no row
  is ever locked by two writers, no deadlock, and consumers never wait for each other
  (``deltas``);
* readers sum all rows of a key, so partial rows and compacted rows give the same sum;
* ``compact()`` merges each key's rows into one with a single ``DELETE … RETURNING`` feeding
  an ``INSERT`` — one statement, one snapshot (``compaction``);
* a delete or update appends *negative* deltas. Reach sketches cannot subtract, so the
  affected buckets' sketches are rebuilt from the raw rows in the same transaction
  (``sketches``);
* only rows actually inserted are counted: the caller passes exactly those;
* ``verify`` and ``rebuild`` compare with and recompute from the raw rows, never over time
  whose raw rows were pruned (``recompute``, ``history``).

It knows nothing about HTTP or Kafka; ``outcomes.writes`` calls it inside its transactions
and ``outcomes.queries`` reads the grains the catalogue describes.
"""

from outcomes.buckets import truncate
from outcomes.grains import FAMILIES, FAMILY_FILTERS, GRAINS, Grain, bucket_sql
from outcomes.rollups.compaction import COMPACT_LOCK, compact
from outcomes.rollups.deltas import append_inserted, append_rows, delete_rows, sequence_mark
from outcomes.rollups.history import PrunedHistory, raw_rows_start
from outcomes.rollups.recompute import Difference, rebuild, verify
from outcomes.rollups.sketches import HLL_LG_K, Reach, append_reach, new_sketch, rebuild_reach_buckets

__all__ = [
    "COMPACT_LOCK",
    "FAMILIES",
    "FAMILY_FILTERS",
    "GRAINS",
    "HLL_LG_K",
    "Difference",
    "Grain",
    "PrunedHistory",
    "Reach",
    "append_inserted",
    "append_reach",
    "append_rows",
    "bucket_sql",
    "compact",
    "delete_rows",
    "new_sketch",
    "raw_rows_start",
    "rebuild",
    "rebuild_reach_buckets",
    "sequence_mark",
    "truncate",
    "verify",
]
