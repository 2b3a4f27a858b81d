"""The HTTP layer: thin DRF views over the selectors in ``outcomes.queries`` and the write
service, one module per use case: ``outcomes`` (list, retrieve, winners, writes),
``reports``, ``export``, ``ingestion``, ``experiments`` (the registry and results), ``insights``; what
they share is in ``common``, the write service's refusals as HTTP answers in ``errors``."""

from outcomes.views.experiments import ExperimentResultsViewSet, ExperimentViewSet
from outcomes.views.export import OutcomeExportViewSet
from outcomes.views.ingestion import IngestionView
from outcomes.views.insights import InsightsViewSet
from outcomes.views.outcomes import AuctionOutcomeViewSet
from outcomes.views.reports import OutcomeReportViewSet
from outcomes.views.saved_reports import SavedReportViewSet

__all__ = [
    "AuctionOutcomeViewSet",
    "ExperimentResultsViewSet",
    "ExperimentViewSet",
    "IngestionView",
    "InsightsViewSet",
    "OutcomeExportViewSet",
    "OutcomeReportViewSet",
    "SavedReportViewSet",
]
