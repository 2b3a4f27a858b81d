"""The write step: prepared batches go to PostgreSQL through the write service on one writer
thread (arroyo's ``RunTaskInThreads`` with one thread), one batch in flight at a time, so the
next batch is polled and prepared while this one is written. It owns:

* the executor (every database call of the consumer runs on that thread, on its connection:
  the stored-offset reads of a rebalance too, so they queue behind the write in flight);
* the stage-first policy: after a batch met duplicates, the next ``STAGE_FIRST_BATCHES`` go
  straight to the staging path instead of failing the fast one first;
* retrying through database outages (``retry.retry``), marking the consumer not ready
  meanwhile; a stop request during an outage abandons the batch (it will be read again).

Knows nothing about Kafka.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TypeVar

from django.db import InterfaceError, OperationalError, close_old_connections, connection

from analytics.consumer_settings import ConsumerSettings
from outcomes.ingest.health import HealthFiles
from outcomes.ingest.metrics import ConsumerMetrics
from outcomes.ingest.retry import Abandoned, retry
from outcomes.writes import OffsetConflict, PreparedBatch, WriteResult, write_batch

logger = logging.getLogger("outcomes.consumer")

TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
STAGE_FIRST_BATCHES = 8
T = TypeVar("T")


@dataclass
class InFlight:
    future: Future
    batch: PreparedBatch
    generation: int  # the assignment generation the batch was read in


@dataclass
class Written:
    batch: PreparedBatch
    generation: int
    result: WriteResult | None  # None: abandoned on shutdown during an outage (read again later)
    fenced: OffsetConflict | None = None  # refused whole: the stored offsets moved meanwhile


class WriteStep:
    def __init__(
        self, settings: ConsumerSettings, metrics: ConsumerMetrics, health: HealthFiles, stop, publisher=None
    ) -> None:
        self.settings = settings
        self.publisher = publisher  # outcomes.ingest.publishing.LivePublisher, or None
        self.metrics = metrics
        self.health = health
        self.stop = stop
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcome-writer")
        self._stage_first_batches = 0
        self.in_flight: InFlight | None = None

    def submit(self, batch: PreparedBatch, generation: int) -> None:
        assert self.in_flight is None, "one batch in flight at a time: wait() first"
        stage_first = self._stage_first_batches > 0
        self._stage_first_batches = max(0, self._stage_first_batches - 1)
        self.in_flight = InFlight(self._executor.submit(self._write, batch, stage_first), batch, generation)

    def done(self) -> bool:
        return self.in_flight is not None and self.in_flight.future.done()

    def wait(self) -> Written | None:
        """The batch in flight, once written (or fenced, or abandoned); None if there was none."""
        in_flight = self.in_flight
        if in_flight is None:
            return None
        try:
            result = self._result(in_flight.future)
        except OffsetConflict as conflict:
            return Written(in_flight.batch, in_flight.generation, None, conflict)
        finally:
            self.in_flight = None  # only now: settle() (another thread) sees the write until it ends
        if result is not None and result.used_fallback and not self._stage_first_batches:
            self._stage_first_batches = STAGE_FIRST_BATCHES  # duplicates are arriving
        return Written(in_flight.batch, in_flight.generation, result)

    def settle(self, timeout_s: float) -> bool:
        """Until the write in flight (if any) has ended, whatever its outcome, or ``timeout_s``
        has passed (a database outage); its result is still for ``wait()``. For partitions
        about to be handed over. True if nothing is in flight any more."""
        in_flight = self.in_flight
        if in_flight is None:
            return True
        try:
            in_flight.future.exception(timeout=timeout_s)
        except FutureTimeout:
            return False
        return True

    def call(self, function: Callable[[], T]) -> T:
        """``function()`` on the writer thread (after the write in flight), retried through outages."""
        return self._executor.submit(self._retrying, function, "database unavailable; retrying").result()

    def close(self) -> None:
        # The writer thread's database connection is thread-local: close it from that thread.
        self._executor.submit(discard_connection).result()
        self._executor.shutdown(wait=True)
        if self.publisher is not None:
            self.publisher.close()

    # ---------------------------------------------------------------- on the writer thread
    def _write(self, batch: PreparedBatch, stage_first: bool) -> WriteResult | None:
        started = time.monotonic()

        def attempt() -> WriteResult:
            nonlocal started
            started = time.monotonic()
            return write_batch(
                batch, consumer_group=self.settings.group, stage_first=stage_first, live=self.publisher is not None
            )

        try:
            result = self._retrying(
                attempt, "database unavailable; retrying the batch", count_retries=True, messages=len(batch)
            )
        except Abandoned as exc:
            logger.error(
                "database unavailable during shutdown; batch abandoned (it will be read again)",
                extra={"error": str(exc).strip()},
            )
            return None
        elapsed = time.monotonic() - started
        self.metrics.batch_seconds.observe(elapsed)
        result.duration_ms = round(elapsed * 1000, 1)
        if self.publisher is not None and result.live is not None:  # committed: tell the live servers
            self.publisher.publish(result.live)
        return result

    def _retrying(self, function: Callable[[], T], message: str, *, count_retries: bool = False, **context) -> T:
        def failed(exc: BaseException, delay: float) -> None:
            if count_retries:
                self.metrics.write_retries.inc()
            self.health.set_ready(False)
            discard_connection()
            self.health.touch()
            logger.warning(message, extra={"error": str(exc).strip(), "retry_in_s": delay, **context})

        result = retry(
            function,
            transient=TRANSIENT_DB_ERRORS,
            initial_ms=self.settings.retry_initial_backoff_ms,
            max_ms=self.settings.retry_max_backoff_ms,
            stop=self.stop,
            on_failure=failed,
        )
        self.health.set_ready(True)
        return result

    def _result(self, future: Future):
        # The write may be waiting out a database outage: stay visibly alive meanwhile.
        while True:
            try:
                return future.result(timeout=1.0)
            except FutureTimeout:
                self.health.touch()


def discard_connection() -> None:
    # The connection is broken already; a new one is opened on the next query.
    with contextlib.suppress(Exception):
        connection.close()
    close_old_connections()
