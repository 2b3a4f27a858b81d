"""The GraphQL schema: the API's reads, read-only (``/api/graphql/``).

Every report field is its REST endpoint called in this process (``report_runs.dispatch``, as
a saved report runs): the same parameter checks with the same messages, the same snapshot
cache, the same selectors, so a GraphQL answer is the REST answer by construction. Each
field's arguments are derived from the parameters the endpoint takes (``outcomes.parameters``:
the FilterSet and the report's parameter serializers) with their names in camelCase; a
refusal is a GraphQL error naming the argument, with ``extensions.code`` (``BAD_USER_INPUT``,
``NOT_FOUND``, ``CONFLICT``, …). The outcomes connection pages with the list's own filters,
selector and keyset cursors (``outcomes.cursors.page``).

Report fields are nullable: one refused report leaves the others answered.
"""

from __future__ import annotations

import enum
import functools
import inspect
import re
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import strawberry
from django.conf import settings
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType
from rest_framework import serializers
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.utils.str_converters import to_camel_case

from analytics.guards import CONTROL_CHARACTERS
from outcomes import cursors, parameters, queries, report_runs
from outcomes.filters import OutcomeFilter, StrictBooleanFilter
from outcomes.graphql import execution, types
from outcomes.graphql.execution import PlainDataExecutionContext
from outcomes.report_serializers import (
    BidLandscapeSerializer,
    BreakdownSerializer,
    DailyStatsSerializer,
    ExperimentResultsSerializer,
    HistogramSerializer,
    OptimalBidSerializer,
    ReachSerializer,
    ReportStatsSerializer,
    TimeseriesSerializer,
)
from outcomes.serializers import AuctionOutcomeSerializer

# The limits every document is checked against before it runs (strawberry's validators).
MAX_DEPTH = 8  # the deepest answer (results → srm → observed → key) is 4
MAX_ALIASES = 15
MAX_TOKENS = 2000
# The limiters' validation rules, made once: the same rule classes on every request, so a
# document's validation is cached (a limiter made per request would make new classes).
LIMITS = (
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
)
DOCUMENT_CACHE = 256  # documents parsed and validated, kept per process


class FieldError(Exception):
    """A report refused, answered as a GraphQL error with ``extensions``."""

    def __init__(self, message: str, code: str, **extensions: Any) -> None:
        super().__init__(message)
        self.extensions = {"code": code, **extensions}


def now() -> float:
    """The clock of requests' time budgets (``Context``)."""
    return time.monotonic()


@dataclass
class Context:
    """What a request's resolvers share: the HTTP request (its credentials answer the
    dispatched endpoints), per answered field the source that answered it, and the time the
    request may take.

    One REST request runs one report under the statement timeout; a GraphQL request may ask
    for fifteen. So the request as a whole gets the statement timeout as its budget: a field
    that would start after it is spent is refused (``TIMEOUT``) rather than run, and a
    request holds a server thread for at most about twice ``API_STATEMENT_TIMEOUT_MS``."""

    request: HttpRequest
    sources: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=lambda: now())

    def check_budget(self) -> None:
        budget_ms = settings.API_STATEMENT_TIMEOUT_MS
        if budget_ms and (now() - self.started) * 1000 >= budget_ms:
            raise FieldError(
                f"Not run: this request's fields before it took its time budget, API_STATEMENT_TIMEOUT_MS "
                f"({budget_ms:,} ms). Ask for fewer reports in one request.",
                "TIMEOUT",
            )


# ---------------------------------------------------------------------------- arguments
_ENUMS: dict[tuple[str, str], type] = {}


def _enum(owner: type, name: str, choices) -> type:
    label = owner.__name__.removesuffix("Params") + "".join(part.title() for part in name.split("_"))
    found = _ENUMS.get((owner.__name__, name))
    if found is None:
        values = list(choices)
        found = strawberry.enum(
            enum.Enum(label, {value: value for value in values}), description=f"{name}: REST's values."
        )
        _ENUMS[(owner.__name__, name)] = found
    return found


