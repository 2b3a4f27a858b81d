"""What every read of outcomes shares: the allowed parameters, the filters, the snapshot cache.

Lists, reports and the export validate the same FilterSet, so the filters mean the same
thing everywhere. Unknown query parameters are refused (400) rather than ignored, so a typo
such as ``?usr_id=`` cannot silently return unfiltered data; the allowed names are derived
from the FilterSet, the paginator and each report's parameter serializer. Every read goes
through the snapshot cache (``outcomes.cache``) and says how in ``X-Cache``.
"""

from __future__ import annotations

from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings

from outcomes import cache, exports, queries
from outcomes.filters import FILTER_PARAMS, OutcomeFilter
from outcomes.pagination import OutcomePagination
from outcomes.renderers import StrictJSONParser, XlsxReportRenderer
from outcomes.report_serializers import BreakdownParams, HistogramParams, MoneyParams, ResultsParams, TimeseriesParams
from outcomes.serializers import AuctionOutcomeSerializer

ALWAYS = {"format"}
# Reports answer in JSON, or as an Excel workbook (``?format=xlsx``).
REPORT_RENDERERS = [*api_settings.DEFAULT_RENDERER_CLASSES, XlsxReportRenderer]
MONEY = set(MoneyParams().fields)  # reports with money figures may convert them
# A report over one bid id would be that outcome: reports take every filter but these.
LIST_ONLY = {"ordering", "bid_id"}
REPORT_FILTER_NAMES = FILTER_PARAMS - LIST_ONLY
LIST_PARAMS = FILTER_PARAMS | OutcomePagination.query_params | ALWAYS
ALLOWED_PARAMS = {
    "list": LIST_PARAMS,
    "winners": LIST_PARAMS,
    "stats": REPORT_FILTER_NAMES | MONEY | ALWAYS,
    "daily_stats": REPORT_FILTER_NAMES | MONEY | ALWAYS,
    "reach": REPORT_FILTER_NAMES | ALWAYS,
    "timeseries": REPORT_FILTER_NAMES | set(TimeseriesParams().fields) | MONEY | ALWAYS,
    "breakdown": REPORT_FILTER_NAMES | set(BreakdownParams().fields) | MONEY | ALWAYS,
    "histogram": REPORT_FILTER_NAMES | set(HistogramParams().fields) | ALWAYS,
    "export": FILTER_PARAMS | {"escape_formulas"} | ALWAYS,
}
# An experiment's results compare all its variants, the key is in the path, and the win rate
# is one of the metrics: these filters would defeat them.
NOT_IN_RESULTS = {
    "experiment": "The experiment is the one in the path.",
    "variant": "The results compare every variant; filter other reports by variant.",
    "win_status": "The win rate is one of the metrics compared; filter other reports by win_status.",
}
# The bid landscape needs wins and losses alike.
NOT_IN_LANDSCAPE = {"win_status": "The landscape is the win rate by bid: it needs wins and losses alike."}
ALLOWED_PARAMS["bid_landscape"] = (REPORT_FILTER_NAMES - set(NOT_IN_LANDSCAPE)) | MONEY | ALWAYS
ALLOWED_PARAMS["optimal_bid"] = {"value", "site_domain", "currency"} | ALWAYS
ALLOWED_PARAMS["results"] = (REPORT_FILTER_NAMES - set(NOT_IN_RESULTS)) | set(ResultsParams().fields) | MONEY | ALWAYS


def _filter_parameters() -> list[OpenApiParameter]:
    """The FilterSet's parameters for the schema of the report actions (DRF lists them for list views only)."""
    kinds = {
        filters.CharFilter: OpenApiTypes.STR,
        filters.NumberFilter: OpenApiTypes.DECIMAL,
        filters.IsoDateTimeFilter: OpenApiTypes.DATETIME,
    }
    parameters = []
    for name, field in OutcomeFilter.base_filters.items():
        if name in LIST_ONLY:
            continue
        kind = next((t for cls, t in kinds.items() if isinstance(field, cls)), OpenApiTypes.BOOL)
        parameters.append(OpenApiParameter(name, kind, description=str(field.extra.get("help_text", ""))))
    return parameters


REPORT_FILTERS = _filter_parameters()


def body(request):
    """The request's JSON object (a form post from the browsable API becomes a plain dict)."""
    data = request.data
    return data.dict() if hasattr(data, "dict") else data


def report(data, source: str) -> Response:
    return Response(data, headers={"X-Report-Source": source})


def cached(request, respond, *, cacheable: bool = True, vary: str = "") -> HttpResponse | Response:
    """``respond()``'s response, or the one given to the same URL at the current database
    snapshot (``outcomes.cache``); ``cacheable=False`` for answers that depend on the clock;
    ``vary``: what else the answer depends on (a registry row's version).

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
        key = request.build_absolute_uri() + (f"#{vary}" if vary else "")
        (body, (code, headers)), how = cache.answers.get_or_compute(key, compute)
    else:
        (body, (code, headers)), how = compute(), cache.BYPASS
    response = HttpResponse(body, status=code, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    response["X-Cache"] = how
    return response


class OutcomeReads:
    """A view over the stored outcomes: its filters, its allowed parameters (per action), and
    JSON errors for a ``format`` that names an export's file format."""

    serializer_class = AuctionOutcomeSerializer
    filterset_class = OutcomeFilter
    parser_classes = [StrictJSONParser]  # bodies are JSON documents, like the messages on the topic

    def get_queryset(self):
        return queries.outcome_list(winners_only=self.action == "winners")

    def perform_content_negotiation(self, request, force=False):
        export = self.action == "export" or (
            self.action is None and request.query_params.get("format") in exports.FORMATS  # a 405 to come
        )
        if export:
            # ``format`` names the export's format (csv, ndjson), not a renderer; errors are JSON.
            return JSONRenderer(), JSONRenderer.media_type
        asked = request.query_params.get("format")
        formats = [renderer.format for renderer in self.get_renderers()]
        if asked is not None and asked not in formats and not force:
            # DRF would answer 404 ("Not found"): a bad parameter is a 400 naming it.
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
            raise ValidationError({"format": [f"Unknown format {asked[:20]!r}: use {' or '.join(formats)}."]})
        return super().perform_content_negotiation(request, force)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action is None:
            return  # a method this route does not have: DRF answers 405
        empty = sorted(name for name, value in request.query_params.items() if value == "" and name != "cursor")
        if empty:
            raise ValidationError({name[:60]: ["Empty value: give one, or leave the parameter out."] for name in empty})
        allowed = ALLOWED_PARAMS.get(self.action, ALWAYS)
        refusing = {"results": NOT_IN_RESULTS, "bid_landscape": NOT_IN_LANDSCAPE}.get(self.action, {})
        if refused := set(request.query_params) & set(refusing):
            raise ValidationError({name: [refusing[name]] for name in sorted(refused)})
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            hint = f"Allowed here: {', '.join(sorted(allowed))}."
            raise ValidationError({name[:60]: [f"Unknown query parameter. {hint}"] for name in unknown})

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
