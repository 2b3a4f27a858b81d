"""The OpenAPI schema as the API really behaves: who may call each operation (see
``outcomes.permissions``), every status code it can answer with, and the headers it sets."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from rest_framework.permissions import SAFE_METHODS

from analytics.guards import CONTROL_CHARACTERS
from outcomes import xlsx
from outcomes.validation import COLUMN_MAX_PRICE, CURRENCY_PATTERN, SLUG_PATTERN

_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_FIELD_ERRORS = {
    "type": "object",
    "description": "Each offending parameter or field with what is wrong with it, or a `detail` (e.g. a body "
    "that is not JSON); a saved report's `params`: each parameter with what its endpoint says of it.",
    "additionalProperties": {
        "oneOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "string"},
            {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        ]
    },
}
# A report converting money without a rate it needs (``outcomes.money.MissingRate``).
_MISSING_RATE = {
    "type": "object",
    "properties": {
        "convert_to": {"type": "array", "items": {"type": "string"}},
        "missing_rate": {
            "type": "object",
            "properties": {"day": {"type": "string", "format": "date"}, "currency": {"type": "string"}},
            "required": ["day", "currency"],
        },
    },
    "required": ["convert_to", "missing_rate"],
}
XLSX = xlsx.CONTENT_TYPE
MONEY_REPORTS = ("stats", "daily_stats", "timeseries", "breakdown", "results", "bid_landscape")
# Query parameters, as strictly as the API checks them. An empty value is a 400 (but for
# ``cursor``, where it starts a walk).
_TEXT = f"^[^{CONTROL_CHARACTERS}]*$"  # what the guards let through


def _param_schemas() -> dict[str, dict]:
    return {
        "user_id": {"type": "string", "minLength": 1, "pattern": _TEXT},
        "site_domain": {"type": "string", "minLength": 1, "pattern": _TEXT},
        "currency": {"type": "string", "pattern": CURRENCY_PATTERN},
        "experiment": {"type": "string", "pattern": SLUG_PATTERN},
        "variant": {"type": "string", "pattern": SLUG_PATTERN},
        "bid_id": {"type": "string", "minLength": 1, "pattern": _TEXT},
        "page": {"type": "integer", "minimum": 1},
        "min_price": {"type": "number", "minimum": 0, "maximum": float(COLUMN_MAX_PRICE)},
        "max_price": {"type": "number", "minimum": 0, "maximum": float(COLUMN_MAX_PRICE)},
        "page_size": {"type": "integer", "minimum": 1, "maximum": settings.API_MAX_PAGE_SIZE},
        "cursor": {"type": "string", "pattern": _TEXT},
        "convert_to": {"type": "string", "pattern": "^([A-Za-z]{3}|[Nn][Oo][Nn][Ee])$"},
        "value": {"type": "number", "minimum": 0.01, "maximum": 100000},
    }


_INT_HEADER = {"schema": {"type": "integer"}}
_STR_HEADER = {"schema": {"type": "string"}}


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


class ScopedAutoSchema(AutoSchema):
    def get_auth(self):
        """Reads need no credentials when API_READ_ACCESS=public (an empty requirement)."""
        auth = super().get_auth()
        if self.method in SAFE_METHODS and settings.API_READ_ACCESS == "public" and {} not in auth:
            auth.append({})
        return auth

    def _map_basic_serializer(self, serializer, direction):
        """A serializer whose answers always carry every field says so (``complete_output``,
        but for those named in ``optional_output``);
        one that refuses unknown fields (``closed``) says that."""
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "response" and getattr(serializer, "complete_output", False):
            optional = set(getattr(serializer, "optional_output", ()))
            schema["required"] = sorted(set(schema["properties"]) - optional)
        if direction == "request" and getattr(serializer, "closed", False):
            schema["additionalProperties"] = False
        return schema

    def _get_parameters(self):
        parameters = super()._get_parameters()
        tightened = _param_schemas()
        for parameter in parameters:
            if parameter.get("in") == "query" and parameter["name"] in tightened:
                # Tightened, keeping a length limit the endpoint's own parameters set (optimal_bid's site_domain).
                kept = {k: v for k, v in parameter.get("schema", {}).items() if k == "maxLength"}
                parameter["schema"] = {**tightened[parameter["name"]], **kept}
            if parameter.get("in") == "query" and parameter["name"] == "ordering":
                parameter["schema"]["minItems"] = 1
        return parameters

    def _get_filter_parameters(self):
        """Only lists and the export take the list's filter set (with ``ordering``); reports
        declare their own parameters, and refuse ``ordering``/``page``."""
        if getattr(self.view, "action", None) not in ("list", "winners", "export"):
            return []
        return super()._get_filter_parameters()

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, response in responses.items():
            if code.startswith("2"):
                workbook = response.get("content", {}).get(XLSX)
                if workbook is not None:  # ?format=xlsx: a file, the answer as an Excel workbook
                    response["content"][XLSX] = {"schema": {"type": "string", "format": "binary"}}
                headers = response.setdefault("headers", {})
                headers["X-Request-ID"] = {**_STR_HEADER, "description": "The request id (echoed or made)."}
                if self.method == "GET" and getattr(self.view, "action", None) not in (None, "export"):
                    headers["X-Cache"] = {**_STR_HEADER, "description": "HIT, MISS or BYPASS (snapshot cache)."}
        action = getattr(self.view, "action", None)
        detail = "{" in self.path or action in ("list", "winners")  # a page past the end is a 404 too
        errors = {
            "400": _json(_FIELD_ERRORS, "Invalid or unknown parameter, or invalid body."),
            "401": _json(
                _ERROR,
                "Missing credentials where a key is needed, or a malformed, unknown, revoked or expired key.",
                {"WWW-Authenticate": _STR_HEADER},
            ),
            "403": _json(_ERROR, "The key (or login) lacks the scope this operation needs."),
            "429": _json(_ERROR, "Rate limit reached.", {"Retry-After": _INT_HEADER}),
            "503": _json(
                _ERROR,
                "Database unavailable, or the query ran past API_STATEMENT_TIMEOUT_MS.",
                {"Retry-After": _INT_HEADER},
            ),
        }
        if detail:
            errors["404"] = _json(
                _FIELD_ERRORS,
                "No such outcome or experiment (results: not registered, and no outcome in the window carries the "
                "key), or (lists) a page past the last one.",
            )
        if self.method in ("POST", "PUT", "PATCH"):
            errors["413"] = _json(_ERROR, "Request body above API_MAX_BODY_BYTES.")
        if self.method == "POST":
            errors["409"] = _json(_FIELD_ERRORS, "An outcome with this bid_id is stored already (it is kept).")
        if self.method == "GET" and action in MONEY_REPORTS:
            errors["409"] = _json(
                _MISSING_RATE, "Money is converted (convert_to) and an exchange rate it needs is not loaded."
            )
        if self.method == "GET" and action == "optimal_bid":
            errors["409"] = _json(
                _FIELD_ERRORS,
                "No bid model serves the segment yet (manage.py fit_bid_models), or no currency was given and "
                "models exist for several.",
            )
        for code, response in errors.items():
            responses.setdefault(code, response)
        return dict(sorted(responses.items()))
