"""The API's Prometheus metrics: counted per route pattern, served only to whom may scrape."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from tests.servers import free_port, start_api, stop

pytestmark = pytest.mark.django_db


def samples(text: str) -> dict[tuple, float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_route_pattern_method_and_status(outcome_factory):
    (row,) = outcome_factory(1)
    client = APIClient()
    before = client.get("/metrics").content.decode()
    client.get(f"/api/outcomes/{row.id}/")
    client.get("/api/outcomes/999999/")
    client.get("/api/outcomes/stats/", {"bogus": "1"})
    after = client.get("/metrics").content.decode()
    detail = {"route": "/api/outcomes/{pk}/", "method": "GET"}
    name = "analytics_api_requests_total"
    assert value(after, name, **detail, status="200") - value(before, name, **detail, status="200") == 1
    assert value(after, name, **detail, status="404") - value(before, name, **detail, status="404") == 1
    stats = {"route": "/api/outcomes/stats/", "method": "GET", "status": "400"}
    assert value(after, name, **stats) - value(before, name, **stats) == 1
    histogram = "analytics_api_request_duration_seconds_count"
    assert value(after, histogram, **detail) - value(before, histogram, **detail) == 2
    queries = "analytics_api_db_queries_total"
    assert value(after, queries, route="/api/outcomes/{pk}/") > value(before, queries, route="/api/outcomes/{pk}/")
    assert not any("999999" in str(key) for key in samples(after))  # raw paths never become labels


def test_metrics_need_the_token_when_one_is_set(settings):
    settings.API_METRICS_TOKEN = "s3cret-token"
    client = APIClient()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200


def test_without_a_token_only_loopback_may_scrape(settings):
    settings.API_METRICS_TOKEN = ""
    assert APIClient().get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 401
    assert APIClient().get("/metrics").status_code == 200  # the test client is 127.0.0.1


def test_every_gunicorn_worker_reports_the_whole_server(transactional_db):
    port = free_port()
    server = start_api(port, GUNICORN_WORKERS="2")
    try:
        for _ in range(20):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/outcomes/stats/", timeout=10).read()
        texts = [
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode() for _ in range(6)
        ]
    finally:
        stop(server)
    counts = {
        value(t, "analytics_api_requests_total", route="/api/outcomes/stats/", method="GET", status="200")
        for t in texts
    }
    assert counts == {20.0}
