"""Webhooks of subscriptions and alerts: a JSON body signed with HMAC-SHA256, posted to an
address checked not to reach into the service's own network.

The signature header is Stripe's scheme (``X-Analytics-Signature: t=<unix time>,v1=<hex>``,
the HMAC of ``"<t>." + body`` under the subscription's secret): the receiver recomputes it,
compares in constant time (``verify``) and refuses old timestamps, so a captured request
cannot be replayed later.

An address is refused when its host is, or resolves to, a loopback, private, link-local or
otherwise non-public address (a subscription must not become a way to call the cluster's
internal services), unless ``WEBHOOK_ALLOW_PRIVATE`` is on. The connection is made to the
address that was checked, not resolved again (no DNS rebinding between check and call), and
redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import secrets
import socket
import ssl
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Analytics-Signature"
TOLERANCE_SECONDS = 300


class WebhookError(Exception):
    """The webhook could not be delivered; the message says why (recorded on the delivery)."""


def new_secret() -> str:
    return secrets.token_hex(32)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance: int = TOLERANCE_SECONDS) -> bool:
    """What a receiver does: the signature matches and is at most ``tolerance`` seconds old."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), f"t={timestamp},v1={fields.get('v1', '')}")


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool) -> None:
    """Raise ValueError saying what is wrong with ``url`` as a webhook address (no DNS lookup:
    a literal address is checked here, a name when it is called)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("A webhook is an http:// or https:// address.")
    if not parts.hostname:
        raise ValueError("The webhook address has no host.")
    if parts.username or parts.password:
        raise ValueError("No credentials in the webhook address: the signature authenticates the calls.")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        raise ValueError("The webhook address's port is not a port number.") from None
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname.lower() == "localhost" and not allow_private:
            raise ValueError("The webhook address is this machine (localhost): not allowed here.") from None
        return
    if not allow_private and not _public(parts.hostname):
        raise ValueError("The webhook address is not a public address (loopback, private or link-local).")


def _resolve(host: str, port: int, *, allow_private: bool) -> str:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookError(f"Cannot resolve {host}: {exc}") from None
    addresses = [info[4][0] for info in found]
    if not allow_private:
        refused = [address for address in addresses if not _public(address)]
        if refused:
            raise WebhookError(f"{host} resolves to a non-public address ({refused[0]}): refused.")
    return addresses[0]


class _Pinned(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def post(
    url: str,
    body: bytes,
    *,
    secret: str,
    timestamp: int,
    timeout: float,
    allow_private: bool,
    headers: dict[str, str] | None = None,
) -> int:
    """POST ``body`` (JSON) signed; the HTTP status, or WebhookError (network error, refused
    address, or an answer other than 2xx)."""
    try:
        check_url(url, allow_private=allow_private)
    except ValueError as exc:
        raise WebhookError(str(exc)) from None
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = _resolve(parts.hostname, port, allow_private=allow_private)
    connection_class = _PinnedTLS if parts.scheme == "https" else _Pinned
    connection = connection_class(parts.hostname, port, address, timeout)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "analytics-service-webhooks/1",
                SIGNATURE_HEADER: sign(secret, body, timestamp),
                **(headers or {}),
            },
        )
        response = connection.getresponse()
        response.read(65536)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        raise WebhookError(f"{parts.hostname}: {exc.__class__.__name__}: {exc}") from None
    finally:
        connection.close()
    if not 200 <= status < 300:
        raise WebhookError(f"{parts.hostname} answered HTTP {status}.")
    return status
