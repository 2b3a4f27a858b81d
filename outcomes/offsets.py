"""Where a consumer group's stored next offset lies against a partition's log in Kafka (pure).

Kafka keeps a partition's messages from its first offset (the log start, which retention
moves forward) to its end (the offset the next message gets). A stored offset outside that
range means the topic changed behind the consumer's back. The consumer acts on it
(``outcomes.ingest.positions``); ``/api/ingestion/`` reports it.
"""

from __future__ import annotations

from typing import NamedTuple

BEFORE_BEGINNING = "before_beginning"  # retention deleted messages never stored
BEYOND_END = "beyond_end"  # the topic was deleted and recreated, or truncated


class LogRange(NamedTuple):
    first: int  # the partition's first offset still in Kafka (log start)
    end: int  # the offset the next message will get (high-water mark)


def classify(stored: int, log: LogRange) -> str | None:
    """None when the stored offset can be read from (``end`` included: caught up), else
    ``BEFORE_BEGINNING`` or ``BEYOND_END``."""
    if stored < log.first:
        return BEFORE_BEGINNING
    if stored > log.end:
        return BEYOND_END
    return None
