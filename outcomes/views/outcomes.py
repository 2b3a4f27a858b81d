"""Outcomes themselves: list, retrieve, winners, and writes through the write service.

Service refusals (``writes.OutcomeInvalid`` …) become HTTP answers in one place,
``outcomes.views.errors.exception_handler``.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from outcomes import queries, writes
from outcomes.serializers import AuctionOutcomeSerializer, OutcomeWriteSerializer
from outcomes.views.common import OutcomeReads, body, cached


class AuctionOutcomeViewSet(OutcomeReads, viewsets.ModelViewSet):
    """Auction outcomes: list, retrieve, winners; changes through the write service."""

    def get_serializer_class(self):
        if self.request is not None and self.request.method in ("POST", "PUT", "PATCH"):
            # What the browsable API's form shows: the body the API takes (the write service
            # validates it; answers are always AuctionOutcomeSerializer's).
            return OutcomeWriteSerializer
        return AuctionOutcomeSerializer

    def _output(self, outcome) -> dict:
        return AuctionOutcomeSerializer(outcome, context=self.get_serializer_context()).data

    # ------------------------------------------------------------------ lists
    def list(self, request, *args, **kwargs):
        return cached(request, self._list)

    def _list(self):
        filterset = self._filterset()  # parsed once: it filters the rows and gives the count's query
        query = queries.OutcomeQuery.from_filters(filterset.form.cleaned_data)
        self._count_query = query.winners() if self.action == "winners" else query
        page = self.paginate_queryset(filterset.qs)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def count(self) -> tuple[int, bool]:
        """(count, is_estimate) of the list being paged (the paginator asks)."""
        return queries.outcome_count(query=self._count_query)[:2]

    def retrieve(self, request, *args, **kwargs):
        return cached(request, lambda: super(AuctionOutcomeViewSet, self).retrieve(request, *args, **kwargs))

    @extend_schema(
        summary="Only won auctions (same filters, ordering and pagination as the list).",
        responses=AuctionOutcomeSerializer(many=True),
    )
    @action(detail=False, methods=["get"])
    def winners(self, request):
        return self.list(request)

    # ------------------------------------------------------------------ writes
    @extend_schema(request=OutcomeWriteSerializer, responses=AuctionOutcomeSerializer)
    def create(self, request, *args, **kwargs):
        outcome = writes.outcome_create(document=body(request))
        return Response(self._output(outcome), status=status.HTTP_201_CREATED)

    @extend_schema(request=OutcomeWriteSerializer, responses=AuctionOutcomeSerializer)
    def update(self, request, *args, partial=False, **kwargs):
        outcome = writes.outcome_update(outcome_id=self._id(kwargs), changes=body(request), partial=partial)
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
