"""The small pure modules, in the fast tier: time buckets, privacy, COPY text, cursors,
Kafka offset ranges, environment readers, and each role's start-up checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from analytics import env, privacy, roles
from outcomes import cursors, pgcopy
from outcomes.buckets import iso_utc, truncate
from outcomes.offsets import BEFORE_BEGINNING, BEYOND_END, LogRange, classify

pytestmark = pytest.mark.fast


def test_times_are_written_in_utc_with_z():
    paris = timezone(timedelta(hours=1))
    assert iso_utc(datetime(2026, 12, 2, 15, 0, 7, 120000, tzinfo=paris)) == "2026-12-02T14:00:07.120000Z"
    assert iso_utc(datetime(2026, 12, 2, 14, tzinfo=UTC), timespec="milliseconds") == "2026-12-02T14:00:00.000Z"
    assert iso_utc(None) is None
    assert truncate(datetime(2026, 12, 2, 14, 37, 5, tzinfo=UTC), "hour") == datetime(2026, 12, 2, 14, tzinfo=UTC)


def test_user_ids_are_redacted_and_hashed_with_a_key():
    assert privacy.redacted_query("user_id=alice&site_domain=a.example") == "user_id=redacted&site_domain=a.example"
    assert privacy.redacted_query("currency=EUR") == "currency=EUR"
    assert privacy.redacted_params({"user_id": "bob", "win_status": "true"}) == {
        "user_id": "redacted",
        "win_status": "true",
    }
    one, other = privacy.user_hash("alice", "k" * 32), privacy.user_hash("alice", "j" * 32)
    assert len(one) == 64 and one != other and "alice" not in one


def test_copy_text_escapes_what_copy_reads_specially():
    assert pgcopy.escape("a\tb\nc\\d\re") == "a\\tb\\nc\\\\d\\re"
    row = (None, True, False, b"\x01\xff", datetime(2026, 1, 1, tzinfo=UTC), Decimal("1.50"), "x")
    assert pgcopy.rows_text([row]) == "\\N\tt\tf\t\\\\x01ff\t2026-01-01T00:00:00+00:00\t1.50\tx\n"


def test_a_cursor_carries_its_ordering_and_refuses_another():
    ordering = ["-win_price", "site_domain", "id"]
    values = [Decimal("1.25"), None, 42]
    token = cursors.encode(ordering, values)
    assert cursors.decode(token, ordering) == values
    with pytest.raises(cursors.InvalidCursor, match="walks ordering"):
        cursors.decode(token, ["id"])
    for bad in ("not-base64!", cursors.encode(["id"], ["forty-two"]), "W10"):
        with pytest.raises(cursors.InvalidCursor):
            cursors.decode(bad, ["id"])


def test_a_stored_offset_is_placed_against_the_log():
    log = LogRange(first=100, end=250)
    assert classify(99, log) == BEFORE_BEGINNING
    assert classify(100, log) is None and classify(250, log) is None
    assert classify(251, log) == BEYOND_END


def test_environment_readers_name_the_variable(monkeypatch):
    monkeypatch.setenv("ANALYTICS_TEST_INT", "seven")
    with pytest.raises(ImproperlyConfigured, match="ANALYTICS_TEST_INT='seven' is not an integer"):
        env.env_int("ANALYTICS_TEST_INT", 1)
    monkeypatch.setenv("ANALYTICS_TEST_MODE", "verify")
    with pytest.raises(ImproperlyConfigured, match="ANALYTICS_TEST_MODE='verify' is not one of a, b"):
        env.env_choice("ANALYTICS_TEST_MODE", "a", ("a", "b"))
    assert env.parse_rate("600/minute", "X") == (600, 60) and env.parse_rate("off", "X") is None


def test_each_role_asks_only_for_what_it_reads(settings):
    settings.ROLE_CHECKS = True
    settings.ALLOWED_HOSTS = ["*"]
    settings.REDIS_URL = ""
    settings.API_RATE_LIMITS_ON = True
    settings.PRIVACY_HASH_KEY = "your-privacy-hash-key"
    settings.API_METRICS_TOKEN = ""
    settings.SECRET_KEY = "s" * 8 + "0123456789abcdefghijklmnopqrstuvwxyz"
    api = roles.problems("api")
    assert [p.split(" ", 1)[0] for p in api] == ["ALLOWED_HOSTS='*'", "REDIS_URL", "PRIVACY_HASH_KEY"]
    assert [p.split(" ", 1)[0] for p in roles.problems("consumer")] == ["PRIVACY_HASH_KEY"]
    assert roles.problems("database") == []
    settings.ROLE_CHECKS = False
    assert roles.problems("api") == []
