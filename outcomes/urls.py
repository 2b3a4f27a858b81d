from django.urls import path, reverse
from rest_framework.routers import APIRootView, DefaultRouter

from outcomes.graphql.view import GraphQLView
from outcomes.views import (
    AlertViewSet,
    AuctionOutcomeViewSet,
    ExperimentResultsViewSet,
    ExperimentViewSet,
    IngestionView,
    InsightsViewSet,
    OutcomeExportViewSet,
    OutcomeReportViewSet,
    SavedReportViewSet,
    SubscriptionViewSet,
    unsubscribe,
)
from outcomes.views.live import live_stream


class ServiceRoot(APIRootView):
    """Auction outcomes from real-time-bidding: list, filter and report on them, export them.

    Start at `outcomes` (each report is a sub-path: stats, daily_stats, timeseries,
    breakdown, histogram, reach, winners, export); `experiments` is the registry of the
    experiments outcomes are tagged with (and their results); `insights/bid_landscape/` and
    `insights/optimal_bid/` say how bids win; `reports` are saved reports, run now at
    `reports/{id}/run/` (any format), sent on a schedule by `subscriptions`; `alerts` watch a
    measure every minute; `ingestion` says whether the consumer keeps up.
    The OpenAPI schema, Swagger UI and Redoc document every parameter; the dashboard and the
    admin are for people.
    """

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        absolute = request.build_absolute_uri
        response.data.update(
            {
                "ingestion": absolute(reverse("ingestion")),
                "graphql": absolute(reverse("graphql")),
                "schema": absolute(reverse("schema")),
                "docs": absolute(reverse("swagger-ui")),
                "redoc": absolute(reverse("redoc")),
                "dashboard": absolute(reverse("dashboard")),
                "admin": absolute(reverse("admin:index")),
            }
        )
        return response


class Router(DefaultRouter):
    APIRootView = ServiceRoot


router = Router()
# Reports and the export first: their paths (outcomes/stats/ …) come before outcomes/{id}/.
router.register("outcomes", OutcomeReportViewSet, basename="outcome-report")
router.register("outcomes", OutcomeExportViewSet, basename="outcome-export")
router.register("outcomes", AuctionOutcomeViewSet, basename="outcome")
router.register("insights", InsightsViewSet, basename="insights")
router.register("experiments", ExperimentResultsViewSet, basename="experiment-results")
router.register("experiments", ExperimentViewSet, basename="experiment")
router.register("reports", SavedReportViewSet, basename="saved-report")
router.register("subscriptions", SubscriptionViewSet, basename="subscription")
router.register("alerts", AlertViewSet, basename="alert")

urlpatterns = [
    path("ingestion/", IngestionView.as_view(), name="ingestion"),
    path("unsubscribe/<str:token>/", unsubscribe, name="unsubscribe"),
    path("live/", live_stream, name="live"),
    path("graphql/", GraphQLView.as_view(), name="graphql"),
    *router.urls,
]