def _filter_type(filter_) -> Any:
    if isinstance(filter_, StrictBooleanFilter):
        return bool
    kind = type(filter_).__name__
    if kind == "NumberFilter":
        return types.Decimal
    if kind == "IsoDateTimeFilter":
        return types.DateTime
    return str


def _param_type(owner: type, name: str, field_: serializers.Field) -> Any:
    if isinstance(field_, serializers.ChoiceField):
        return _enum(owner, name, field_.choices)
    if isinstance(field_, serializers.BooleanField):
        return bool
    if isinstance(field_, serializers.IntegerField):
        return int
    if isinstance(field_, serializers.FloatField):
        return float
    if isinstance(field_, serializers.CharField):
        return str
    raise TypeError(f"{owner.__name__}.{name}: no GraphQL argument type for {type(field_).__name__}")


def _description(text, default=serializers.empty) -> str | None:
    parts = [types.graphql_text(str(text))] if text else []
    if default is not serializers.empty and default is not None:
        parts.append(f"Default: {default}.")
    return " ".join(parts) or None


def arguments(action: str, *, skip: frozenset[str] = frozenset()) -> list[tuple[str, Any, bool]]:
    """(REST name, annotation, required) of each parameter ``action`` takes but ``format``:
    the filters in the FilterSet's order, then the report's own parameters."""
    allowed = parameters.ALLOWED_PARAMS[action] - parameters.ALWAYS - skip
    own: list[tuple[str, Any, bool]] = []
    for serializer_class in parameters.PARAM_SERIALIZERS.get(action, ()):
        for name, field_ in serializer_class().fields.items():
            if name in allowed:
                required = field_.required and field_.default is serializers.empty
                annotation = _param_type(serializer_class, name, field_)
                text = _description(field_.help_text, field_.default)
                own.append(
                    (
                        name,
                        Annotated[annotation if required else annotation | None, strawberry.argument(description=text)],
                        required,
                    )
                )
    own_names = {name for name, _, _ in own}
    filters = []
    for name, filter_ in OutcomeFilter.base_filters.items():
        if name in allowed and name not in own_names:
            text = _description(filter_.extra.get("help_text"))
            filters.append(
                (name, Annotated[_filter_type(filter_) | None, strawberry.argument(description=text)], False)
            )
    return [*filters, *own]


def rest_value(value: Any) -> str:
    """An argument's value as the REST parameter takes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")


def rest_params(kwargs: dict[str, Any]) -> dict[str, str]:
    """The arguments as the endpoint's query parameters; control characters refused as the
    API refuses them in a URL (``analytics.guards``), naming the argument."""
    params = {name: rest_value(value) for name, value in kwargs.items() if value is not None}
    if bad := sorted(name for name, value in params.items() if _CONTROL.search(value)):
        raise refusal(400, {name: ["Control characters (such as NUL) are not allowed."] for name in bad})
    return params


# ---------------------------------------------------------------------------- refusals
def refusal(status: int, answer: Any) -> FieldError:
    """The endpoint's refusal (status, JSON answer) as a GraphQL error naming the arguments."""
    if status == 400:
        errors = answer if isinstance(answer, dict) else {"detail": answer}
        named = {
            (to_camel_case(name) if name not in ("detail", "non_field_errors") else name): _messages(value)
            for name, value in errors.items()
        }
        message = "; ".join(
            f"{name}: {' '.join(texts)}" if name not in ("detail", "non_field_errors") else " ".join(texts)
            for name, texts in named.items()
        )
        return FieldError(message, "BAD_USER_INPUT", arguments=named)
    if status == 404:
        return FieldError(_detail(answer, "Not found."), "NOT_FOUND")
    if status == 409:
        extensions = {k: v for k, v in answer.items() if not isinstance(v, list)} if isinstance(answer, dict) else {}
        return FieldError(
            _detail(answer, "Conflict."), "CONFLICT", **{to_camel_case(k): v for k, v in extensions.items()}
        )
    if status == 403:
        return FieldError(_detail(answer, "Forbidden."), "FORBIDDEN")
    if status == 503:
        return FieldError(_detail(answer, "Unavailable."), "SERVICE_UNAVAILABLE")
    return FieldError(f"The report failed (HTTP {status}).", "INTERNAL_SERVER_ERROR")


