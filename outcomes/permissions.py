"""Who may do what on the API: API keys with scopes for programs, the session for people.

* ``APIKeyAuthentication`` reads ``Authorization: Api-Key <key>`` (djangorestframework-api-key's
  header). A key that is malformed, unknown, revoked or expired is a 401, whatever the
  endpoint, and so is any other scheme (Basic): a wrong credential is never silently
  treated as none.
* ``ScopedAccess`` then asks for the scope the request needs: ``read`` for GET/HEAD/OPTIONS
  (nothing at all when ``API_READ_ACCESS=public``), ``export`` for the bulk export (every
  row, user ids included: a ``read`` key cannot), ``write`` to create or update outcomes,
  ``admin`` to delete them; ``admin`` includes the others. People logged in to the admin
  (session) need the same rights as Django model permissions: staff or "view auction
  outcome" to read, "export auction outcomes" to export, "add"/"change"/"delete auction
  outcome" to create, update and delete (staff status alone writes nothing).
* No credentials where some are needed is a 401 with ``WWW-Authenticate: Api-Key``;
  valid credentials without the scope are a 403 naming it.

There is no Basic authentication: a password sent with every request is what keys replace.
"""

from __future__ import annotations

import re
import threading
import time

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework_api_key.permissions import KeyParser

from outcomes.models import APIKey
from outcomes.throttling import client_address, failed_keys

# What the library generates: an 8-character prefix, a dot, a 32-character secret. Checked
# before any database look-up, so hostile bytes in the header never reach a query.
_KEY = re.compile(r"[A-Za-z0-9]{8}\.[A-Za-z0-9]{32}")


class KeyHolder:
    """``request.user`` for a request made with an API key (not a Django user)."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, key: APIKey) -> None:
        self.key = key
        self.username = f"api-key:{key.prefix}"

    def __str__(self) -> str:
        return self.username


class _VerifiedKeys:
    """Keys verified in the last ``API_KEY_CACHE_SECONDS``, per process: the database look-up
    and ORM work cost about as much as answering a cached report. Expiry is still checked on
    every request; a revocation reaches every process within that many seconds."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[APIKey, float]] = {}
        self.lock = threading.Lock()

    def get(self, key: str) -> APIKey | None:
        found = self.keys.get(key)
        if found is None or time.monotonic() - found[1] > settings.API_KEY_CACHE_SECONDS:
            return None
        return found[0]

    def put(self, key: str, api_key: APIKey) -> None:
        if settings.API_KEY_CACHE_SECONDS <= 0:
            return
        with self.lock:
            if len(self.keys) >= 10_000:
                self.keys.clear()
            self.keys[key] = (api_key, time.monotonic())

    def clear(self) -> None:
        with self.lock:
            self.keys.clear()


verified_keys = _VerifiedKeys()


class APIKeyAuthentication(BaseAuthentication):
    keyword = KeyParser.keyword

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            return None
        keyword, _, key = header.partition(" ")
        if keyword.lower() != self.keyword.lower():
            # e.g. Basic: refused rather than ignored, so a client sending a password learns
            # at once that it is not accepted (the header itself is never echoed).
            raise AuthenticationFailed(f"Unsupported authorization scheme: send 'Authorization: {self.keyword} <key>'.")
        key = key.strip()
        api_key = verified_keys.get(key) if _KEY.fullmatch(key) else None
        if api_key is None:
            address = client_address(request)
            wait = failed_keys.retry_after(address)
            if wait is not None:
                raise Throttled(
                    wait=wait,
                    detail=f"Too many invalid API keys from this address; retry in {int(wait) + 1} s.",
                )
            if not _KEY.fullmatch(key):
                failed_keys.record(address)
                raise AuthenticationFailed("Invalid API key.")
            try:
                api_key = APIKey.objects.get_from_key(key)
            except APIKey.DoesNotExist:
                # Unknown prefix, wrong secret, or revoked (the library only looks among usable keys).
                failed_keys.record(address)
                raise AuthenticationFailed("Invalid or revoked API key.") from None
            verified_keys.put(key, api_key)
        if api_key.has_expired:
            raise AuthenticationFailed("This API key has expired.")
        return KeyHolder(api_key), api_key

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'


def required_scope(method: str, action: str | None = None) -> str:
    if action == "export":
        return "export"
    if method in SAFE_METHODS:
        return "read"
    return "admin" if method == "DELETE" else "write"


READ_PERMISSION = "outcomes.view_auctionoutcome"
EXPORT_PERMISSION = "outcomes.export_auctionoutcome"
# What a person needs for each change, as the admin grants it: the model permission of the
# view's model (``permission_model``: outcomes unless the view says otherwise).
_CODENAMES = {"POST": "add", "PUT": "change", "PATCH": "change", "DELETE": "delete"}


def write_permission(view, method: str) -> str:
    model = getattr(view, "permission_model", "auctionoutcome")
    return f"outcomes.{_CODENAMES.get(method, 'change')}_{model}"


def user_may_read(user) -> bool:
    """A person (session) may read outcomes: staff, or whoever may view them in the admin."""
    if not (user and user.is_authenticated and user.is_active) or isinstance(user, KeyHolder):
        return False
    return bool(user.is_staff or user.has_perm(READ_PERMISSION))


class ScopedAccess(BasePermission):
    def has_permission(self, request, view) -> bool:
        # A view may say what it needs whatever the method (GraphQL reads by POST too).
        scope = getattr(view, "access_scope", None) or required_scope(request.method, getattr(view, "action", None))
        if isinstance(request.auth, APIKey):
            if request.auth.allows(scope):
                return True
            self.message = f"This API key lacks the '{scope}' scope."
            return False
        user = request.user
        if scope == "read" and getattr(view, "private_reads", False):
            # Addresses and webhooks (subscriptions, alerts): never public, a person needs the
            # model's own view permission.
            needed = f"outcomes.view_{view.permission_model}"
            if _has(user, needed):
                return True
            if user and user.is_authenticated:
                self.message = f"This needs the '{needed.split('.')[1].replace('_', ' ')}' permission."
            return False
        if scope == "read":
            if settings.API_READ_ACCESS == "public" or user_may_read(user):
                return True
            if user and user.is_authenticated:
                self.message = "Reading outcomes needs staff status or the 'view auction outcome' permission."
            return False
        if scope == "export":
            # Public reads (development, or a deployment that chose them) export publicly too:
            # the list already shows every row, user ids included.
            if settings.API_READ_ACCESS == "public" or _has(user, EXPORT_PERMISSION):
                return True
            if user and user.is_authenticated:
                self.message = "Exporting outcomes needs the 'export auction outcomes' permission."
            return False
        needed = write_permission(view, request.method)
        if _has(user, needed):
            return True
        if user and user.is_authenticated:
            self.message = (
                f"This needs the '{needed.split('.')[1].replace('_', ' ')}' permission "
                f"(or an API key with the '{scope}' scope)."
            )
        return False


def _has(user, permission: str) -> bool:
    if not (user and user.is_authenticated and user.is_active) or isinstance(user, KeyHolder):
        return False
    return bool(user.has_perm(permission))


class APIKeyScheme(OpenApiAuthenticationExtension):
    """The OpenAPI security scheme of ``APIKeyAuthentication``."""

    target_class = APIKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'An API key, sent as "Api-Key <key>". Create one with `manage.py create_api_key`.',
        }
