"""The consumer's probe files: liveness (touched while the loop turns, also while it waits
out an outage) and readiness (present while Kafka and PostgreSQL answer)."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("outcomes.consumer")


class HealthFiles:
    def __init__(self, *, health_file: str, ready_file: str) -> None:
        self.health_file = health_file
        self.ready_file = ready_file
        self._ready: bool | None = None

    def touch(self) -> None:
        if not self.health_file:
            return
        try:
            with open(self.health_file, "a"):
                os.utime(self.health_file, None)
        except OSError:
            logger.warning("cannot touch the health file", extra={"path": self.health_file})

    def set_ready(self, ready: bool) -> None:
        if not self.ready_file or self._ready == ready:
            return
        try:
            if ready:
                with open(self.ready_file, "a"):
                    pass
            elif os.path.exists(self.ready_file):
                os.remove(self.ready_file)
            self._ready = ready
        except OSError:
            logger.warning("cannot update the readiness file", extra={"path": self.ready_file})
