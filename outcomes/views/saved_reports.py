"""``/api/reports/``: saved reports (read scope to list, read and run; write scope to create
and change; admin to delete; people: the admin's saved-report permissions), and
``/api/reports/{id}/run/?format=…``, which runs one now.

A run is the report's own endpoint, called in the same process with the saved parameters
and the window resolved at this moment: the same checks, permissions (an export needs the
``export`` scope), cache, formats and streaming as a direct request, counted once against
the caller's rate limit.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer

from outcomes import exports, xlsx
from outcomes.models import SavedReport
from outcomes.renderers import StrictJSONParser
from outcomes.report_runs import dispatch, run_target
from outcomes.saved_report_serializers import SavedReportSerializer
from outcomes.views.experiments import ExperimentPagination

RUN_FORMATS = ("json", "xlsx", *exports.FORMATS)


class SavedReportViewSet(viewsets.ModelViewSet):
    queryset = SavedReport.objects.all()
    serializer_class = SavedReportSerializer
    pagination_class = ExperimentPagination
    parser_classes = [StrictJSONParser]
    permission_model = "savedreport"
    filterset_class = None

    def perform_content_negotiation(self, request, force=False):
        if self.action == "run":  # ``format`` is the report's; this view's own answers (errors) are JSON
            return JSONRenderer(), JSONRenderer.media_type
        return super().perform_content_negotiation(request, force)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        allowed = {"list": {"format", "page", "page_size"}}.get(self.action, {"format"})
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            hint = f"Allowed here: {', '.join(sorted(allowed))}."
            raise ValidationError({name[:60]: [f"Unknown query parameter. {hint}"] for name in unknown})

    def perform_create(self, serializer):
        serializer.save(created_by=str(self.request.user)[:150])

    @extend_schema(
        summary="Run a saved report now: its endpoint's answer, in the format asked for.",
        parameters=[
            OpenApiParameter(
                "format",
                OpenApiTypes.STR,
                enum=list(RUN_FORMATS),
                description="json or xlsx for a report; csv, ndjson or xlsx for an export (default: the "
                "endpoint's own, JSON or CSV).",
            )
        ],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, xlsx.CONTENT_TYPE): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
        },
    )
    @action(detail=True, methods=["get"])
    def run(self, request, pk=None):
        saved = self.get_object()
        path, params = run_target(saved, now=timezone.now())
        asked = request.query_params.get("format")
        if asked is not None:
            if asked not in RUN_FORMATS:
                raise ValidationError({"format": [f"Unknown format {asked[:20]!r}: use {', '.join(RUN_FORMATS)}."]})
            params["format"] = asked
        return dispatch(request._request, path, params)
