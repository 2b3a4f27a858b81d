"""Limits every HTTP request runs under, so hostile or runaway requests get a clear 4xx/503.

* **Body size**: a ``Content-Length`` above ``API_MAX_BODY_BYTES`` is a 413 before anything
  reads the body (DRF's JSON parser reads the stream itself, so Django's
  ``DATA_UPLOAD_MAX_MEMORY_SIZE`` would not apply to it).
* **Control characters** (NUL and friends) in query parameter names or values are a 400
  naming the parameter: PostgreSQL text cannot hold NUL, and no filter value contains them.
  So are bytes that are not UTF-8 (Django would turn them into U+FFFD and a filter would
  silently match nothing).
* **Statement timeout**: every database connection of a process serving HTTP runs under
  ``statement_timeout = API_STATEMENT_TIMEOUT_MS``; a query cancelled by it, or a database
  that cannot be reached, is a 503 saying so instead of a 500 or a worker held for minutes.
  Connections of other threads and of commands (the consumer, rebuilds, migrations) keep
  no timeout.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.db import DatabaseError, DataError, InterfaceError, OperationalError, connection
from django.db.backends.signals import connection_created
from django.http import JsonResponse
from psycopg.errors import QueryCanceled

logger = logging.getLogger(__name__)
# Refused in query parameters (tab, LF and CR are left to the filters); the OpenAPI schema
# states the same set (outcomes.schema).
CONTROL_CHARACTERS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
# True while this thread answers an HTTP request: connections made then get the timeout,
# those of other threads (an in-process consumer, commands) do not.
_in_request: contextvars.ContextVar[bool] = contextvars.ContextVar("in_request", default=False)


def _apply_timeout(wrapper) -> None:
    milliseconds = settings.API_STATEMENT_TIMEOUT_MS
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{milliseconds}ms"])
    wrapper._statement_timeout_of = (wrapper.connection, milliseconds)


def _on_connection_created(sender, connection, **kwargs) -> None:
    if _in_request.get() and not connection.in_atomic_block:
        _apply_timeout(connection)


connection_created.connect(_on_connection_created)


def _not_utf8(query_string: str) -> str | None:
    """The name of the first query parameter whose name or value is not valid UTF-8 once
    percent-decoded (as Django would show it), or None."""
    for pair in query_string.split("&"):
        name, _, value = pair.partition("=")
        raw_name = unquote_to_bytes(name.replace("+", " "))
        try:
            raw_name.decode("utf-8")
            unquote_to_bytes(value.replace("+", " ")).decode("utf-8")
        except UnicodeDecodeError:
            return _CONTROL.sub("?", raw_name.decode("utf-8", "replace"))
    return None


class RequestGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            size = int(length)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number."}, status=400)
        if size > settings.API_MAX_BODY_BYTES:
            return JsonResponse(
                {"detail": f"Request body too large: at most {settings.API_MAX_BODY_BYTES:,} bytes."}, status=413
            )
        for name, values in request.GET.lists():
            if _CONTROL.search(name) or any(_CONTROL.search(value) for value in values):
                label = _CONTROL.sub("?", name)
                return JsonResponse({label: ["Control characters (such as NUL) are not allowed."]}, status=400)
            if "\ufffd" in name or any("\ufffd" in value for value in values):
                # Django decodes invalid UTF-8 as U+FFFD: a filter would silently match nothing.
                broken = _not_utf8(request.META.get("QUERY_STRING", ""))
                if broken is not None:
                    return JsonResponse({broken: ["Not valid UTF-8 (percent-encode UTF-8 bytes)."]}, status=400)
        token = _in_request.set(True)
        try:
            self._ensure_timeout()
            return self.get_response(request)
        finally:
            _in_request.reset(token)

    @staticmethod
    def _ensure_timeout() -> None:
        """A connection kept from an earlier request (or made outside one) gets the timeout
        here; one made during the request gets it from ``connection_created``."""
        if connection.connection is None or connection.in_atomic_block:
            return
        if getattr(connection, "_statement_timeout_of", None) != (
            connection.connection,
            settings.API_STATEMENT_TIMEOUT_MS,
        ):
            # A dead connection: the request's first query reconnects or fails as a 503.
            with contextlib.suppress(DatabaseError):
                _apply_timeout(connection)

    def process_exception(self, request, exception):
        if isinstance(exception, DataError):
            # A value the validation let through but PostgreSQL cannot hold: the client's input.
            logger.warning("value refused by the database", extra={"path": request.path, "error": str(exception)[:200]})
            return JsonResponse(
                {"detail": f"A value is out of range for the database: {str(exception).splitlines()[0][:200]}"},
                status=400,
            )
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        cause = exception.__cause__
        if isinstance(cause, QueryCanceled):
            detail = (
                f"The query ran longer than API_STATEMENT_TIMEOUT_MS ({settings.API_STATEMENT_TIMEOUT_MS:,} ms) "
                "and was cancelled. Narrow the filters or the window, or try again."
            )
            logger.warning("statement timeout", extra={"path": request.path})
        else:
            detail = "The database is unavailable right now. Try again shortly."
            logger.error("database unavailable", extra={"path": request.path, "error": str(exception)[:200]})
        response = JsonResponse({"detail": detail}, status=503)
        response["Retry-After"] = "5"
        return response
