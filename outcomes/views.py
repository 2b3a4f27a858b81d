"""HTTP layer: thin DRF views over the selectors in ``outcomes.queries`` and the write service.

Lists start from ``self.filter_queryset(self.get_queryset())``; reports validate the same
FilterSet into an ``OutcomeQuery`` and call one selector, so the filters mean the same thing
everywhere. Unknown query parameters are refused (400) rather than ignored, so a typo such
as ``?usr_id=`` cannot silently return unfiltered data; the allowed names are derived from
the FilterSet, the paginator and each report's parameter serializer. Every report answer
carries ``X-Report-Source``: the rollup grains that answered it, or ``raw``. Every read
goes through the snapshot cache (``outcomes.cache``) and says how in ``X-Cache``.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.dbrouting import read_alias
from outcomes import cache, export_session, exports, ingestion, queries, writes
from outcomes.filters import FILTER_PARAMS, OutcomeFilter
from outcomes.pagination import OutcomePagination
from outcomes.renderers import StrictJSONParser
from outcomes.serializers import (
    AuctionOutcomeSerializer,
    BreakdownParams,
    BreakdownSerializer,
    DailyStatsSerializer,
    HistogramParams,
    HistogramSerializer,
    IngestionSerializer,
    OutcomeWriteSerializer,
    ReachSerializer,
    ReportStatsSerializer,
    TimeseriesParams,
    TimeseriesSerializer,
)

_ALWAYS = {"format"}
# A report over one bid id would be that outcome: reports take every filter but these.
_LIST_ONLY = {"ordering", "bid_id"}
_REPORT_FILTERS = FILTER_PARAMS - _LIST_ONLY
_LIST = FILTER_PARAMS | OutcomePagination.query_params | _ALWAYS
_ALLOWED_PARAMS = {
    "list": _LIST,
    "winners": _LIST,
    "stats": _REPORT_FILTERS | _ALWAYS,
    "daily_stats": _REPORT_FILTERS | _ALWAYS,
    "reach": _REPORT_FILTERS | _ALWAYS,
    "timeseries": _REPORT_FILTERS | set(TimeseriesParams().fields) | _ALWAYS,
    "breakdown": _REPORT_FILTERS | set(BreakdownParams().fields) | _ALWAYS,
    "histogram": _REPORT_FILTERS | set(HistogramParams().fields) | _ALWAYS,
    "export": FILTER_PARAMS | {"escape_formulas"} | _ALWAYS,
}


def _chained(first, rest):
    try:
        yield first
        yield from rest
    finally:
        rest.close()  # also when the client left before the first chunk was sent


def _filter_parameters() -> list[OpenApiParameter]:
    """The FilterSet's parameters for the schema of the report actions (DRF lists them for list views only)."""
    kinds = {
        filters.CharFilter: OpenApiTypes.STR,
        filters.NumberFilter: OpenApiTypes.DECIMAL,
        filters.IsoDateTimeFilter: OpenApiTypes.DATETIME,
    }
    parameters = []
    for name, field in OutcomeFilter.base_filters.items():
        if name in _LIST_ONLY:
            continue
        kind = next((t for cls, t in kinds.items() if isinstance(field, cls)), OpenApiTypes.BOOL)
        parameters.append(OpenApiParameter(name, kind, description=str(field.extra.get("help_text", ""))))
    return parameters


REPORT_FILTERS = _filter_parameters()


def _body(request):
    """The request's JSON object (a form post from the browsable API becomes a plain dict)."""
    data = request.data
    return data.dict() if hasattr(data, "dict") else data


def _report(data, source: str) -> Response:
    return Response(data, headers={"X-Report-Source": source})


