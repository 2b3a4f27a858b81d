"""Liveness and readiness endpoints for the API pods' probes.

The kubelet and Prometheus call a pod by its IP, so their requests carry a Host header no
ALLOWED_HOSTS names: ``ProbeMiddleware`` answers these paths before Django looks at the
host (Sentry answers its health check the same way). What they say is only whether the
service is up; why it is not goes to the log, not to whoever asks.
"""

from __future__ import annotations

import logging

from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)


def healthz(request):
    """Alive: the process answers. Touches nothing else, so a database outage does not restart pods."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Ready: the database answers a query. Not ready: a 503, and the reason in the log."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        logger.warning("not ready: the database does not answer", extra={"error": str(exc).strip()[:500]})
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


class ProbeMiddleware:
    """``/healthz``, ``/readyz`` and ``/metrics`` whatever the Host header (the others check
    it as usual). Placed before the middleware that reads the host."""

    def __init__(self, get_response):
        from analytics.metrics import metrics_view

        self.get_response = get_response
        self.views = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics_view}

    def __call__(self, request):
        view = self.views.get(request.path_info)
        if view is None or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        request.probe_route = request.path_info
        return view(request)
