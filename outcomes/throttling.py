"""Request rate limits per API key (per login, per client address when anonymous), shared
by every API process through one store (Redis: ``REDIS_URL``).

Fixed windows counted atomically in Redis: a process takes requests from a window's
shared counter in leases (``INCRBY`` of 1 for limits under 400 per window, of 1/200 of the
limit — at most 50 — above), so the store sees one call per lease rather than per request.
Admissions across all processes never exceed the limit; a process may hold back at most
one lease's unused part when the window closes, so a client can be refused up to that
many requests early. A request over the limit is a 429 whose ``Retry-After`` is the time
left in the window. Counters live in Redis, not PostgreSQL, on purpose: a write
per request would move the database snapshot on every request and defeat the snapshot
cache (``outcomes/cache.py``).

If the store cannot be reached, requests are let through: an outage of the limiter must
not become an outage of the API, nor slow it down. So the store is asked with short
timeouts and no retries, and after a failure it is not asked again for ``STORE_PAUSE_S``
(a circuit breaker): with Redis down a request costs nothing extra, and the outage is logged
once when it starts and once when it ends, not per request. ``analytics_api_rate_limit_store_up``
says whether the store answers (alert ``AnalyticsRateLimitStoreDown``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from analytics.env import parse_rate
from analytics.metrics import STORE_UP
from outcomes.models import APIKey

logger = logging.getLogger(__name__)


STORE_TIMEOUT_S = 0.05  # a store on the local network answers in well under a millisecond
STORE_PAUSE_S = 5.0  # after a failure, the store is not asked again for this long


class StoreUnavailable(Exception):
    """The limit store did not answer (or is paused after failing): let the request through."""


class RedisCounters:
    """Window counters in Redis: one INCRBY per lease (keys name their window, so a key
    that missed its EXPIRE is merely never read again). Fails fast: short timeouts, no
    retries (redis-py retries connects and commands with backoff by default), and a pause
    of ``STORE_PAUSE_S`` after a failure during which it is not asked at all."""

    def __init__(self, url: str) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=STORE_TIMEOUT_S,
            socket_connect_timeout=STORE_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
        self._paused_until = 0.0
        self._down = False
        self._lock = threading.Lock()

    def hit(self, key: str, ttl: int, amount: int = 1) -> int:
        if time.monotonic() < self._paused_until:
            raise StoreUnavailable
        try:
            count = int(self.client.incrby(key, amount))
            if count == amount:  # the window's first lease sets its expiry (one round trip otherwise)
                self.client.expire(key, ttl)
        except Exception as exc:  # noqa: BLE001 - any store failure: pause, and say so once
            self._failed(exc)
            raise StoreUnavailable from exc
        self._answered()
        return count

    def ping(self) -> None:
        try:
            self.client.ping()
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            raise StoreUnavailable from exc
        self._answered()

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self._paused_until = time.monotonic() + STORE_PAUSE_S
            first = not self._down
            self._down = True
        STORE_UP.set(0)
        if first:
            logger.warning(
                "rate-limit store unavailable: requests are let through unlimited until it answers again",
                extra={"error": f"{type(exc).__name__}: {str(exc)[:200]}", "retry_every_s": STORE_PAUSE_S},
            )

    def _answered(self) -> None:
        if self._down:
            with self._lock:
                recovered, self._down = self._down, False
            if recovered:
                logger.warning("rate-limit store answers again: limits apply")
        STORE_UP.set(1)


def check_store() -> None:
    """Ask the store once (a worker starting): sets ``analytics_api_rate_limit_store_up``."""
    store = counters()
    if isinstance(store, RedisCounters):
        with contextlib.suppress(StoreUnavailable):  # recorded in the metric and the log
            store.ping()


class LocalCounters:
    """This process's own counters: development only (settings refuse it with DEBUG off)."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, float]] = {}
        self.lock = threading.Lock()

    def hit(self, key: str, ttl: int, amount: int = 1) -> int:
        now = time.monotonic()
        with self.lock:
            if len(self.counts) > 10_000:
                self.counts = {k: v for k, v in self.counts.items() if v[1] > now}
            count, expires = self.counts.get(key, (0, now + ttl))
            self.counts[key] = (count + amount, expires)
            return count + amount


_COUNTERS: dict[str, RedisCounters | LocalCounters] = {}
_COUNTERS_LOCK = threading.Lock()