def _messages(value: Any) -> list[str]:
    if isinstance(value, list):
        return [text for item in value for text in _messages(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _messages(item)]
    return [str(value)]


def _detail(answer: Any, default: str) -> str:
    if isinstance(answer, dict):
        if "detail" in answer:
            return str(answer["detail"])
        return (
            " ".join(text for value in answer.values() if isinstance(value, list) for text in _messages(value))
            or default
        )
    return default


# ---------------------------------------------------------------------------- report fields
def _answer(info: strawberry.Info, url_name: str, params: dict[str, str], url_kwargs: dict | None = None) -> Any:
    context: Context = info.context
    context.check_budget()
    try:
        path = reverse(url_name, kwargs=url_kwargs or {})
    except NoReverseMatch:  # a key no URL can carry: REST would answer 404
        raise FieldError("Not found.", "NOT_FOUND") from None
    response = report_runs.dispatch(context.request, path, params, accept="application/json")
    answer = report_runs.answer_of(response)
    if response.status_code != 200:
        raise refusal(response.status_code, answer)
    source = response.get("X-Report-Source")
    if source:
        context.sources[info.path.key] = source
    return answer


def _breakdown_values(answer: dict) -> dict:
    by = answer["by"]
    for row in answer["rows"]:
        value = row.get(by)
        row[types.BREAKDOWN_VALUE] = None if value is None else rest_value(value)
    return answer


@dataclass(frozen=True)
class Report:
    action: str  # its name in ``outcomes.parameters``
    url_name: str
    answer: type  # its serializer
    description: str
    many: bool = False
    key: str | None = None  # a path argument (the experiment's key)


REPORTS = {
    "stats": Report(
        "stats",
        "outcome-report-stats",
        ReportStatsSerializer,
        "Totals, averages, eCPM, shading ratio and price percentiles over the filtered outcomes "
        "(REST: /api/outcomes/stats/).",
    ),
    "daily_stats": Report(
        "daily_stats",
        "outcome-report-daily-stats",
        DailyStatsSerializer,
        "The stats measures per UTC day of the event time, oldest first (REST: /api/outcomes/daily_stats/).",
        many=True,
    ),
    "timeseries": Report(
        "timeseries",
        "outcome-report-timeseries",
        TimeseriesSerializer,
        "Measures per time bucket, empty buckets included (REST: /api/outcomes/timeseries/).",
    ),
    "breakdown": Report(
        "breakdown",
        "outcome-report-breakdown",
        BreakdownSerializer,
        "Exact top N of a dimension plus an 'others' row, adding up to the total (REST: /api/outcomes/breakdown/).",
    ),
    "histogram": Report(
        "histogram",
        "outcome-report-histogram",
        HistogramSerializer,
        "Histogram of win or bid prices (REST: /api/outcomes/histogram/).",
    ),
    "reach": Report(
        "reach",
        "outcome-report-reach",
        ReachSerializer,
        "Distinct users: HyperLogLog estimate with 95% bounds, or exact (REST: /api/outcomes/reach/).",
    ),
    "experiment_results": Report(
        "results",
        "experiment-results-results",
        ExperimentResultsSerializer,
        "An experiment's variants compared (REST: /api/experiments/{key}/results/).",
        key="The experiment's key.",
    ),
    "bid_landscape": Report(
        "bid_landscape",
        "insights-bid-landscape",
        BidLandscapeSerializer,
        "Win rate by bid price, the served win-probability model and the market price (REST: "
        "/api/insights/bid_landscape/).",
    ),
    "optimal_bid": Report(
        "optimal_bid",
        "insights-optimal-bid",
        OptimalBidSerializer,
        "The bid that maximises expected surplus for an impression's value (REST: /api/insights/optimal_bid/).",
    ),
}


def _report_field(name: str, report: Report):
    answer = types.object_type(report.answer)
    returns = (list[answer] if report.many else answer) | None
    signature = [inspect.Parameter("info", inspect.Parameter.KEYWORD_ONLY, annotation=strawberry.Info)]
    if report.key:
        key = Annotated[str, strawberry.argument(description=report.key)]
        signature.append(inspect.Parameter("key", inspect.Parameter.KEYWORD_ONLY, annotation=key))
    for arg, annotation, required in arguments(report.action):
        default = inspect.Parameter.empty if required else None
        signature.append(inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default))

    def resolve(info: strawberry.Info, **kwargs: Any) -> Any:
        params = rest_params(kwargs)
        url_kwargs = {"key": params.pop("key")} if report.key else None
        answer_ = _answer(info, report.url_name, params, url_kwargs)
        return _breakdown_values(answer_) if report.action == "breakdown" else answer_

    resolve.__name__ = name
    resolve.__signature__ = inspect.Signature(signature, return_annotation=returns)
    resolve.__annotations__ = {p.name: p.annotation for p in signature} | {"return": returns}
    return strawberry.field(resolver=resolve, description=report.description)


