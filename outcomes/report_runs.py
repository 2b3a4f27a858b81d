"""A saved report run: its endpoint called in this process with the saved parameters and the
window resolved now — by a person or program (``/api/reports/{id}/run/``, as the caller) or
by the worker for a subscription (as the delivery agent, which may read and export).

Calling the endpoint itself, rather than its selector, keeps one meaning for a report: the
same checks, cache, formats and streaming as a direct request.
"""

from __future__ import annotations

import contextlib
import copy
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import orjson
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, QueryDict
from django.urls import resolve, reverse

from outcomes import windows
from outcomes.buckets import iso_utc
from outcomes.models import SavedReport

# Each report's endpoint (URL name).
ENDPOINTS = {
    "stats": "outcome-report-stats",
    "daily_stats": "outcome-report-daily-stats",
    "timeseries": "outcome-report-timeseries",
    "breakdown": "outcome-report-breakdown",
    "histogram": "outcome-report-histogram",
    "reach": "outcome-report-reach",
    "export": "outcome-export-export",
    "results": "experiment-results-results",
    "bid_landscape": "insights-bid-landscape",
}


def period(saved: SavedReport, *, now, since=None):
    """[start, end) of ``saved``'s window run at ``now`` (None without a window). ``since``: a
    catch-up run from the period of an earlier occurrence (its start) to this one's end."""
    if not saved.window:
        return None
    tz = ZoneInfo(saved.timezone)
    start, end = windows.resolve(saved.window, tz, now)
    if since is not None:
        start = min(start, windows.resolve(saved.window, tz, since)[0])
    return start, end


def run_target(saved: SavedReport, *, now, since=None) -> tuple[str, dict[str, str]]:
    """The endpoint's path and query parameters of a run at ``now`` (``since``: see ``period``)."""
    params = dict(saved.params)
    if (found := period(saved, now=now, since=since)) is not None:
        params["start"], params["end"] = iso_utc(found[0]), iso_utc(found[1])
    if saved.report == SavedReport.Report.TIMESERIES:
        params.setdefault("tz", saved.timezone)
    kwargs = {"key": params.pop("experiment")} if saved.report == SavedReport.Report.RESULTS else {}
    return reverse(ENDPOINTS[saved.report], kwargs=kwargs), params


@contextlib.contextmanager
def bounded():
    """A run outside an HTTP request (the worker's) under the API's statement timeout, as the
    request would be: a report that runs away is cancelled, not left holding the worker."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [f"{settings.API_STATEMENT_TIMEOUT_MS}ms"])
    try:
        yield
    finally:
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', '0', false)")


def answer_of(response):
    """The JSON answer of a report's response, rendered or not (a cached answer is bytes)."""
    if hasattr(response, "data"):
        return response.data
    return orjson.loads(response.content)


def dispatch(request: HttpRequest, path: str, params: dict[str, str], *, accept: str | None = None):
    """``GET path?params`` answered by its view, as ``request``'s caller (credentials,
    session), whatever ``request``'s own method; ``accept``: the media type asked for (else
    the caller's ``Accept``)."""
    inner = copy.copy(request)
    query = urlencode(params)
    inner.method = "GET"
    inner.path = inner.path_info = path
    inner.META = {**inner.META, "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": "GET"}
    if accept is not None:
        inner.META["HTTP_ACCEPT"] = accept
    inner.GET = QueryDict(query)
    inner.rate_counted = True  # the run was counted as it came in: its report is not counted again
    match = resolve(path)
    response = match.func(inner, *match.args, **match.kwargs)
    if hasattr(response, "render") and not getattr(response, "is_rendered", True):
        response.render()  # in its own format, before a calling view could take it for one of its own
    return response


class DeliveryAgent:
    """Who a subscription's report is run as: it may read and export outcomes (the report
    was checked when it was saved, by someone allowed to save it), and nothing else."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = True
    is_superuser = False
    username = "delivery-agent"
    pk = None

    def has_perm(self, permission: str, obj=None) -> bool:
        return permission in ("outcomes.view_auctionoutcome", "outcomes.export_auctionoutcome")

    def __str__(self) -> str:
        return self.username


def agent_request() -> HttpRequest:
    """A request of the delivery agent, addressed to the service's public host (PUBLIC_URL,
    which the worker role checks is one of ALLOWED_HOSTS)."""
    parts = urlsplit(settings.PUBLIC_URL or "http://localhost")
    request = HttpRequest()
    request.method = "GET"
    request.META = {
        "SERVER_NAME": parts.hostname or "localhost",
        "SERVER_PORT": str(parts.port or (443 if parts.scheme == "https" else 80)),
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": parts.netloc or "localhost",
        "wsgi.url_scheme": parts.scheme or "http",
    }
    request.user = DeliveryAgent()
    request._dont_enforce_csrf_checks = True
    return request
