"""The parse step: a Kafka record → ``(OutcomeEvent, Position)`` or a ``Rejected`` dead letter,
with the dead-letter cap (arroyo's ``DlqLimit``): too many invalid messages stop the consumer
instead of dead-lettering a whole topic after a bad upstream deploy. No I/O but a log line."""

from __future__ import annotations

import logging
from collections import deque
from decimal import Decimal

from outcomes.messages import InvalidOutcome, parse_outcome
from outcomes.writes import Position, Rejected

logger = logging.getLogger("outcomes.consumer")


class DeadLetterLimitExceeded(Exception):
    """Too many invalid messages: stop rather than dead-letter a whole topic."""


class DeadLetterLimit:
    """Trips after ``max_consecutive`` invalid messages in a row, or when more than
    ``max_ratio`` of the last ``window`` messages were invalid. 0 disables a check."""

    def __init__(self, *, max_consecutive: int, max_ratio: float, window: int) -> None:
        self.max_consecutive = max_consecutive
        self.max_ratio = max_ratio
        self.window = deque(maxlen=window)
        self.invalid_in_window = 0
        self.consecutive = 0

    def record(self, invalid: bool) -> None:
        if len(self.window) == self.window.maxlen and self.window[0]:
            self.invalid_in_window -= 1
        self.window.append(invalid)
        self.invalid_in_window += invalid
        self.consecutive = self.consecutive + 1 if invalid else 0
        if self.max_consecutive and self.consecutive >= self.max_consecutive:
            raise DeadLetterLimitExceeded(
                f"{self.consecutive} invalid messages in a row (CONSUMER_DLQ_MAX_CONSECUTIVE={self.max_consecutive})"
            )
        if (
            self.max_ratio < 1.0
            and len(self.window) == self.window.maxlen
            and self.invalid_in_window / len(self.window) > self.max_ratio
        ):
            raise DeadLetterLimitExceeded(
                f"{self.invalid_in_window} of the last {len(self.window)} messages were invalid "
                f"(CONSUMER_DLQ_MAX_RATIO={self.max_ratio}, CONSUMER_DLQ_WINDOW={self.window.maxlen})"
            )


class ParseStep:
    def __init__(self, *, max_bytes: int, max_price: Decimal, limit: DeadLetterLimit) -> None:
        self.max_bytes = max_bytes
        self.max_price = max_price
        self.limit = limit

    def __call__(self, message):
        """``message``: anything with topic, partition, offset, timestamp, key and value."""
        position = Position(message.topic, message.partition, message.offset, message.timestamp)
        parsed = parse_outcome(message.value, message.key, max_bytes=self.max_bytes, max_price=self.max_price)
        invalid = isinstance(parsed, InvalidOutcome)
        self.limit.record(invalid)
        if not invalid:
            return parsed, position
        logger.warning(
            "invalid message; dead-lettering it",
            extra={
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "reason": parsed.reason,
                "detail": parsed.detail,
            },
        )
        return Rejected(position, message.key, message.value, parsed.reason, parsed.detail)
