"""``/api/live/``: Server-Sent Events of what each committed batch changed, for the filters
asked (``site_domain``, ``currency``, ``experiment``, ``variant``: the reports' names), served
by the ASGI server (``./entrypoint.sh live``) so a long stream never holds a gunicorn thread.

The same access as the reports: an API key with the ``read`` scope, or a person who may read
outcomes (the dashboard's session), or anyone where reads are public. A server at its
``LIVE_MAX_CLIENTS`` answers 503 with ``Retry-After``.
"""

from __future__ import annotations

import re

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import JsonResponse, StreamingHttpResponse
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from outcomes import live, livestream
from outcomes.models import APIKey
from outcomes.permissions import APIKeyAuthentication, user_may_read
from outcomes.validation import CURRENCY_PATTERN

MAX_VALUE = 255
ALLOWED = {*live.FILTERS}


def _access(request) -> tuple[int, str] | None:
    """None when the caller may read outcomes, else (status, why)."""
    drf = Request(request, authenticators=[APIKeyAuthentication(), SessionAuthentication()])
    try:
        user, auth = drf.user, drf.auth
    except AuthenticationFailed as exc:
        return 401, str(exc.detail)
    if isinstance(auth, APIKey):
        return None if auth.allows("read") else (403, "This API key lacks the 'read' scope.")
    if settings.API_READ_ACCESS == "public" or user_may_read(user):
        return None
    if user and user.is_authenticated:
        return 403, "Reading outcomes needs staff status or the 'view auction outcome' permission."
    return 401, "Authentication credentials were not provided."


def _filters(query) -> dict[str, str] | JsonResponse:
    unknown = sorted(set(query) - ALLOWED)
    if unknown:
        hint = f"Allowed here: {', '.join(sorted(ALLOWED))}."
        return JsonResponse({name[:60]: [f"Unknown query parameter. {hint}"] for name in unknown}, status=400)
    filters = {}
    for name in live.FILTERS:
        if name not in query:
            continue
        value = query[name].strip()
        if not value or len(value) > MAX_VALUE:
            return JsonResponse({name: [f"A value of 1 to {MAX_VALUE} characters."]}, status=400)
        if name == "currency":
            value = value.upper()
            if not re.fullmatch(CURRENCY_PATTERN, value):
                return JsonResponse({name: ["A three-letter ISO 4217 code, e.g. EUR."]}, status=400)
        filters[name] = value
    return filters


async def live_stream(request):
    if request.method != "GET":
        return JsonResponse({"detail": f'Method "{request.method}" not allowed.'}, status=405, headers={"Allow": "GET"})
    refused = await sync_to_async(_access)(request)
    if refused is not None:
        status, detail = refused
        headers = {"WWW-Authenticate": 'Api-Key realm="api"'} if status == 401 else {}
        return JsonResponse({"detail": detail}, status=status, headers=headers)
    filters = _filters(request.GET)
    if isinstance(filters, JsonResponse):
        return filters
    if livestream.HUB.full():
        return JsonResponse(
            {"detail": f"This server streams to {settings.LIVE_MAX_CLIENTS:,} clients already; try again."},
            status=503,
            headers={"Retry-After": "5"},
        )
    last_id = request.headers.get("Last-Event-ID") or None
    if last_id is not None and not livestream.valid_id(last_id):
        return JsonResponse({"Last-Event-ID": ["Not an id this stream gave (e.g. 1764748800000-0)."]}, status=400)
    response = StreamingHttpResponse(livestream.stream(filters, last_id), content_type="text/event-stream")
    origin = request.headers.get("Origin")
    if origin and origin in settings.LIVE_ALLOWED_ORIGINS:  # the dashboard on another origin, with its session
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Credentials"] = "true"
        response["Vary"] = "Origin"
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # proxies pass each event on at once
    return response
