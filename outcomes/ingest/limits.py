"""When a run ends by itself: after ``--max-messages`` messages (valid or not), or after
``--timeout`` milliseconds without one. Pure: the loop passes in the count and the clock."""

from __future__ import annotations


class RunLimits:
    def __init__(self, *, max_messages: int | None, idle_timeout_ms: int | None, now: float) -> None:
        self.max_messages = max_messages
        self.idle_timeout_ms = idle_timeout_ms
        self.last_message_at = now

    def remaining(self, consumed: int) -> int | None:
        """Messages still to read (None: no limit)."""
        if self.max_messages is None:
            return None
        return max(0, self.max_messages - consumed)

    def saw_messages(self, now: float) -> None:
        self.last_message_at = now

    def idle(self, now: float) -> bool:
        return self.idle_timeout_ms is not None and now - self.last_message_at >= self.idle_timeout_ms / 1000
