"""API reads on a streaming read replica (``DB_REPLICA_HOST``), everything else on the primary.

* ``ReadReplicaMiddleware`` sends a request's reads to the ``replica`` database when it is a
  GET/HEAD/OPTIONS under ``/api/`` and a replica is configured; writes, the admin, health
  checks and commands always use the primary (``default``). The ORM follows through
  ``ReplicaRouter``; raw SQL asks ``read_db()``.
* If the replica cannot be reached, the request is answered again from the primary and the
  replica is left alone for ``DB_REPLICA_RETRY_SECONDS`` (a warning is logged once each
  time): reads keep working, on the primary, while the replica is down. A query the
  replica cancelled for running past ``API_STATEMENT_TIMEOUT_MS`` is a slow query, not a
  dead replica: it is the request's 503, and the replica keeps serving reads.
* A replica lags its primary (usually by milliseconds): a client that writes then reads at
  once may not see its write yet. Answers are cached per replica snapshot, so they stay exact
  for the state the replica has.
"""

from __future__ import annotations

import contextvars
import logging
import time

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from psycopg.errors import QueryCanceled

logger = logging.getLogger(__name__)
_read_alias: contextvars.ContextVar[str] = contextvars.ContextVar("read_alias", default="default")
_replica_down_until = [0.0]
_SAFE = ("GET", "HEAD", "OPTIONS")


def read_alias() -> str:
    return _read_alias.get()


def read_db():
    """The connection this request reads from."""
    return connections[_read_alias.get()]


class ReplicaRouter:
    def db_for_read(self, model, **hints):
        return _read_alias.get()

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == "default"


class ReadReplicaMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            "replica" not in settings.DATABASES
            or request.method not in _SAFE
            or not request.path.startswith("/api/")
            or time.monotonic() < _replica_down_until[0]
        ):
            return self.get_response(request)
        token = _read_alias.set("replica")
        try:
            return self.get_response(request)
        finally:
            _read_alias.reset(token)

    def process_exception(self, request, exception):
        """The replica failed this read: mark it down and answer from the primary."""
        if _read_alias.get() != "replica" or not isinstance(exception, OperationalError | InterfaceError):
            return None
        if isinstance(exception.__cause__, QueryCanceled):
            return None  # a statement timeout: the request's own 503 (analytics/guards.py)
        _replica_down_until[0] = time.monotonic() + settings.DB_REPLICA_RETRY_SECONDS
        logger.warning(
            "read replica unavailable; reading from the primary",
            extra={"retry_in_s": settings.DB_REPLICA_RETRY_SECONDS, "error": str(exception).strip()[:200]},
        )
        connections["replica"].close()
        _read_alias.set("default")
        return self.get_response(request)
