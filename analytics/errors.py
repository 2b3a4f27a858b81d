"""Errors under /api/ are JSON, as clients parse them, in every mode.

``handler404``/``handler500`` cover production (``DEBUG=False``). With ``DEBUG=True`` (``make
run``) Django answers an unknown URL with its HTML debug page before any handler runs, so
``ApiJsonNotFoundMiddleware`` turns such a page under /api/ into the same JSON 404 (a
fuzzer found it: ``/api/outcomes/1.5e-7/`` answered ``text/html`` against the schema).
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views.defaults import page_not_found, server_error

NOT_FOUND = {"detail": "Not found."}


def _under_api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception=None):
    """JSON under /api/, Django's page elsewhere."""
    if _under_api(request):
        return JsonResponse(NOT_FOUND, status=404)
    return page_not_found(request, exception)


def server_error_page(request):
    if _under_api(request):
        return JsonResponse({"detail": "Internal server error; the request id is in X-Request-ID."}, status=500)
    return server_error(request)


class ApiJsonNotFoundMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code == 404
            and _under_api(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return JsonResponse(NOT_FOUND, status=404)
        return response