# ---------------------------------------------------------------------------- the outcomes connection
Outcome = types.object_type(AuctionOutcomeSerializer)


@strawberry.type(description="Where a page of a connection is (Relay's PageInfo).")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool = strawberry.field(description="Always false: pages go forward from `after`.")
    start_cursor: str | None
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")


@strawberry.type(description="An outcome and its place in the list.")
class OutcomeEdge:
    cursor: str
    node: Outcome  # type: ignore[valid-type]


@strawberry.type(description="A page of outcomes (Relay connection), keyset-paged: every page as fast as the first.")
class OutcomeConnection:
    edges: list[OutcomeEdge]
    page_info: PageInfo
    query: strawberry.Private[queries.OutcomeQuery]
    counted: strawberry.Private[dict]

    def _count(self) -> tuple[int, bool]:
        if "count" not in self.counted:
            self.counted["count"] = queries.outcome_count(query=self.query)[:2]
        return self.counted["count"]

    @strawberry.field(description="How many outcomes match: exact when cheap, else the planner's estimate.")
    def total_count(self) -> types.BigInt:
        return self._count()[0]

    @strawberry.field(description="true when totalCount is the planner's estimate (as REST's count_is_estimate).")
    def total_count_is_estimate(self) -> bool:
        return self._count()[1]


_LIST_SKIP = frozenset(parameters.ALLOWED_PARAMS["list"] & {"page", "page_size", "cursor"})


def _optional(name: str, kind: type, description: str) -> inspect.Parameter:
    annotation = Annotated[kind | None, strawberry.argument(description=description)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=None)


def _outcomes_field():
    signature = [
        inspect.Parameter("info", inspect.Parameter.KEYWORD_ONLY, annotation=strawberry.Info),
        _optional("first", int, "Outcomes per page: 1 to API_MAX_PAGE_SIZE. Default: API_PAGE_SIZE."),
        _optional("after", str, "The endCursor of the previous page (same filters and ordering)."),
    ]
    for arg, annotation, _required in arguments("list", skip=_LIST_SKIP):
        signature.append(inspect.Parameter(arg, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=None))

    def outcomes(info: strawberry.Info, first: int | None = None, after: str | None = None, **kwargs: Any):
        info.context.check_budget()
        return outcome_page(rest_params(kwargs), first=first, after=after or "")

    outcomes.__signature__ = inspect.Signature(signature, return_annotation=OutcomeConnection | None)
    outcomes.__annotations__ = {p.name: p.annotation for p in signature} | {"return": OutcomeConnection | None}
    return strawberry.field(
        resolver=outcomes,
        description="Stored outcomes with the list's filters and ordering (REST: /api/outcomes/), keyset-paged.",
    )


