from django.urls import path
from rest_framework.routers import DefaultRouter

from outcomes.views import AuctionOutcomeViewSet, IngestionView

router = DefaultRouter()
router.register("outcomes", AuctionOutcomeViewSet, basename="outcome")

urlpatterns = [path("ingestion/", IngestionView.as_view(), name="ingestion"), *router.urls]
