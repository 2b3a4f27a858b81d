"""``/api/experiments/``: the experiment registry (read scope to list and read, write scope to
create and change, admin to delete; people: the admin's experiment permissions), and each
experiment's results (``/api/experiments/{key}/results/``, read scope)."""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination

from outcomes.experiment_serializers import ExperimentSerializer
from outcomes.models import Experiment
from outcomes.parameters import NOT_IN_RESULTS
from outcomes.queries.experiments import experiment_results
from outcomes.renderers import StrictJSONParser
from outcomes.report_serializers import ExperimentResultsSerializer, MoneyParams, ResultsParams
from outcomes.validation import SLUG_PATTERN
from outcomes.views.common import REPORT_FILTERS, REPORT_RENDERERS, OutcomeReads, cached, report


class ExperimentPagination(PageNumberPagination):
    """Pages of 100 (``page_size`` up to API_MAX_PAGE_SIZE); a size out of range is a 400, not clamped."""

    page_size = 100
    page_size_query_param = "page_size"

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        maximum = settings.API_MAX_PAGE_SIZE
        if not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise ValidationError({"page_size": [f"A whole number from 1 to {maximum}."]})
        return int(raw)


class ExperimentViewSet(viewsets.ModelViewSet):
    """The experiments outcomes may be tagged with (``experiment``/``variant``), and their plans."""

    queryset = Experiment.objects.order_by("-created_at", "-id")
    serializer_class = ExperimentSerializer
    pagination_class = ExperimentPagination
    parser_classes = [StrictJSONParser]
    lookup_field = "key"
    lookup_value_regex = SLUG_PATTERN.strip("^$")
    permission_model = "experiment"  # people need the admin's experiment permissions to change them
    filterset_class = None

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        allowed = {"format", "page", "page_size"} if self.action == "list" else {"format"}
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            hint = f"Allowed here: {', '.join(sorted(allowed))}."
            raise ValidationError({name[:60]: [f"Unknown query parameter. {hint}"] for name in unknown})


class ExperimentResultsViewSet(OutcomeReads, viewsets.GenericViewSet):
    """``/api/experiments/{key}/results/``: each variant's figures, every treatment against the
    control with intervals, the sample-ratio check, and warnings — for registered experiments
    and for keys outcomes carry that the registry does not know (marked unregistered)."""

    lookup_field = "key"
    lookup_value_regex = SLUG_PATTERN.strip("^$")
    pagination_class = None
    renderer_classes = REPORT_RENDERERS

    @extend_schema(
        summary="An experiment's results: variants side by side, comparisons with intervals, SRM, warnings.",
        parameters=[
            *(p for p in REPORT_FILTERS if p.name not in NOT_IN_RESULTS),
            ResultsParams,
            MoneyParams,
        ],
        responses=ExperimentResultsSerializer,
    )
    @action(detail=True, methods=["get"])
    def results(self, request, key: str):
        experiment = Experiment.objects.filter(key=key).first()
        version = experiment.updated_at.isoformat() if experiment else "unregistered"
        return cached(request, lambda: self._results(key, experiment), vary=version)

    def _results(self, key: str, experiment: Experiment | None):
        query = replace(self._query(), experiment=key)
        params = self._params(ResultsParams)
        convert_to = MoneyParams.target(self._params(MoneyParams))
        if experiment is not None and query.start is None and query.end is None:
            query = replace(query, start=experiment.start, end=experiment.end)
        plan = None
        if experiment is not None:
            plan = {
                "variants": experiment.variants,
                "primary_metric": experiment.primary_metric,
                "guardrail_metrics": experiment.guardrail_metrics,
            }
        unit = experiment.unit if experiment is not None else "auction"
        answer, source = experiment_results(
            query=query,
            plan=plan,
            unit=unit,
            confidence=params["confidence"],
            method=params["inference"],
            convert_to=convert_to,
        )
        if experiment is None and not answer["variants"]:
            raise NotFound(f"No experiment {key!r} is registered, and no outcome in this window carries it.")
        head = {
            "experiment": key,
            "registered": experiment is not None,
            "name": experiment.name if experiment else None,
            "unit": unit,
            "start": query.start,
            "end": query.end,
            "confidence": params["confidence"],
            "inference": params["inference"],
        }
        return report(ExperimentResultsSerializer({**head, **answer}).data, source)
