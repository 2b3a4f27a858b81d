"""Prometheus metrics of the API (prometheus-client), served at ``/metrics``.

* ``analytics_api_requests_total{route,method,status}`` and
  ``analytics_api_request_duration_seconds{route,method}`` (histogram), ``route`` being the
  URL pattern (``/api/outcomes/{pk}/``), never the raw path, so label values stay few;
* ``analytics_api_db_queries_total{route}`` and ``analytics_api_db_query_seconds_total{route}``:
  every SQL statement a request runs, counted and timed through Django's execute wrapper;
* ``analytics_api_cache_answers_total{result}``: the snapshot cache's HIT/MISS/BYPASS;
* what apps register in ``SCRAPED``, read at each scrape (``analytics_subscriptions_failing`` …).

Under gunicorn every worker counts into ``PROMETHEUS_MULTIPROC_DIR`` (gunicorn.conf.py sets
it up), so any worker's ``/metrics`` reports the whole server.

``/metrics`` is not public: it needs ``Authorization: Bearer <API_METRICS_TOKEN>``; without
a token configured it answers loopback clients only (``make run``, a sidecar).
"""

from __future__ import annotations

import os
import re
import time

from django.conf import settings
from django.db import connections
from django.http import HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REQUESTS = Counter(
    "analytics_api_requests_total",
    "HTTP requests answered, by route pattern, method and status.",
    ["route", "method", "status"],
)
DURATION = Histogram(
    "analytics_api_request_duration_seconds",
    "Time to answer a request, by route pattern and method.",
    ["route", "method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_QUERIES = Counter("analytics_api_db_queries_total", "SQL statements run by requests, by route.", ["route"])
DB_SECONDS = Counter("analytics_api_db_query_seconds_total", "Time in SQL statements, by route.", ["route"])
CACHE = Counter("analytics_api_cache_answers_total", "Snapshot-cache answers (X-Cache).", ["result"])
# GraphQL answers its errors with HTTP 200: counted here by extensions.code, and the cost
# charged to the rate limits (one per report asked for).
GRAPHQL_ERRORS = Counter(
    "analytics_graphql_errors_total", "Errors in GraphQL answers (HTTP 200), by extensions.code.", ["code"]
)
GRAPHQL_COST = Counter("analytics_graphql_cost_total", "Rate-limit cost of GraphQL requests run (reports asked for).")
# 0 as soon as any live process finds the store down (its limits let everything through
# then). Each worker asks the store when it starts (gunicorn.conf.py), then at each lease.
STORE_UP = Gauge(
    "analytics_api_rate_limit_store_up",
    "1 while the rate-limit store (Redis) answers, 0 while it does not (limits then let requests through).",
    multiprocess_mode="livemin",
)

# Figures read from the database when /metrics is scraped (an app registers collectors here:
# e.g. failing subscriptions), the same from any process.
SCRAPED = CollectorRegistry(auto_describe=True)

_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")
_route_names: dict[str, str] = {}


def route_of(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return getattr(request, "probe_route", "unmatched")  # analytics.health.ProbeMiddleware
    route = _route_names.get(match.route)
    if route is None:
        route = "/" + _GROUP.sub(r"{\1}", match.route).replace("^", "").replace("$", "").replace("\\.", ".")
        _route_names[match.route] = route
    return route


class _QueryTimer:
    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.count += 1
            self.seconds += time.perf_counter() - start


class MetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        start = time.perf_counter()
        timer = _QueryTimer()
        with connections["default"].execute_wrapper(timer):
            response = self.get_response(request)
        route = route_of(request)
        if route == "/metrics":
            return response
        REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        DURATION.labels(route, request.method).observe(time.perf_counter() - start)
        if timer.count:
            DB_QUERIES.labels(route).inc(timer.count)
            DB_SECONDS.labels(route).inc(timer.seconds)
        cache = response.get("X-Cache")
        if cache:
            CACHE.labels(cache).inc()
        return response


def _allowed(request) -> bool:
    token = settings.API_METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and constant_time_compare(given.strip(), token)
    return request.META.get("REMOTE_ADDR") in ("127.0.0.1", "::1")


def metrics_view(request):
    if not _allowed(request):
        response = JsonResponse(
            {"detail": "Metrics need 'Authorization: Bearer <API_METRICS_TOKEN>' (or, without a token, loopback)."},
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return HttpResponse(generate_latest(registry) + generate_latest(SCRAPED), content_type=CONTENT_TYPE_LATEST)
