"""Read answers cached by database snapshot: exact, and invalidated by every commit.

A dashboard asks the same few questions many times a second, and between two commits the
answers cannot change. PostgreSQL's ``pg_current_snapshot()`` (xmin:xmax:in-progress xids)
names what a query can see: two equal snapshots see exactly the same committed rows, and
once any transaction commits (or a new one takes an xid) the snapshot never returns to an
earlier value. So an answer stored under the snapshot read just before computing it is
served only while nothing has committed since; the first request after a commit computes
afresh. This is Druid's result cache keyed by segment version, with the version PostgreSQL
already keeps.

The cache lives in each process (no shared store to keep coherent) and keeps answers as
the bytes sent (rendered JSON, not the objects that made them), at most ``API_CACHE_BYTES``
of them, least recently used out first; an answer larger than an eighth of that is not kept,
and 0 turns the cache off. So its memory is what it says, whatever the answers. It is
bypassed inside a transaction (own uncommitted writes do not change the snapshot) and for
answers that depend on the clock (the caller decides: e.g. a time series without ``end``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError

from analytics.dbrouting import read_alias, read_db

HIT, MISS, BYPASS = "HIT", "MISS", "BYPASS"


class SnapshotCache:
    """Answers (a ``bytes`` body and what goes with it) by key and snapshot, within a budget
    of ``max_bytes`` (the bodies' sizes; the keys and headers are small beside them)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._answers: OrderedDict[tuple, tuple[bytes, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], tuple[bytes, Any]]) -> tuple[tuple[bytes, Any], str]:
        """((body, extra), HIT | MISS | BYPASS): ``compute()``'s answer, or the one stored for
        ``key`` at the current snapshot."""
        if self.max_bytes <= 0 or read_db().in_atomic_block:
            return compute(), BYPASS
        full_key = (key, read_alias(), current_snapshot())
        with self._lock:
            if full_key in self._answers:
                self._answers.move_to_end(full_key)
                return self._answers[full_key], HIT
        answer = compute()
        body = answer[0]
        if len(body) <= self.max_bytes // 8:
            with self._lock:
                if full_key not in self._answers:
                    self._answers[full_key] = answer
                    self.size += len(body)
                while self.size > self.max_bytes:
                    _key, (old, _extra) = self._answers.popitem(last=False)
                    self.size -= len(old)
        return answer, MISS

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()
            self.size = 0


def current_snapshot() -> str:
    """The snapshot, read as the request's first query: it doubles as the connection's health
    check (``CONN_HEALTH_CHECKS`` would send a ``SELECT 1`` first), so a connection that died
    since the last request is replaced and the query retried once."""
    connection = read_db()
    for attempt in (1, 2):
        fresh = connection.connection is None
        connection.health_check_done = True  # this query is the check
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_current_snapshot()::text")
                return cursor.fetchone()[0]
        except (OperationalError, InterfaceError):
            connection.close()
            if fresh or attempt == 2:
                raise
    raise AssertionError("unreachable")


answers = SnapshotCache(settings.API_CACHE_BYTES)