def counters() -> RedisCounters | LocalCounters:
    url = settings.REDIS_URL
    store = _COUNTERS.get(url)
    if store is None:
        with _COUNTERS_LOCK:
            store = _COUNTERS.get(url) or _COUNTERS.setdefault(url, RedisCounters(url) if url else LocalCounters())
    return store


class _Leases:
    """Requests this process may still admit per window key, taken from the shared counter
    in leases: the store sees one INCRBY per lease, not per request."""

    def __init__(self) -> None:
        self.remaining: dict[str, int] = {}
        self.lock = threading.Lock()

    def take(self, key: str, amount: int = 1) -> bool:
        with self.lock:
            left = self.remaining.get(key, 0)
            if left < amount:
                return False
            self.remaining[key] = left - amount
            return True

    def add(self, key: str, tokens: int) -> None:
        with self.lock:
            if len(self.remaining) > 10_000:  # keys name their window: old ones are dead
                self.remaining.clear()
            self.remaining[key] = self.remaining.get(key, 0) + tokens


_leases = _Leases()


def client_address(request) -> str:
    """The client's address as the limits see it: the socket's, or behind ``API_NUM_PROXIES``
    trusted proxies the entry they added to ``X-Forwarded-For`` (DRF's rule): a client
    cannot pick its own. Also django-axes' (AXES_CLIENT_IP_CALLABLE) for failed logins."""
    return BaseThrottle().get_ident(request)


class FailedKeys:
    """Invalid API keys sent from one address, counted in the limit store per window of
    ``AUTH_LOCKOUT_MINUTES``: from ``AUTH_FAILURE_LIMIT`` on, that address is refused (429)
    until the window ends, whatever key it sends (no guessing keys at request speed)."""

    def retry_after(self, address: str) -> float | None:
        key, period, now = self._key(address)
        try:
            count = counters().hit(key, period + 1, 0)
        except StoreUnavailable:
            return None
        if count >= settings.AUTH_FAILURE_LIMIT:
            return (int(now // period) + 1) * period - now
        return None

    def record(self, address: str) -> None:
        key, period, _now = self._key(address)
        with contextlib.suppress(StoreUnavailable):
            counters().hit(key, period + 1, 1)

    @staticmethod
    def _key(address: str) -> tuple[str, int, float]:
        period = settings.AUTH_LOCKOUT_MINUTES * 60
        now = time.time()
        return f"badkey:{address}:{period}:{int(now // period)}", period, now


failed_keys = FailedKeys()


def lease_size(limit: int) -> int:
    """1 (exact) for limits under 400 per window; 1/200 of larger ones, at most 50."""
    return max(1, min(50, limit // 200))


class SharedRateThrottle(BaseThrottle):
    def __init__(self) -> None:
        self.retry_after: float | None = None

    def identity(self, request) -> tuple[str, str]:
        """(who, setting name of the rate that applies)."""
        if isinstance(request.auth, APIKey):
            return f"key:{request.auth.prefix}", "API_RATE_LIMIT_KEY"
        if request.user and request.user.is_authenticated:
            return f"user:{request.user.pk}", "API_RATE_LIMIT_KEY"
        return f"ip:{self.get_ident(request)}", "API_RATE_LIMIT_ANON"

    def allow_request(self, request, view) -> bool:
        """Admit the request if its cost fits in the window: 1, or what the view says it
        costs (``view.request_cost(request)``: a GraphQL request, one per report it asks for)."""
        if getattr(getattr(request, "_request", None), "rate_counted", False):  # a saved report's run, counted once
            return True
        cost_of = getattr(view, "request_cost", None)
        cost = max(1, cost_of(request)) if cost_of is not None else 1
        who, setting = self.identity(request)
        rate = parse_rate(getattr(settings, setting), setting)
        if rate is None:
            return True
        limit, period = rate
        now = time.time()
        window = int(now // period)
        key = f"rl:{who}:{period}:{window}"
        if _leases.take(key, cost):
            return True
        lease = max(lease_size(limit), cost)
        try:
            count = counters().hit(key, period + 1, lease)
        except StoreUnavailable:  # fail open (logged once per outage by the store)
            return True
        granted = min(lease, limit - (count - lease))  # the part of this lease under the limit
        if granted < cost:
            if granted > 0:
                _leases.add(key, granted)  # counted in the store: a cheaper request may use them
            self.retry_after = (window + 1) * period - now
            return False
        _leases.add(key, granted - cost)  # ``cost`` are this request's
        return True

    def wait(self) -> float | None:
        return self.retry_after
