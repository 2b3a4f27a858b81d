"""What each role needs before it starts, checked by that role.

Settings are read for every process (``analytics/settings.py``), but a value only one role
uses is only that role's to demand: a migration job or a consumer-only host does not need
the API's Redis, its host names or its session key. Each role calls ``require(role)`` at
start-up (gunicorn's ``on_starting`` for ``api``, the commands for the others), and
``manage.py check_role ROLE`` runs the same check, e.g. before a deployment.

With ``DEBUG=True`` nothing here applies (``ROLE_CHECKS``): development runs on local defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http.request import validate_host

# Placeholders that appear in the specification and in kubernetes/…/secret.yaml.
PLACEHOLDERS = frozenset({"production-secret-key", "your-secret-key", "changeme", "change-me", "secret", "password"})
MIN_SECRET_LENGTH = 32


def placeholder(value: str) -> bool:
    lowered = value.strip().lower()
    return lowered in PLACEHOLDERS or lowered.startswith(("your-", "django-insecure", "development-"))


def _secret_key() -> str | None:
    try:
        value = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty one
        value = ""
    if not value:
        return "DJANGO_SECRET_KEY is required but not set (it signs the admin's sessions and CSRF tokens)."
    if placeholder(value) or len(value) < MIN_SECRET_LENGTH:
        return (
            "DJANGO_SECRET_KEY is unsafe for DEBUG=False: use a random value of at least 32 characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    return None


def _allowed_hosts() -> str | None:
    hosts = settings.ALLOWED_HOSTS
    if not hosts:
        return "ALLOWED_HOSTS is required when DEBUG=False (comma-separated host names the API answers on)."
    if "*" in hosts:
        return (
            "ALLOWED_HOSTS='*' accepts any Host header (links and redirects built from a forged host): "
            "name the host names the API answers on, e.g. analytics.example.com."
        )
    return None


def _redis_url() -> str | None:
    if settings.API_RATE_LIMITS_ON and not settings.REDIS_URL:
        return (
            "REDIS_URL is required with DEBUG=False while API_RATE_LIMIT_KEY or API_RATE_LIMIT_ANON is on: every API "
            "process must share the counters (e.g. redis://redis:6379/0). Set both to 'off' to run without limits."
        )
    return None


def _metrics_token() -> str | None:
    token = settings.API_METRICS_TOKEN
    if token and (placeholder(token) or len(token) < 16):
        return "API_METRICS_TOKEN is a placeholder or shorter than 16 characters: use a random value."
    return None


def _privacy_key() -> str | None:
    key = settings.PRIVACY_HASH_KEY
    if not key:
        return (
            "PRIVACY_HASH_KEY is required but not set: it keys the hashes that keep erased users erased "
            "(at least 32 random characters; never change it afterwards)."
        )
    if placeholder(key) or len(key) < MIN_SECRET_LENGTH:
        return "PRIVACY_HASH_KEY is a placeholder or shorter than 32 characters: use a random value."
    return None


def _db_password() -> str | None:
    if placeholder(settings.DATABASES["default"]["PASSWORD"]):
        return "DB_PASSWORD is a placeholder (e.g. from kubernetes/…/secret.yaml): set the database's password."
    return None


def _public_url() -> str | None:
    url = settings.PUBLIC_URL
    if not url:
        return (
            "PUBLIC_URL is required but not set: the address people reach the service at "
            "(e.g. https://analytics.example.com), for the links in e-mails (unsubscribe, run the report)."
        )
    if not url.startswith(("https://", "http://")):
        return f"PUBLIC_URL={url[:80]!r} is not an http(s):// address."
    host = urlsplit(url).netloc
    if not validate_host(host, settings.ALLOWED_HOSTS):
        return (
            f"PUBLIC_URL's host {host!r} is not in ALLOWED_HOSTS: the worker runs reports as requests to it "
            "(set ALLOWED_HOSTS as for the api role)."
        )
    return None


def _mail() -> str | None:
    if not settings.EMAIL_HOST:
        return "EMAIL_HOST is required but not set: the SMTP server reports and alerts are sent through."
    if "@" not in settings.DEFAULT_FROM_EMAIL:
        return "DEFAULT_FROM_EMAIL is required but not set (or not an address): the sender of reports and alerts."
    if settings.EMAIL_USE_TLS and settings.EMAIL_USE_SSL:
        return "EMAIL_USE_TLS and EMAIL_USE_SSL are both on: use one (STARTTLS on 587, or TLS on 465)."
    return None


def _live_redis() -> str | None:
    if not settings.LIVE_REDIS_URL:
        return "LIVE_REDIS_URL (or REDIS_URL) is required: the Redis stream the consumer writes each batch's event to."
    return None


# Which checks each role runs. "writer": commands that store or erase outcomes outside the
# consumer and the API (replay_dead_letters, erase_user); "database": any other command.
ROLES: dict[str, tuple[Callable[[], str | None], ...]] = {
    "api": (_db_password, _secret_key, _allowed_hosts, _redis_url, _metrics_token, _privacy_key),
    "consumer": (_db_password, _privacy_key),
    # The worker signs unsubscribe links (SECRET_KEY) and sends mail.
    "worker": (_db_password, _secret_key, _public_url, _mail),
    # The live stream reads sessions and API keys (the database) and the Redis stream.
    "live": (_db_password, _secret_key, _allowed_hosts, _live_redis),
    "writer": (_db_password, _privacy_key),
    "database": (_db_password,),
}


def problems(role: str) -> list[str]:
    """What stops ``role`` from starting (empty: nothing), one sentence each."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if not settings.ROLE_CHECKS:
        return []
    return [message for check in ROLES[role] if (message := check())]


def require(role: str, error: type[Exception] = ImproperlyConfigured) -> None:
    """Raise ``error`` naming every setting ``role`` lacks (ROLE_CHECKS only); commands pass
    CommandError, which prints the message without a traceback."""
    found = problems(role)
    if found:
        raise error(f"The {role} role cannot start: " + " ".join(found))
