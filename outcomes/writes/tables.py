"""The tables the write service writes and the statements it writes them with.

Table names come from the models; the staging table takes its column types from the
outcomes table itself, so a column changed by a migration changes here too.
"""

from __future__ import annotations

from outcomes.models import AuctionOutcome, ConsumerOffset, DeadLetter, ErasedUser
from outcomes.validation import MESSAGE_FIELDS

OUTCOME_TABLE = AuctionOutcome._meta.db_table
OFFSET_TABLE = ConsumerOffset._meta.db_table
DEAD_LETTER_TABLE = DeadLetter._meta.db_table
ERASED_TABLE = ErasedUser._meta.db_table
STAGE_TABLE = "outcome_stage"
UNIQUE_VIOLATION = "23505"

# The columns a write supplies, in COPY order (``batches.copy_rows`` renders them); the
# others come from the database (id, the storage times, generated columns).
COLUMNS = (*MESSAGE_FIELDS, "raw_data")
COLUMN_LIST = ", ".join(COLUMNS)

COPY_OUTCOMES = f"COPY {OUTCOME_TABLE} ({COLUMN_LIST}) FROM STDIN"
# Session-local, emptied at each commit; its column types are the outcomes table's.
CREATE_STAGE = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} ON COMMIT DELETE ROWS "
    f"AS SELECT {COLUMN_LIST} FROM {OUTCOME_TABLE} WITH NO DATA"
)
COPY_STAGE = f"COPY {STAGE_TABLE} ({COLUMN_LIST}) FROM STDIN"
MOVE_STAGE = f"""
INSERT INTO {OUTCOME_TABLE} ({COLUMN_LIST})
SELECT {COLUMN_LIST} FROM {STAGE_TABLE}
ON CONFLICT (bid_id) DO NOTHING
RETURNING bid_id, id
"""
STORED_CONTENT = f"SELECT bid_id, raw_data FROM {OUTCOME_TABLE} WHERE bid_id = ANY(%s)"
INSERT_DEAD_LETTERS = f"""
INSERT INTO {DEAD_LETTER_TABLE}
    (topic, partition, "offset", kafka_timestamp, key, value, reason, detail, consumer_group, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (topic, partition, "offset") DO NOTHING
"""
UPSERT_OFFSET = f"""
INSERT INTO {OFFSET_TABLE} AS o (consumer_group, topic, partition, next_offset, updated_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (consumer_group, topic, partition) DO UPDATE
    SET next_offset = EXCLUDED.next_offset, updated_at = EXCLUDED.updated_at
    WHERE o.next_offset = %s
RETURNING next_offset
"""
