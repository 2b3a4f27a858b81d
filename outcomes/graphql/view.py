"""``/api/graphql/``: GraphQL over HTTP, read-only, behind the API's own doors.

* The same authentication (API keys, the session) and access as REST reads: the ``read``
  scope, whether the query comes by GET or POST (POST reads here; there are no mutations).
* The same rate limits, charged by what a request asks for (``cost``: one per report).
* The same statement timeout and snapshot cache: each report field is its REST endpoint.
* Requests GraphQL cannot run (no ``query``, a body that is not a JSON object, unknown keys
  or parameters, ``variables`` not an object) are a 400 naming the problem; a query that
  runs answers 200 with ``data`` and, if any, ``errors`` — each with ``extensions.code``,
  counted in ``analytics_graphql_errors_total``. An unexpected failure is logged with its
  traceback and answered as ``INTERNAL_SERVER_ERROR`` without its details.
* GraphiQL (``GET`` from a browser, DEBUG only), served from the package's own files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from csp.decorators import csp_update
from django.conf import settings
from django.db import DatabaseError, DataError
from django.middleware.csrf import get_token
from django.shortcuts import render
from drf_spectacular.utils import extend_schema
from graphql import GraphQLError
from psycopg.errors import QueryCanceled
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from analytics.metrics import GRAPHQL_COST, GRAPHQL_ERRORS
from outcomes.graphql import cost, schema
from outcomes.renderers import FastJSONRenderer, StrictJSONParser

logger = logging.getLogger(__name__)

_BODY_KEYS = {"query", "variables", "operationName", "extensions"}
_GET_PARAMS = {"query", "variables", "operationName"}


@dataclass(frozen=True)
class Operation:
    query: str
    variables: dict[str, Any] | None
    name: str | None


def _operation(source: dict, *, from_url: bool) -> Operation:
    """The request's operation, or a 400 naming what is wrong with it."""
    allowed = _GET_PARAMS if from_url else _BODY_KEYS
    unknown = sorted(set(source) - allowed)
    if unknown:
        where = "query parameter" if from_url else "key"
        raise ValidationError(
            {name[:60]: [f"Unknown {where}: a GraphQL request has {', '.join(sorted(allowed))}."] for name in unknown}
        )
    query = source.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ValidationError({"query": ["Give the GraphQL document to run, as a string."]})
    variables = source.get("variables")
    if from_url and variables is not None:
        try:
            variables = orjson.loads(variables)
        except orjson.JSONDecodeError:
            raise ValidationError({"variables": ["Not JSON: give a JSON object."]}) from None
    if variables is not None and not isinstance(variables, dict):
        raise ValidationError({"variables": ["Give a JSON object (or leave it out)."]})
    name = source.get("operationName")
    if name is not None and not isinstance(name, str):
        raise ValidationError({"operationName": ["Give the name of an operation in the document, as a string."]})
    return Operation(query=query, variables=variables, name=name or None)


def _syntax_code(message: str) -> str:
    return "QUERY_TOO_COMPLEX" if "tokens" in message else "GRAPHQL_PARSE_FAILED"


def _before_execution_code(message: str) -> str:
    if message.startswith("Syntax Error"):
        return _syntax_code(message)
    if "exceeds maximum operation depth" in message or "aliases found" in message:
        return "QUERY_TOO_COMPLEX"
    if message.startswith("Variable "):
        return "BAD_USER_INPUT"
    return "GRAPHQL_VALIDATION_FAILED"


