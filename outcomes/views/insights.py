"""``/api/insights/``: what the outcomes say about bidding — the bid landscape (win rate by
bid, the fitted W(b), the market price's distribution) and the optimal bid for a value
(``outcomes.landscape``; models fitted by ``manage.py fit_bid_models``). Read scope."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action

from outcomes.models import BidModel
from outcomes.parameters import NOT_IN_LANDSCAPE
from outcomes.queries import landscape
from outcomes.report_serializers import (
    BidLandscapeSerializer,
    MoneyParams,
    OptimalBidParams,
    OptimalBidSerializer,
)
from outcomes.views.common import REPORT_FILTERS, REPORT_RENDERERS, OutcomeReads, cached, report


class InsightsViewSet(OutcomeReads, viewsets.GenericViewSet):
    """``/api/insights/bid_landscape/`` and ``/api/insights/optimal_bid/``."""

    pagination_class = None
    renderer_classes = REPORT_RENDERERS

    @extend_schema(
        summary="Win rate by bid with intervals, the fitted win-probability curve W(b), and (second-price "
        "auctions) the market price's Kaplan–Meier distribution.",
        parameters=[*(p for p in REPORT_FILTERS if p.name not in NOT_IN_LANDSCAPE), MoneyParams],
        responses=BidLandscapeSerializer,
    )
    @action(detail=False, methods=["get"])
    def bid_landscape(self, request):
        def respond():
            answer, source = landscape.bid_landscape(
                query=self._query(),
                convert_to=MoneyParams.target(self._params(MoneyParams)),
                auction_type=settings.AUCTION_TYPE,
            )
            return report(BidLandscapeSerializer(answer).data, source)

        newest = BidModel.objects.order_by("-id").values_list("id", flat=True).first()
        return cached(request, respond, vary=f"{settings.AUCTION_TYPE} model {newest}")

    @extend_schema(
        summary="The bid that maximises expected surplus for a value, under the served W(b), with the trade-off.",
        parameters=[OptimalBidParams],
        responses=OptimalBidSerializer,
    )
    @action(detail=False, methods=["get"])
    def optimal_bid(self, request):
        params = self._params(OptimalBidParams)
        currency = params.get("currency")
        if currency is None:
            # The one currency models exist for; with several, the state of the models makes the
            # request ambiguous (a 409 saying to name one), with none there is nothing to serve.
            currencies = sorted(set(BidModel.objects.values_list("currency", flat=True)))
            if not currencies:
                raise landscape.NoModel("No bid model yet: run manage.py fit_bid_models (a CronJob does).")
            if len(currencies) > 1:
                raise landscape.NoModel(f"Bid models exist for {', '.join(currencies)}: give the value's currency.")
            currency = currencies[0]
        answer = landscape.optimal_bid(
            site_domain=params.get("site_domain"),
            currency=currency,
            value=float(params["value"]),
            auction_type=settings.AUCTION_TYPE,
        )
        return report(OptimalBidSerializer(answer).data, "bid model")
