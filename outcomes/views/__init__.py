"""The HTTP layer: thin DRF views over the selectors in ``outcomes.queries`` and the write
service, one module per use case: ``outcomes`` (list, retrieve, winners, writes),
``reports``, ``export``, ``ingestion``, ``experiments`` (the registry and results), ``insights``, ``saved_reports``,
``subscriptions`` (and alerts); what
they share is in ``common``, the write service's refusals as HTTP answers in ``errors``."""

from outcomes.views.experiments import ExperimentResultsViewSet, ExperimentViewSet
from outcomes.views.export import OutcomeExportViewSet
from outcomes.views.ingestion import IngestionView
from outcomes.views.insights import InsightsViewSet
from outcomes.views.outcomes import AuctionOutcomeViewSet
from outcomes.views.reports import OutcomeReportViewSet
from outcomes.views.saved_reports import SavedReportViewSet
from outcomes.views.subscriptions import AlertViewSet, SubscriptionViewSet, unsubscribe

__all__ = [
    "AlertViewSet",
    "AuctionOutcomeViewSet",
    "ExperimentResultsViewSet",
    "ExperimentViewSet",
    "IngestionView",
    "InsightsViewSet",
    "OutcomeExportViewSet",
    "OutcomeReportViewSet",
    "SavedReportViewSet",
    "SubscriptionViewSet",
    "unsubscribe",
]
