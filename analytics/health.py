"""Liveness and readiness endpoints for the API pods' probes."""

from django.db import connection
from django.http import JsonResponse


def healthz(request):
    """Alive: the process answers. Touches nothing else, so a database outage does not restart pods."""
    return JsonResponse({"status": "ok"})


def readyz(request):
    """Ready: the database answers a query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return JsonResponse({"status": "unavailable", "database": str(exc).strip()[:200]}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})
