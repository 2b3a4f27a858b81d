"""The services' refusals as HTTP answers, in one place (DRF's ``EXCEPTION_HANDLER``)."""

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.views import exception_handler as drf_exception_handler

from outcomes import money, writes
from outcomes.queries.landscape import NoModel


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


def exception_handler(exc, context):
    """``OutcomeConflict`` → 409, ``OutcomeInvalid`` → 400 by field, ``OutcomeNotFound`` → 404,
    ``MissingRate`` → 409 naming the day and currency, ``NoModel`` → 409 saying how to fit one;
    everything else as DRF answers it."""
    if isinstance(exc, money.MissingRate):
        exc = Conflict(
            {
                "convert_to": [str(exc)],
                "missing_rate": {"day": exc.day.isoformat(), "currency": exc.currency},
            }
        )
    elif isinstance(exc, NoModel):
        exc = Conflict({"model": [str(exc)]})
    elif isinstance(exc, writes.OutcomeConflict):
        exc = Conflict(exc.errors)
    elif isinstance(exc, writes.OutcomeInvalid):
        exc = ValidationError(exc.errors)
    elif isinstance(exc, writes.OutcomeNotFound):
        exc = NotFound()
    return drf_exception_handler(exc, context)
