"""The write service: the one path that changes stored outcomes.

Consumer batches, API creates, updates and deletes, the admin's deletes and dead-letter
replay all come through here. Every change validates with the message parser's rules
(``outcomes.messages``) and keeps the rollups (``outcomes.rollups``) exact in the
same transaction: a write either lands with its rollup deltas or not at all.

Owns every write ingestion makes: new outcomes, rollup deltas, dead letters and each
partition's next offset, committed together or not at all. Knows nothing about Kafka or
HTTP: a batch is plain data (positions are topic/partition/offset triples), so this module
is tested against PostgreSQL with lists of events.

A batch is written in two steps, so the CPU-bound part can run while the previous batch
is still in the database:

``prepare_batch`` (pure Python, no I/O)
    de-duplicates events by ``bid_id`` within the batch (first one wins; a later copy with
    different content is a ``conflicting_duplicate`` dead letter), renders the rows in
    COPY text format and sketches the users of the events (for the reach rollups).

``write_batch`` (one transaction)
    1. streams the rows with ``COPY`` straight into the outcomes table. This is the fast
       path: raw COPY speed, no look-ups;
    2. if any bid id is stored already, the unique index rejects that COPY, the transaction
       (nothing else done yet) is rolled back and the batch goes the slow, always-correct way
       instead: COPY into a session-local staging table, then
       ``INSERT … SELECT … ON CONFLICT (bid_id) DO NOTHING RETURNING bid_id``. The rows not
       inserted are looked up: same content → a duplicate (counted), different content → a
       ``conflicting_duplicate`` dead letter (the first version stays; nothing is silently
       dropped). ``stage_first=True`` skips step 1 when duplicates are expected;
    3. inserts dead letters (unique by topic/partition/offset, so a retry cannot double them);
    4. appends the rollup deltas of exactly the rows inserted, computed by PostgreSQL from
       those rows (``rollups.append_inserted``), and the batch's reach sketches;
    5. upserts each partition's next offset *fenced*: the update applies only if the stored
       offset is still the one this consumer last read or wrote. If another consumer has
       moved it (a rebalance this one has not noticed yet), ``OffsetConflict`` is raised and
       the whole transaction rolls back.

``timestamp``, ``created_at`` and ``updated_at`` come from the columns' database default,
``now()``: the time of the transaction that stored the row.

Modules: ``batches`` (the consumer's batches), ``single`` (one outcome: the API and the
admin), ``erasure``, ``lifecycle`` (retention), ``offsets`` (stored consumer offsets),
``tables`` (what they write, and with which statements). Callers import from here.
"""

from outcomes.writes.batches import (
    DEAD_LETTER_MAX_BYTES,
    Batch,
    OffsetConflict,
    PartitionProgress,
    Position,
    PreparedBatch,
    Rejected,
    WriteResult,
    prepare_batch,
    write_batch,
)
from outcomes.writes.erasure import Erasure, erased_users, erasure_hash, user_erase
from outcomes.writes.lifecycle import PruneProgress, outcomes_prune
from outcomes.writes.offsets import offsets_reset, offsets_skip_lost, stored_offsets
from outcomes.writes.single import (
    WRITABLE_FIELDS,
    OutcomeConflict,
    OutcomeInvalid,
    OutcomeNotFound,
    outcome_create,
    outcome_update,
    outcomes_delete,
)

__all__ = [
    "DEAD_LETTER_MAX_BYTES",
    "WRITABLE_FIELDS",
    "Batch",
    "Erasure",
    "OffsetConflict",
    "OutcomeConflict",
    "OutcomeInvalid",
    "OutcomeNotFound",
    "PartitionProgress",
    "Position",
    "PreparedBatch",
    "PruneProgress",
    "Rejected",
    "WriteResult",
    "erased_users",
    "erasure_hash",
    "offsets_reset",
    "offsets_skip_lost",
    "outcome_create",
    "outcome_update",
    "outcomes_delete",
    "outcomes_prune",
    "prepare_batch",
    "stored_offsets",
    "user_erase",
    "write_batch",
]
