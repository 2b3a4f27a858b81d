"""Merges the rollups' partial rows now and then, on its own thread and database connection,
in parallel with the writes (one compactor at a time across all consumers, by advisory lock)."""

from __future__ import annotations

import logging
import threading

from outcomes import rollups
from outcomes.ingest.writing import TRANSIENT_DB_ERRORS, discard_connection

logger = logging.getLogger("outcomes.consumer")


class Compactor:
    def __init__(self, interval_s: float, stop_requested: threading.Event) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._outer_stop = stop_requested
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="rollup-compactor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s) and not self._outer_stop.is_set():
                try:
                    merged = rollups.compact()
                    if any(merged.values()):
                        logger.debug("rollups compacted", extra={"merged": merged})
                except TRANSIENT_DB_ERRORS as exc:
                    logger.warning("rollup compaction failed; retrying later", extra={"error": str(exc).strip()})
                    discard_connection()
        finally:
            discard_connection()
