from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from analytics.health import healthz, readyz

urlpatterns = [
    path("api/", include("outcomes.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
