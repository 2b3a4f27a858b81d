"""HTTP layer: thin DRF viewsets over the selectors in ``outcomes.queries``.

Every action starts from ``self.filter_queryset(self.get_queryset())`` so the filters mean
the same thing everywhere. Unknown query parameters are refused (400) rather than ignored,
so a typo such as ``?usr_id=`` cannot silently return unfiltered data.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from outcomes import queries
from outcomes.filters import FILTER_PARAMS, OutcomeFilter
from outcomes.serializers import AuctionOutcomeSerializer, DailyStatsSerializer, OutcomeStatsSerializer

_ALWAYS = {"format"}
_PAGINATION = {"page", "page_size"}
_ALLOWED_PARAMS = {
    "list": FILTER_PARAMS | _PAGINATION | _ALWAYS,
    "winners": FILTER_PARAMS | _PAGINATION | _ALWAYS,
    "stats": (FILTER_PARAMS - {"ordering"}) | _ALWAYS,
    "daily_stats": (FILTER_PARAMS - {"ordering"}) | _ALWAYS,
}


class AuctionOutcomeViewSet(viewsets.ModelViewSet):
    """Auction outcomes: list, retrieve, aggregations; changes by staff only."""

    serializer_class = AuctionOutcomeSerializer
    filterset_class = OutcomeFilter

    def get_queryset(self):
        return queries.outcome_list(winners_only=self.action == "winners")

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        allowed = _ALLOWED_PARAMS.get(self.action, _ALWAYS)
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            hint = f"Allowed here: {', '.join(sorted(allowed))}."
            raise ValidationError({name: [f"Unknown query parameter. {hint}"] for name in unknown})

    @extend_schema(summary="Only won auctions (same filters, ordering and pagination as the list).")
    @action(detail=False, methods=["get"])
    def winners(self, request):
        return self.list(request)

    @extend_schema(summary="Totals and averages over the filtered outcomes.", responses=OutcomeStatsSerializer)
    @action(detail=False, methods=["get"])
    def stats(self, request):
        return Response(queries.outcome_stats(queryset=self.filter_queryset(self.get_queryset())))

    @extend_schema(summary="The same measures per UTC day, oldest first.", responses=DailyStatsSerializer(many=True))
    @action(detail=False, methods=["get"])
    def daily_stats(self, request):
        return Response(queries.outcome_daily_stats(queryset=self.filter_queryset(self.get_queryset())))
