from rest_framework.routers import DefaultRouter

from outcomes.views import AuctionOutcomeViewSet

router = DefaultRouter()
router.register("outcomes", AuctionOutcomeViewSet, basename="outcome")

urlpatterns = router.urls