def _cached(request, respond, *, cacheable: bool = True) -> HttpResponse | Response:
    """``respond()``'s response, or the one given to the same URL at the current database
    snapshot (``outcomes.cache``); ``cacheable=False`` for answers that depend on the clock.

    JSON answers are kept as the bytes sent (the cache's budget is in bytes); another media
    type (the browsable API's HTML) is computed each time."""
    if not isinstance(request.accepted_renderer, JSONRenderer):
        response = respond()
        response["X-Cache"] = cache.BYPASS
        return response

    def compute():
        response = respond()
        headers = {name: value for name, value in response.items() if name.lower() != "content-type"}
        return JSONRenderer().render(response.data), (response.status_code, headers)

    if cacheable:
        (body, (code, headers)), how = cache.answers.get_or_compute(request.build_absolute_uri(), compute)
    else:
        (body, (code, headers)), how = compute(), cache.BYPASS
    response = HttpResponse(body, status=code, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    response["X-Cache"] = how
    return response


class TooManyExports(APIException):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "too_many_exports"

    def __init__(self) -> None:
        super().__init__(
            f"{settings.API_EXPORT_CONCURRENCY} exports are running in this API process already "
            "(API_EXPORT_CONCURRENCY); retry in a few seconds."
        )
        self.wait = EXPORT_RETRY_AFTER_S


EXPORT_RETRY_AFTER_S = 10


def _boolean(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValidationError({name: [f"'{value[:20]}' is not a boolean; use true or false."]})


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class AuctionOutcomeViewSet(viewsets.ModelViewSet):
    """Auction outcomes: list, retrieve, reports; changes by staff only, through the write service."""

    serializer_class = AuctionOutcomeSerializer
    filterset_class = OutcomeFilter
    parser_classes = [StrictJSONParser]  # bodies are JSON documents, like the messages on the topic

    def get_queryset(self):
        return queries.outcome_list(winners_only=self.action == "winners")

    def get_serializer_class(self):
        if self.request is not None and self.request.method in ("POST", "PUT", "PATCH"):
            # What the browsable API's form shows: the body the API takes (the write service
            # validates it; answers are always AuctionOutcomeSerializer's).
            return OutcomeWriteSerializer
        return AuctionOutcomeSerializer

    def _output(self, outcome) -> dict:
        return AuctionOutcomeSerializer(outcome, context=self.get_serializer_context()).data

    def perform_content_negotiation(self, request, force=False):
        export = self.action == "export" or (
            self.action is None and request.query_params.get("format") in exports.FORMATS  # a 405 to come
        )
        if export:
            # ``format`` names the export's format (csv, ndjson), not a renderer; errors are JSON.
            return JSONRenderer(), JSONRenderer.media_type
        return super().perform_content_negotiation(request, force)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action is None:
            return  # a method this route does not have: DRF answers 405
        empty = sorted(name for name, value in request.query_params.items() if value == "" and name != "cursor")
        if empty:
            raise ValidationError({name[:60]: ["Empty value: give one, or leave the parameter out."] for name in empty})
        allowed = _ALLOWED_PARAMS.get(self.action, _ALWAYS)
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            hint = f"Allowed here: {', '.join(sorted(allowed))}."
            raise ValidationError({name[:60]: [f"Unknown query parameter. {hint}"] for name in unknown})

    # ------------------------------------------------------------------ lists
    def list(self, request, *args, **kwargs):
        return _cached(request, self._list)

    def _list(self):
        filterset = self._filterset()  # parsed once: it filters the rows and gives the count's query
        queryset = filterset.qs
        query = queries.OutcomeQuery.from_filters(filterset.form.cleaned_data)
        if self.action == "winners":
            query = query.winners()
        self.paginator.count_function = lambda: queries.outcome_count(query=query)[:2]
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, *args, **kwargs):
        return _cached(request, lambda: super(AuctionOutcomeViewSet, self).retrieve(request, *args, **kwargs))

    @extend_schema(
        summary="Only won auctions (same filters, ordering and pagination as the list).",
        responses=AuctionOutcomeSerializer(many=True),
    )
    @action(detail=False, methods=["get"])
    def winners(self, request):
        return self.list(request)

    # ------------------------------------------------------------------ reports
    def _filterset(self) -> OutcomeFilter:
        filterset = self.filterset_class(self.request.query_params, queryset=self.get_queryset(), request=self.request)
        if not filterset.is_valid():
            raise ValidationError(filterset.errors)
        return filterset

    def _query(self) -> queries.OutcomeQuery:
        return queries.OutcomeQuery.from_filters(self._filterset().form.cleaned_data)

    def _params(self, serializer_class):
        params = serializer_class(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return params.validated_data

    @extend_schema(
        summary="Totals, averages, eCPM, shading ratio and exact price percentiles over the filtered outcomes.",
        parameters=REPORT_FILTERS,
        responses=ReportStatsSerializer,
    )
    @action(detail=False, methods=["get"])
    def stats(self, request):
        return _cached(request, lambda: _report(*queries.outcome_stats(query=self._query())))

    @extend_schema(
        summary="The stats measures per UTC day of the event time, oldest first.",
        parameters=REPORT_FILTERS,
        responses=DailyStatsSerializer(many=True),
    )
    @action(detail=False, methods=["get"], pagination_class=None)  # a plain list, as the schema says
    def daily_stats(self, request):
        return _cached(request, lambda: _report(*queries.outcome_daily_stats(query=self._query())))

    @extend_schema(
        summary="Measures per time bucket, empty buckets included.",
        parameters=[*REPORT_FILTERS, TimeseriesParams],
        responses=TimeseriesSerializer,
    )
    @action(detail=False, methods=["get"])
    def timeseries(self, request):
        # Without ``end`` the window ends now: a clock-dependent answer is not cached.
        return _cached(request, self._timeseries, cacheable="end" in request.query_params)

    def _timeseries(self):
        query = self._query()
        params = self._params(TimeseriesParams)
        tz: ZoneInfo = params["tz"]
        try:
            boundaries = queries.timeseries_buckets(
                granularity=params["granularity"], start=query.start, end=query.end, tz=tz
            )
        except queries.TooManyBuckets as exc:
            raise ValidationError({"granularity": [str(exc)]}) from None
        except ValueError as exc:
            raise ValidationError({"start": [str(exc)]}) from None
        return _report(
            *queries.outcome_timeseries(query=query, boundaries=boundaries, granularity=params["granularity"], tz=tz)
        )

    @extend_schema(
        summary="Exact top N of a dimension plus an 'others' row, adding up to the total.",
        parameters=[*REPORT_FILTERS, BreakdownParams],
        responses=BreakdownSerializer,
    )
    @action(detail=False, methods=["get"])
    def breakdown(self, request):
        return _cached(
            request, lambda: _report(*queries.outcome_breakdown(query=self._query(), **self._params(BreakdownParams)))
        )

    @extend_schema(
        summary="Histogram of win or bid prices, from 0 to the 99th percentile (last bin open-ended).",
        parameters=[*REPORT_FILTERS, HistogramParams],
        responses=HistogramSerializer,
    )
    @action(detail=False, methods=["get"])
    def histogram(self, request):
        return _cached(
            request,
            lambda: _report(*queries.outcome_price_histogram(query=self._query(), **self._params(HistogramParams))),
        )

    @extend_schema(
        summary="Distinct users: HyperLogLog estimate with 95% bounds, or exact.",
        parameters=REPORT_FILTERS,
        responses=ReachSerializer,
    )
    @action(detail=False, methods=["get"])
    def reach(self, request):
        return _cached(request, lambda: _report(*queries.outcome_reach(query=self._query())))

    # ------------------------------------------------------------------ exports
    @extend_schema(
        summary="Every filtered outcome, streamed as CSV (with a header row) or NDJSON (one object per line).",
        description=(
            "Columns: " + ", ".join(exports.COLUMNS) + ". Decimals are exact strings, timestamps ISO 8601 UTC "
            "(`Z`), `user_interests` a JSON array, `site_domain` empty when the message had none. Ordered by "
            "event time then id unless `ordering` says otherwise. Streams in constant memory: nothing is "
            "counted or buffered first, so there is no size limit and no total."
        ),
        parameters=[
            OpenApiParameter(
                "format", OpenApiTypes.STR, enum=sorted(exports.FORMATS), default="csv", description="File format."
            ),
            OpenApiParameter(
                "ordering",
                OpenApiTypes.STR,
                enum=[*exports.ORDERINGS],
                description="One field an index serves in full (default event_time): an export streams in that "
                "order from its first row.",
            ),
            OpenApiParameter(
                "escape_formulas",
                OpenApiTypes.BOOL,
                default=True,
                description="CSV: a ' before a text cell (bid id, user id, site domain, currency) that starts "
                "with =, +, -, @, a tab or a carriage return, so a spreadsheet never runs it as a formula. false: "
                "values as stored (for programs). NDJSON is never escaped.",
            ),
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
        },
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def export(self, request):
        name = request.query_params.get("format", "csv")
        export_format = exports.FORMATS.get(name)
        if export_format is None:
            raise ValidationError({"format": [f"Unknown export format {name[:20]!r}: use csv or ndjson."]})
        ordering = request.query_params.get("ordering")
        if ordering is not None and ordering not in exports.ORDERINGS:
            raise ValidationError(
                {
                    "ordering": [
                        f"An export streams in the order of an index; {ordering[:60]!r} is none. Use one of: "
                        + ", ".join(exports.ORDERINGS)
                        + "."
                    ]
                }
            )
        escape = _boolean(request.query_params.get("escape_formulas", "true"), "escape_formulas")
        queryset = self._filterset().qs
        if not queryset.query.order_by:
            queryset = queryset.order_by(*exports.DEFAULT_ORDERING)
        body = export_session.ExportBody(
            peer=request.META.get("gunicorn.socket"),
            who=str(request.user) if request.user.is_authenticated else f"anonymous:{request.META.get('REMOTE_ADDR')}",
            export_format=name,
            params=request.query_params,
            header_rows=1 if export_format.name == "csv" else 0,
        )
        if not export_session.slots.try_take(body):
            raise TooManyExports()
        try:
            body.start(
                exports.stream(
                    queryset,
                    export_format,
                    using=read_alias(),
                    statement_timeout_ms=settings.API_EXPORT_STATEMENT_TIMEOUT_MS,
                    escape_formulas=escape,
                )
            )
            first = body.first()  # a database error before any byte is still a plain error response
        except export_session.ClientGone:
            body.close()
            return HttpResponse(status=499, reason="Client Closed Request")
        except BaseException:
            body.close()
            raise
        response = StreamingHttpResponse(_chained(first, body), content_type=export_format.content_type)
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="outcomes-{stamp}.{export_format.extension}"'
        response["Cache-Control"] = "no-store"
        return response

    # ------------------------------------------------------------------ writes
    @extend_schema(request=OutcomeWriteSerializer, responses=AuctionOutcomeSerializer)
    def create(self, request, *args, **kwargs):
        outcome = self._write(lambda: writes.outcome_create(document=_body(request)))
        return Response(self._output(outcome), status=status.HTTP_201_CREATED)

    @extend_schema(request=OutcomeWriteSerializer, responses=AuctionOutcomeSerializer)
    def update(self, request, *args, partial=False, **kwargs):
        outcome_id = self._id(kwargs)
        outcome = self._write(
            lambda: writes.outcome_update(outcome_id=outcome_id, changes=_body(request), partial=partial)
        )
        return Response(self._output(outcome))

    @extend_schema(request=OutcomeWriteSerializer, responses=AuctionOutcomeSerializer)
    def partial_update(self, request, *args, **kwargs):
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request, *args, **kwargs):
        if not writes.outcomes_delete(ids=[self._id(kwargs)]):
            raise NotFound()
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _id(self, kwargs) -> int:
        try:
            return int(kwargs[self.lookup_url_kwarg or self.lookup_field])
        except (TypeError, ValueError):
            raise NotFound() from None

    @staticmethod
    def _write(operation):
        try:
            return operation()
        except writes.OutcomeConflict as exc:
            raise Conflict(exc.errors) from None
        except writes.OutcomeInvalid as exc:
            raise ValidationError(exc.errors) from None
        except writes.OutcomeNotFound:
            raise NotFound() from None


class IngestionView(APIView):
    """Is ingestion keeping up, or is there no traffic? (``outcomes.ingestion``)"""

    @extend_schema(
        summary="Consumer lag per partition, last stored outcome, throughput, dead letters, and a status.",
        responses=IngestionSerializer,
    )
    def get(self, request):
        unknown = sorted(set(request.query_params) - _ALWAYS)
        if unknown:
            message = "Unknown query parameter: this endpoint takes none."
            raise ValidationError({name[:60]: [message] for name in unknown})
        return Response(ingestion.ingestion_status(using=read_alias()), headers={"Cache-Control": "no-store"})
