"""An export as an HTTP response: bounded, cancelled when its client leaves, and audited.

``exports`` makes the bytes (PostgreSQL's ``COPY … TO STDOUT`` on a connection of the
export's own); this module owns what one export may hold and how it ends:

* **a slot**: at most ``API_EXPORT_CONCURRENCY`` exports run in a process at once (a 429 with
  ``Retry-After`` beyond), fewer than its threads, so probes and ordinary requests always
  find one (gunicorn.conf.py refuses a cap that would take them all);
* **a watch on the client**: while the export waits for rows it looks at the socket every
  ``WATCH_S``; a client that hung up — before the first byte or after — cancels the query
  within about a second (``pg_cancel_backend`` through the export's connection);
* **a visible end**: an export cut short (the client left, ``API_EXPORT_STATEMENT_TIMEOUT_MS``
  passed, the database failed) closes the connection without HTTP's final zero-length chunk,
  so the client sees a truncated transfer rather than a complete file;
* **one audit line** per export (logger ``outcomes.audit``): who (key prefix or user), the
  format and filters (user ids redacted), rows, bytes, seconds, and how it ended.

Knows nothing of filters or SQL.
"""

from __future__ import annotations

import errno
import logging
import queue
import socket
import threading
import time
import weakref

from django.conf import settings
from psycopg.errors import QueryCanceled

from analytics.privacy import redacted_params

audit_log = logging.getLogger("outcomes.audit")
logger = logging.getLogger(__name__)

WATCH_S = 0.5

COMPLETE = "complete"
CLIENT_LEFT = "client_disconnected"
TIMEOUT = "statement_timeout"
FAILED = "error"


class ExportSlots:
    """The exports this process runs at once, at most ``API_EXPORT_CONCURRENCY``. A slot is
    held by its ``ExportBody`` until ``close()``; one that is dropped without (a bug, a
    server that never closes a response) frees its slot when it is collected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: weakref.WeakSet = weakref.WeakSet()

    @property
    def running(self) -> int:
        return len(self._holders)

    def try_take(self, holder) -> bool:
        with self._lock:
            if len(self._holders) >= settings.API_EXPORT_CONCURRENCY:
                return False
            self._holders.add(holder)
            return True

    def give_back(self, holder) -> None:
        with self._lock:
            self._holders.discard(holder)


slots = ExportSlots()


class ClientGone(Exception):
    """The client hung up before the first byte."""


def peer_gone(sock) -> bool:
    """Whether the client closed its end of the connection (a read would return nothing).
    False when this cannot be told (no socket: a test client; TLS: no peeking)."""
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError, ValueError):
        return False  # nothing to read yet: still there
    except OSError:
        return True  # reset


class ExportBody:
    """The response body: the copy stream's chunks, watched, counted and audited.

    Take a slot for it (``slots.try_take(body)``), then ``start(stream)``. Read ``first()``
    in the view: a database error is then an ordinary error response, and a client already
    gone is ``ClientGone``. ``close()`` (the WSGI server calls it when the response ends,
    however it ends) cancels the query, gives the slot back and logs."""

    def __init__(self, *, peer, who: str, export_format: str, params, header_rows: int) -> None:
        self._stream = None
        self._peer = peer
        self._header_rows = header_rows
        self._audit = {
            "event": "export",
            "who": who,
            "format": export_format,
            "filters": redacted_params(params),
        }
        self._started = time.monotonic()
        self._bytes = 0
        self._newlines = 0
        self._ended: str | None = None
        self._released = False
        self._closed = False

    def start(self, stream) -> None:
        self._stream = stream

    def first(self) -> bytes:
        """The first chunk (b"" for an empty export)."""
        try:
            return next(self)
        except StopIteration:
            return b""
        except ConnectionResetError:
            raise ClientGone from None

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        while True:
            try:
                chunk = self._stream.next_chunk(timeout=WATCH_S)
            except queue.Empty:
                if peer_gone(self._peer):
                    self._cut(CLIENT_LEFT, "the client disconnected")
                continue
            except StopIteration:
                self._ended = self._ended or COMPLETE
                raise
            except Exception as exc:
                if self._bytes == 0:  # nothing sent yet: an ordinary error response
                    self._ended = TIMEOUT if _cancelled(exc) else FAILED
                    raise
                reason = TIMEOUT if _cancelled(exc) else FAILED
                self._cut(reason, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            self._bytes += len(chunk)
            self._newlines += chunk.count(b"\n")
            return chunk

    def _rows(self) -> int:
        counted = getattr(self._stream, "rows", None)  # a workbook counts its own rows
        if counted is not None:
            return counted
        return max(0, self._newlines - self._header_rows) if self._bytes else 0

    def _cut(self, reason: str, why: str):
        """End the response without its final chunk: the client sees a truncated transfer.
        (gunicorn closes a connection on ECONNRESET quietly, without ending the chunked body.)"""
        self._ended = reason
        logger.warning("export cut short", extra={"reason": reason, "why": why, "bytes_sent": self._bytes})
        self._release()
        raise ConnectionResetError(errno.ECONNRESET, f"export ended: {why}")

    def _release(self) -> None:
        """Cancel the query if it still runs and give the slot back (once)."""
        if not self._released:
            self._released = True
            if self._stream is not None:
                self._stream.close()
            slots.give_back(self)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release()
        # Closed before the last chunk: the client left mid-write (or the export never started).
        ended = self._ended or (CLIENT_LEFT if self._stream is not None else FAILED)
        audit_log.info(
            "export",
            extra={
                **self._audit,
                "rows": self._rows(),
                "bytes": self._bytes,
                "seconds": round(time.monotonic() - self._started, 3),
                "ended": ended,
            },
        )


def _cancelled(exc: BaseException) -> bool:
    """A statement timeout (PostgreSQL's query_canceled), however it is wrapped."""
    while exc is not None:
        if isinstance(exc, QueryCanceled):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