def outcome_page(params: dict[str, str], *, first: int | None, after: str) -> OutcomeConnection:
    """A page of the list: its checks and messages, its selector, its cursors."""
    try:
        parameters.check_names("list", params)
    except serializers.ValidationError as exc:
        raise refusal(400, exc.detail) from None
    size = settings.API_PAGE_SIZE if first is None else first
    if not 1 <= size <= settings.API_MAX_PAGE_SIZE:
        raise refusal(400, {"first": [f"Must be an integer from 1 to {settings.API_MAX_PAGE_SIZE}; got {size}."]})
    filterset = OutcomeFilter(params, queryset=queries.outcome_list())
    if not filterset.is_valid():
        raise refusal(400, filterset.errors)
    try:
        rows, has_next, ordering = cursors.page(filterset.qs, after, size)
    except cursors.InvalidCursor as exc:
        raise refusal(400, {"after": [str(exc)]}) from None
    write = AuctionOutcomeSerializer().to_representation
    # Plain data, as the reports' answers: completed without resolvers (``execution``).
    edges = [{"cursor": cursors.position(ordering, row), "node": write(row)} for row in rows]
    return OutcomeConnection(
        edges=edges,
        page_info={
            "has_next_page": has_next,
            "has_previous_page": False,
            "start_cursor": edges[0]["cursor"] if edges else None,
            "end_cursor": edges[-1]["cursor"] if edges else None,
        },
        query=queries.OutcomeQuery.from_filters(filterset.form.cleaned_data),
        counted={},
    )


def _outcome(info: strawberry.Info, id: types.BigInt) -> Outcome | None:  # type: ignore[valid-type]  # noqa: A002
    """One outcome by id (REST: /api/outcomes/{id}/); null when there is none."""
    try:
        return _answer(info, "outcome-detail", {}, {"pk": id})
    except FieldError as exc:
        if exc.extensions["code"] == "NOT_FOUND":
            return None
        raise


def _query_type() -> type:
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "outcomes": _outcomes_field(),
        "outcome": strawberry.field(resolver=_outcome, description="One outcome by id; null when there is none."),
    }
    for name, report in REPORTS.items():
        namespace[name] = _report_field(name, report)
    return strawberry.type(
        type("Query", (), namespace),
        description="Auction outcomes and their reports; every field is the REST endpoint it names, read-only.",
    )


Query = _query_type()


class Schema(strawberry.Schema):
    def process_errors(self, errors, execution_context=None) -> None:
        """Not logged here: each error is classified, counted and (when unexpected) logged
        where it is answered (``outcomes.graphql.view.answer_error``)."""


schema = Schema(
    query=Query,
    extensions=[  # made afresh for each request, as strawberry asks
        functools.partial(AddValidationRules, LIMITS),
        functools.partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        # Dashboards send the same few documents again and again: each is parsed and
        # validated once (bounded LRU caches, keyed by the document and the rules).
        functools.partial(ParserCache, maxsize=DOCUMENT_CACHE),
        functools.partial(ValidationCache, maxsize=DOCUMENT_CACHE),
    ],
    config=StrawberryConfig(default_resolver=types.resolve, scalar_map=types.SCALARS),
    execution_context_class=PlainDataExecutionContext,
)
PlainDataExecutionContext.plans = execution.plans(
    schema._schema, types.plain_types() | {"OutcomeConnection", "OutcomeEdge", "PageInfo", "SampleRatio"}
)


def full_selection(type_name: str) -> str:
    """Every field of ``type_name``, nested types included, as a selection set: what a REST
    answer carries, asked for in GraphQL (the parity tests and the benchmark ask so)."""
    return _select(schema._schema.get_type(type_name))


def _select(graphql_type) -> str:
    parts = []
    for name, field_ in graphql_type.fields.items():
        inner = graphql_type_of(field_.type)
        parts.append(f"{name} {_select(inner)}" if isinstance(inner, GraphQLObjectType) else name)
    return "{ " + " ".join(parts) + " }"


def graphql_type_of(graphql_type):
    while isinstance(graphql_type, GraphQLNonNull | GraphQLList):
        graphql_type = graphql_type.of_type
    return graphql_type
