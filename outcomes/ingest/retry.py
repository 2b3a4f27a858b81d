"""One retry-with-backoff for every outage the consumer waits out: reaching Kafka, writing a
batch, reading the stored offsets. Exponential backoff from ``initial_ms`` to ``max_ms``; a
stop request ends the wait at once and turns the next failure into ``Abandoned``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Abandoned(Exception):
    """A stop was requested while the operation kept failing; it was not done."""


class Backoff:
    def __init__(self, initial_ms: int, max_ms: int) -> None:
        self.delay = initial_ms / 1000
        self.maximum = max_ms / 1000

    def next(self) -> float:
        current = self.delay
        self.delay = min(self.maximum, self.delay * 2)
        return round(current, 3)


def retry(
    operation: Callable[[], T],
    *,
    transient: tuple[type[BaseException], ...],
    initial_ms: int,
    max_ms: int,
    stop: threading.Event,
    on_failure: Callable[[BaseException, float], None],
) -> T:
    """``operation()``'s result, retried while it raises one of ``transient``.

    ``on_failure(error, retry_in_s)`` runs after each failure (log, metrics, drop a broken
    connection, stay visibly alive). Raises ``Abandoned`` when a failure meets a stop request.
    """
    backoff = Backoff(initial_ms, max_ms)
    while True:
        try:
            return operation()
        except transient as exc:
            if stop.is_set():
                raise Abandoned(str(exc)) from exc
            delay = backoff.next()
            on_failure(exc, delay)
            stop.wait(delay)
