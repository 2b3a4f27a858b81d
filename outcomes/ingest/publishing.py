"""After each committed batch, its event (``outcomes.live``) goes to a Redis stream that the
live servers read (``LIVE_STREAM``, capped at ``LIVE_STREAM_LENGTH`` entries; the entry id is
the event's id, which a reconnecting client resumes from).

Never in ingestion's way: the stream is written after the commit, on the writer thread, with
a short timeout; if Redis does not answer, the event is dropped (counted, logged once a
minute) and clients find out from the gap in ids — they refetch from the reports.
"""

from __future__ import annotations

import logging
import time

import orjson
import redis

logger = logging.getLogger("outcomes.consumer")
TIMEOUT_S = 0.5
LOG_EVERY_S = 60.0


class LivePublisher:
    def __init__(self, url: str, stream: str, length: int) -> None:
        self.stream = stream
        self.length = length
        self.client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        self.dropped = 0
        self._logged_at = 0.0

    def publish(self, event: dict) -> str | None:
        """The entry's id, or None when the event was dropped."""
        try:
            return self.client.xadd(
                self.stream, {"data": orjson.dumps(event)}, maxlen=self.length, approximate=True
            ).decode()
        except redis.RedisError as exc:
            self.dropped += 1
            now = time.monotonic()
            if now - self._logged_at >= LOG_EVERY_S:
                self._logged_at = now
                logger.warning("live event not published", extra={"error": str(exc), "dropped": self.dropped})
            return None

    def close(self) -> None:
        self.client.close()
