"""What every read of outcomes shares: the allowed parameters (``outcomes.parameters``), the
filters, the snapshot cache.

Lists, reports and the export validate the same FilterSet, so the filters mean the same
thing everywhere. Every read goes through the snapshot cache (``outcomes.cache``) and says
how in ``X-Cache``.
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

from outcomes import cache, exports, parameters, queries
from outcomes.filters import OutcomeFilter
from outcomes.parameters import LIST_ONLY
from outcomes.renderers import StrictJSONParser, XlsxReportRenderer
from outcomes.serializers import AuctionOutcomeSerializer

# Reports answer in JSON, or as an Excel workbook (``?format=xlsx``).
REPORT_RENDERERS = [*api_settings.DEFAULT_RENDERER_CLASSES, XlsxReportRenderer]


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
        parameters.check_names(self.action, request.query_params)

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
