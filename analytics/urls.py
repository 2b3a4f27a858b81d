from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from analytics import errors
from analytics.health import healthz, readyz
from analytics.metrics import metrics_view
from outcomes.dashboard import dashboard

admin.site.site_url = "/dashboard/"  # the admin's "View site" link
# No app list down the left of every page: the lists of outcomes and dead letters need the
# width (the index and the breadcrumbs lead everywhere the sidebar did).
admin.site.enable_nav_sidebar = False

# The API docs load nothing from elsewhere: their files come from drf-spectacular-sidecar,
# and this policy stops the browser from fetching what the bundles would still ask a third
# party for (Redoc's "API docs by Redocly" logo). Inline: both pages start with a small script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


class FaviconView(RedirectView):
    """``/favicon.ico``, which browsers ask every page for (the admin's too): the dashboard's
    icon, resolved at request time (the static files' manifest may not exist at import)."""

    permanent = False

    def get_redirect_url(self, *args, **kwargs):
        return static("outcomes/favicon.svg")


def _self_contained(view):
    def docs(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CSP
        return response

    return docs


urlpatterns = [
    path("api/", include("outcomes.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", _self_contained(SpectacularSwaggerView.as_view(url_name="schema")), name="swagger-ui"),
    path(
        "api/redoc/",
        _self_contained(
            SpectacularRedocView.as_view(url_name="schema", template_name="drf_spectacular/redoc_offline.html")
        ),
        name="redoc",
    ),
    path("dashboard/", dashboard, name="dashboard"),
    path("favicon.ico", FaviconView.as_view(), name="favicon"),
    path("", RedirectView.as_view(pattern_name="dashboard"), name="home"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]


handler404 = errors.not_found
handler500 = errors.server_error_page
