"""One JSON object per log line, everywhere (Django, the consumer, gunicorn), each HTTP
request's lines carrying its request id.

* ``RequestIdMiddleware`` takes the client's ``X-Request-ID`` when it is a sane token
  (≤ 128 characters of letters, digits, ``.``, ``_``, ``-``), else makes one, keeps it in a
  context variable for the request's duration and returns it in the response header.
* ``RequestIdFilter`` (on the handler) adds ``request_id`` to every record logged meanwhile.
* ``JsonLineFormatter`` turns gunicorn's access records (a format string and a dict of
  atoms) into fields, so an access line is JSON with ``status``, ``duration_ms``… rather
  than JSON inside a string. User ids never reach a line: the access line's ``query`` and
  the request Django attaches to its 4xx/5xx lines are written with them redacted
  (``analytics.privacy``).

Nothing here imports Django settings: gunicorn's configuration loads it before Django.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

from pythonjsonlogger.json import JsonFormatter

from analytics.privacy import redacted_query

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_SANE = re.compile(r"[A-Za-z0-9._-]{1,128}")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            # Django logs a 4xx/5xx after the middleware has finished, with the request attached.
            current = request_id.get() or getattr(getattr(record, "request", None), "request_id", None)
            if current is not None:
                record.request_id = current
        return True


class RequestIdMiddleware:
    header = "X-Request-ID"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get(self.header, "")
        rid = given if _SANE.fullmatch(given) else uuid.uuid4().hex
        request.request_id = rid
        token = request_id.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(token)
        response[self.header] = rid
        return response


FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
RENAMED = {"asctime": "timestamp", "levelname": "level", "name": "logger"}
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"

# gunicorn access atoms → field names (see gunicorn's access_log_format documentation).
_ACCESS_ATOMS = {
    "h": "remote",
    "m": "method",
    "U": "path",
    "q": "query",
    "H": "protocol",
    "s": "status",
    "B": "bytes",
    "M": "duration_ms",
    "a": "user_agent",
    "{x-request-id}o": "request_id",
}


class JsonLineFormatter(JsonFormatter):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("rename_fields", RENAMED)
        kwargs.setdefault("datefmt", DATE_FORMAT)
        super().__init__(*args or (FIELDS,), **kwargs)

    def add_fields(self, log_record, record, message_dict):
        super().add_fields(log_record, record, message_dict)
        atoms = record.args if record.name == "gunicorn.access" and isinstance(record.args, dict) else None
        if atoms:
            for atom, field in _ACCESS_ATOMS.items():
                value = atoms[atom]  # gunicorn's atoms give "-" for what is missing
                if value not in (None, "-", ""):
                    log_record[field] = int(value) if field in ("status", "bytes", "duration_ms") else value
            if "query" in log_record:
                log_record["query"] = redacted_query(log_record["query"])
        request = getattr(record, "request", None)
        if request is not None and hasattr(request, "META"):  # Django's request on its 4xx/5xx lines
            query = redacted_query(request.META.get("QUERY_STRING", ""))
            log_record["request"] = f"{request.method} {request.path}" + (f"?{query}" if query else "")


def json_logging(level: str, loggers: dict) -> dict:
    """A ``logging.config.dictConfig`` dict: one JSON line per record on stdout, with the
    request id, for the root logger at ``level`` and the given ``loggers``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLineFormatter}},
        "filters": {"request_id": {"()": RequestIdFilter}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["request_id"],
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": loggers,
    }


def gunicorn_logconfig(level: str, *, access: bool) -> dict:
    """gunicorn's ``logconfig_dict``: its error and access loggers, as JSON on stdout."""
    return json_logging(
        level,
        {
            "gunicorn.error": {"handlers": ["stdout"], "level": level, "propagate": False},
            # With a logconfig_dict gunicorn always emits access records: the level drops them.
            "gunicorn.access": {"handlers": ["stdout"], "level": "INFO" if access else "CRITICAL", "propagate": False},
        },
    )


class WithoutColour(logging.Filter):
    """Drops uvicorn's ``color_message`` (the message again, with terminal escapes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


def uvicorn_logconfig(level: str) -> dict:
    """uvicorn's ``log_config`` (the live role): its own lines as JSON on stdout like every
    other role's; no access log (a stream is one request that lasts)."""
    config = json_logging(
        level,
        {
            "uvicorn": {"handlers": ["uvicorn"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": ["uvicorn"], "level": "CRITICAL", "propagate": False},
        },
    )
    config["filters"]["without_colour"] = {"()": WithoutColour}
    config["handlers"]["uvicorn"] = {**config["handlers"]["stdout"], "filters": ["request_id", "without_colour"]}
    return config
