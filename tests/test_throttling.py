"""Rate limits: per key, per login, per client address; shared by every API process through
the real Redis that ``scripts/services.sh up`` starts."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from analytics.env import parse_rate
from outcomes.models import APIKey
from tests.servers import free_port, production, start_api, stop

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")  # a database the tests own


@pytest.fixture
def redis_limits(settings):
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    settings.REDIS_URL = REDIS_URL
    return settings


def test_rates_parse_or_say_which_setting_is_wrong():
    assert parse_rate("600/minute") == (600, 60)
    assert parse_rate("5/second") == (5, 1)
    assert parse_rate("off") is None and parse_rate("0") is None
    for bad in ("600", "0/minute", "x/hour", "10/week", "-1/day"):
        with pytest.raises(ImproperlyConfigured, match="API_RATE_LIMIT_KEY"):
            parse_rate(bad, "API_RATE_LIMIT_KEY")


def _within_one_window(period: int, run):
    """Run ``run`` again if a window boundary passed while it ran (counts restart there)."""
    for _ in range(3):
        window = time.time() // period
        result = run()
        if time.time() // period == window:
            return result
    raise AssertionError("could not stay inside one rate-limit window")


@pytest.mark.django_db
def test_anonymous_clients_are_limited_per_address_with_retry_after(redis_limits):
    redis_limits.API_RATE_LIMIT_ANON = "3/hour"

    def run():
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        client = APIClient()
        codes = [client.get("/api/outcomes/stats/").status_code for _ in range(3)]
        refused = client.get("/api/outcomes/")
        other_address = client.get("/api/outcomes/", REMOTE_ADDR="10.0.0.9")
        return codes, refused, other_address

    codes, refused, other_address = _within_one_window(3600, run)
    assert codes == [200, 200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 3600
    assert "throttled" in refused.json()["detail"]
    assert other_address.status_code == 200


@pytest.mark.django_db
def test_each_key_has_its_own_budget(redis_limits):
    redis_limits.API_RATE_LIMIT_KEY = "2/hour"
    redis_limits.API_RATE_LIMIT_ANON = "off"
    first = APIKey.objects.create_key(name="a", scopes=["read"])[1]
    second = APIKey.objects.create_key(name="b", scopes=["read"])[1]

    def run():
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        client = APIClient()

        def get(key):
            return client.get("/api/outcomes/stats/", HTTP_AUTHORIZATION=f"Api-Key {key}").status_code

        return [get(first), get(first), get(first), get(second), client.get("/api/outcomes/").status_code]

    assert _within_one_window(3600, run) == [200, 200, 429, 200, 200]


@pytest.mark.django_db
def test_an_unreachable_store_lets_requests_through(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.API_RATE_LIMIT_ANON = "1/hour"
    client = APIClient()
    assert [client.get("/api/outcomes/stats/").status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.django_db(transaction=True)
def test_with_redis_refused_every_request_is_still_fast_and_the_outage_is_said_once(outcome_factory):
    """gunicorn as shipped, REDIS_URL at a closed local port: 20 report requests in a row, each
    under 100 ms (redis-py's default retries took seconds), one warning for the outage, and
    the store's metric at 0."""
    import http.client

    from tests.servers import free_port as closed_port

    outcome_factory(3)
    port = free_port()
    server = start_api(
        port,
        **production(API_READ_ACCESS="public", REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", LOG_LEVEL="INFO"),
    )
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        timings = []
        for i in range(20):
            started = time.perf_counter()
            conn.request("GET", f"/api/outcomes/stats/?site_domain=d{i}.example")  # never cached: computed each time
            response = conn.getresponse()
            response.read()
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status == 200
        assert max(timings) < 100, timings
        metrics = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        metrics.request("GET", "/metrics")
        text = metrics.getresponse().read().decode()
        assert "analytics_api_rate_limit_store_up 0.0" in text
    finally:
        out, _err = stop(server)
    assert out.count("rate-limit store unavailable") == 1, out.count("rate-limit store unavailable")


@pytest.mark.django_db(transaction=True)
def test_the_store_metric_is_1_while_redis_answers(outcome_factory):
    import http.client

    port = free_port()
    server = start_api(port, REDIS_URL=REDIS_URL)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/metrics")
        assert "analytics_api_rate_limit_store_up 1.0" in conn.getresponse().read().decode()
    finally:
        stop(server)


def _status(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/outcomes/stats/", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.django_db
def test_two_api_servers_share_one_budget():
    import redis

    ports = [free_port(), free_port()]
    servers = [start_api(port, REDIS_URL=REDIS_URL, API_RATE_LIMIT_ANON="6/hour") for port in ports]
    try:

        def run():
            redis.Redis.from_url(REDIS_URL).flushdb()
            return [_status(ports[i % 2]) for i in range(8)]

        # 6 per hour for this address, whichever server answers: 3 each, then both refuse.
        assert _within_one_window(3600, run) == [200] * 6 + [429, 429]
    finally:
        for server in servers:
            stop(server)


@pytest.mark.django_db
def test_a_client_cannot_choose_its_own_address(redis_limits):
    redis_limits.API_RATE_LIMIT_ANON = "2/hour"

    def run():
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        client = APIClient()
        return [client.get("/api/outcomes/stats/", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code for i in range(3)]

    assert _within_one_window(3600, run) == [200, 200, 429]


def test_leases_never_admit_more_than_the_limit_across_processes(settings, monkeypatch):
    """Two processes (two lease tables) taking from one shared counter, through the throttle."""
    from types import SimpleNamespace

    from outcomes import throttling

    store = throttling.LocalCounters()
    monkeypatch.setattr(throttling, "counters", lambda: store)
    settings.API_RATE_LIMIT_ANON = "1000/hour"  # leases of 5
    assert throttling.lease_size(1000) == 5
    tables = [throttling._Leases(), throttling._Leases()]
    request = SimpleNamespace(auth=None, user=None, META={"REMOTE_ADDR": "10.9.8.7"}, headers={})

    def admitted() -> int:
        count = 0
        for i in range(3_000):
            monkeypatch.setattr(throttling, "_leases", tables[i % 2])
            count += throttling.SharedRateThrottle().allow_request(request, None)
        return count

    total = _within_one_window(3600, admitted)
    assert 1000 - 2 * 5 <= total <= 1000
    assert throttling.lease_size(399) == 1 and throttling.lease_size(400) == 2 and throttling.lease_size(10**9) == 50