def answer_error(error: GraphQLError) -> dict:
    """``error`` as the answer shows it, with its ``extensions.code``; unexpected failures
    logged and masked."""
    formatted = error.formatted
    original = error.original_error
    extensions: dict[str, Any]
    if isinstance(original, schema.FieldError):
        extensions = dict(original.extensions)
    elif isinstance(original, DataError):
        extensions = {"code": "BAD_USER_INPUT"}
        formatted["message"] = f"A value is out of range for the database: {str(original).splitlines()[0][:200]}"
    elif isinstance(original, DatabaseError) and isinstance(original.__cause__, QueryCanceled):
        extensions = {"code": "TIMEOUT"}
        formatted["message"] = (
            f"The query ran longer than API_STATEMENT_TIMEOUT_MS ({settings.API_STATEMENT_TIMEOUT_MS:,} ms) and was "
            "cancelled. Narrow the filters or the window, or try again."
        )
        logger.warning("statement timeout", extra={"path": "/api/graphql/", "field": formatted.get("path")})
    elif isinstance(original, DatabaseError):
        extensions = {"code": "SERVICE_UNAVAILABLE"}
        formatted["message"] = "The database is unavailable right now. Try again shortly."
        logger.error("database unavailable", extra={"path": "/api/graphql/", "error": str(original)[:200]})
    elif error.path is None and (original is None or isinstance(original, ValueError | TypeError | GraphQLError)):
        # Parsing, validation (the limits among it) and the variables' coercion: the client's document.
        extensions = {"code": _before_execution_code(error.message)}
    else:
        extensions = {"code": "INTERNAL_SERVER_ERROR"}
        logger.error(
            "graphql field failed",
            exc_info=original or error,
            extra={"field": ".".join(map(str, error.path or ())), "error": error.message[:200]},
        )
        formatted["message"] = "Unexpected error."
    formatted["extensions"] = extensions
    GRAPHQL_ERRORS.labels(extensions["code"]).inc()
    return formatted


@csp_update({"font-src": ["data:"]})  # GraphiQL's stylesheet carries its fonts inline
def graphiql(request):
    return render(request, "outcomes/graphiql.html")


class GraphQLView(APIView):
    """Read outcomes and reports with GraphQL: the REST reads' fields and arguments in
    camelCase. The schema is in ``schema.graphql`` at the repository's root."""

    access_scope = "read"  # POST runs a query here, never a change
    renderer_classes = [FastJSONRenderer]
    parser_classes = [StrictJSONParser]

    # ------------------------------------------------------------------ the request
    def perform_content_negotiation(self, request, force=False):
        """JSON whatever ``Accept`` says (``application/graphql-response+json``, a browser's
        ``text/html`` for GraphiQL, which ``get`` serves itself): never a 406."""
        return super().perform_content_negotiation(request, force=True)

    def operation(self, request) -> Operation:
        found = getattr(request, "_graphql_operation", None)
        if found is None:
            if request.method == "POST":
                if not isinstance(request.data, dict):
                    raise ParseError('The body must be a JSON object: {"query": …, "variables": {…}}.')
                found = _operation(request.data, from_url=False)
            else:
                found = _operation(request.query_params.dict(), from_url=True)
            request._graphql_operation = found
        return found

    def request_cost(self, request) -> int:
        """The rate-limit throttle asks: one per report the operation asks for (at least 1)."""
        found = getattr(request, "_graphql_cost", None)
        if found is None:
            try:
                operation = self.operation(request)
            except (ValidationError, ParseError):
                return 1  # refused before it runs: the refusal says why
            found = request._graphql_cost = cost.request_cost(
                operation.query, operation.name, max_tokens=schema.MAX_TOKENS
            )
        return found

    # ------------------------------------------------------------------ methods
    # Not in the OpenAPI schema: GraphQL's contract is its own schema (schema.graphql).
    @extend_schema(exclude=True)
    def get(self, request):
        if settings.DEBUG and not request.query_params and "text/html" in request.META.get("HTTP_ACCEPT", ""):
            get_token(request)  # GraphiQL posts with the session's CSRF token
            return graphiql(request._request)
        return self.run(request)

    @extend_schema(exclude=True)
    def post(self, request):
        return self.run(request)

    def run(self, request) -> Response:
        operation = self.operation(request)
        charged = self.request_cost(request)
        context = schema.Context(request=request._request)
        try:
            result = schema.schema.execute_sync(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                operation_name=operation.name,
                allowed_operation_types=(OperationType.QUERY,),
            )
        except InvalidOperationTypeError as exc:
            error = GraphQLError(f"This API is read-only: a {exc.operation_type.value} cannot run here, only queries.")
            return Response({"errors": [answer_error(error)], "extensions": {"cost": charged, "reportSources": {}}})
        GRAPHQL_COST.inc(charged)
        answer: dict[str, Any] = {}
        if result.data is not None or not result.errors:  # absent when it never ran
            answer["data"] = result.data
        if result.errors:
            answer["errors"] = [answer_error(error) for error in result.errors]
        answer["extensions"] = {"cost": charged, "reportSources": context.sources}
        return Response(answer)
