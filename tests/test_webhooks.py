"""Webhook signatures and address checks (pure, the fast tier)."""

from __future__ import annotations

import pytest

from outcomes import webhooks

pytestmark = pytest.mark.fast


def test_a_signature_verifies_only_for_its_body_secret_and_time():
    body = b'{"type":"report"}'
    header = webhooks.sign("s3cret", body, 1_800_000_000)
    assert header.startswith("t=1800000000,v1=") and len(header.split("v1=")[1]) == 64
    assert webhooks.verify("s3cret", header, body, now=1_800_000_010)
    assert not webhooks.verify("other", header, body, now=1_800_000_010)
    assert not webhooks.verify("s3cret", header, body + b" ", now=1_800_000_010)
    assert not webhooks.verify("s3cret", header, body, now=1_800_000_000 + webhooks.TOLERANCE_SECONDS + 1)
    assert not webhooks.verify("s3cret", "garbage", body, now=1_800_000_010)
    assert not webhooks.verify("s3cret", header.replace("t=1800000000", "t=1800000001"), body, now=1_800_000_010)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "http:// or https://"),
        ("https:///path", "no host"),
        ("https://u:p@example.com/", "No credentials"),
        ("https://example.com:99999/", "port"),
        ("http://127.0.0.1:8000/", "not a public address"),
        ("http://10.1.2.3/", "not a public address"),
        ("http://192.168.0.1/", "not a public address"),
        ("http://169.254.169.254/", "not a public address"),
        ("http://[::1]/", "not a public address"),
        ("http://[::ffff:10.0.0.1]/", "not a public address"),
        ("http://localhost/", "localhost"),
    ],
)
def test_addresses_refused(url, reason):
    with pytest.raises(ValueError, match=reason):
        webhooks.check_url(url, allow_private=False)


def test_public_addresses_and_names_pass_the_check():
    webhooks.check_url("https://hooks.example.com/analytics?x=1", allow_private=False)
    webhooks.check_url("http://93.184.215.14/", allow_private=False)
    webhooks.check_url("http://127.0.0.1:9000/", allow_private=True)


def test_a_name_that_resolves_to_a_private_address_is_refused_when_called():
    # a name passes the save-time check (no DNS then); the call resolves it and refuses
    with pytest.raises(webhooks.WebhookError, match="non-public address"):
        webhooks._resolve("localhost", 9, allow_private=False)
    assert webhooks._resolve("localhost", 9, allow_private=True) in ("127.0.0.1", "::1")
