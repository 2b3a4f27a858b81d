"""What each written batch adds up to: the run's summary, the Prometheus counters and the
"batch written" log line. No I/O but the log."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from outcomes.ingest.metrics import ConsumerMetrics
from outcomes.writes import PreparedBatch, WriteResult

logger = logging.getLogger("outcomes.consumer")


@dataclass
class RunSummary:
    consumed: int = 0  # messages of written batches (what is held or in flight is not yet)
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0


def account(summary: RunSummary, metrics: ConsumerMetrics, batch: PreparedBatch, result: WriteResult) -> None:
    messages = len(batch)
    dead = sum(result.dead_lettered.values())
    summary.consumed += messages
    summary.stored += result.stored
    summary.duplicates += result.duplicates
    summary.dead_lettered += dead
    summary.batches += 1
    metrics.consumed.inc(messages)
    metrics.stored.inc(result.stored)
    metrics.duplicates.inc(result.duplicates)
    for reason, count in result.dead_lettered.items():
        metrics.dead_lettered.labels(reason=reason).inc(count)
    metrics.batches.inc()
    if result.newest_event_time is not None:
        age = (datetime.now(UTC) - result.newest_event_time).total_seconds()
        metrics.last_outcome_age.set(max(0.0, age))
    logger.info(
        "batch written",
        extra={
            "messages": messages,
            "stored": result.stored,
            "duplicates": result.duplicates,
            "dead_lettered": dead,
            "dead_letter_reasons": dict(result.dead_lettered),
            "duration_ms": result.duration_ms,
            "offsets": {f"{t}[{p}]": [pr.expected, pr.next_offset] for (t, p), pr in batch.progress.items()},
        },
    )
    if logger.isEnabledFor(logging.DEBUG):
        for event, _position in batch.events:
            logger.debug(
                "Auction outcome saved",
                extra={"bid_id": event.bid_id, "win_status": event.win_status, "win_price": str(event.win_price)},
            )
