"""``/api/experiments/``: the experiment registry (read scope to list and read, write scope to
create and change, admin to delete; people: the admin's experiment permissions)."""

from __future__ import annotations

from django.conf import settings
from rest_framework import viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination

from outcomes.experiment_serializers import ExperimentSerializer
from outcomes.models import Experiment
from outcomes.renderers import StrictJSONParser
from outcomes.validation import SLUG_PATTERN


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
