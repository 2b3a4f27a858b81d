from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found, server_error
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from analytics.health import healthz, readyz
from analytics.metrics import metrics_view
from outcomes.dashboard import dashboard

admin.site.site_url = "/dashboard/"  # the admin's "View site" link

urlpatterns = [
    path("api/", include("outcomes.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("dashboard/", dashboard, name="dashboard"),
    path("", RedirectView.as_view(pattern_name="dashboard"), name="home"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]


def _api_not_found(request, exception=None):
    """JSON under /api/ (clients parse it), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def _api_server_error(request):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error; the request id is in X-Request-ID."}, status=500)
    return server_error(request)


handler404 = _api_not_found
handler500 = _api_server_error
