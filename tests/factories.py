"""Builders shared by the tests (imported, never through conftest): messages as producers
send them, and one ``wait_until`` instead of hand-written polling loops."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
BROKERS = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")  # the local broker (scripts/services.sh)

SPEC_MESSAGE = {
    "bid_request_id": "req-123",
    "user_id": "user-456",
    "bid_price": 0.80,
    "win_status": True,
    "win_price": 0.80,
    "currency": "USD",
    "enriched": True,
    "user_interests": ["technology", "sports"],
    "auction_timestamp": "2025-10-25T12:00:02Z",
}


# The model permissions of a person who may read and change outcomes (as the admin grants them).
WRITER_PERMISSIONS = ("view_auctionoutcome", "add_auctionoutcome", "change_auctionoutcome", "delete_auctionoutcome")


def message(**overrides) -> dict:
    """The spec's example message with a fresh bid id, and any field changed."""
    data = dict(SPEC_MESSAGE)
    data["bid_request_id"] = f"req-{uuid.uuid4()}"
    data.update(overrides)
    return data


def encode(data) -> bytes:
    return orjson.dumps(data)


class WaitedInVain(AssertionError):
    """A condition a test waited for did not come true in time."""


def wait_until(
    condition: Callable[[], object], timeout: float, interval: float = 0.05, *, what: str | None = None
) -> object:
    """``condition()``'s first truthy value, asked every ``interval`` seconds; a failure of
    the test (``WaitedInVain``, naming ``what`` or the condition) if none comes within
    ``timeout`` seconds. Never returns having waited for nothing."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            name = what or getattr(condition, "__name__", "the condition")
            raise WaitedInVain(f"waited {timeout:g} s for {name}, in vain")
        time.sleep(interval)


def parse_document(document: dict):
    from django.conf import settings

    from outcomes.messages import InvalidOutcome, parse_outcome

    parsed = parse_outcome(orjson.dumps(document), max_price=settings.CONSUMER.max_price)
    assert not isinstance(parsed, InvalidOutcome), parsed
    return parsed


def raw_outcomes(rows: int, *, raw_bytes: int = 0) -> None:
    """``rows`` outcomes inserted straight into the table, no rollups (for what reads raw rows
    only: exports, lists). Event times one second apart, back from now; ``raw_bytes``: the
    size of each stored message (``raw_data``), padded."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO outcomes_auctionoutcome (bid_id, user_id, site_domain, win_status, win_price, bid_price,
                    currency, enriched, user_interests, auction_timestamp, raw_data)
               SELECT 'raw-' || n, 'user-' || (n %% 1000), 'site-' || (n %% 50) || '.example', n %% 3 > 0,
                      CASE WHEN n %% 3 > 0 THEN 0.5 ELSE 0 END, 0.9, 'USD', true, '["sports", "news"]',
                      now() - n * interval '1 second', jsonb_build_object('pad', md5(n::text) || repeat('x', %s))
               FROM generate_series(1, %s) AS n""",
            [raw_bytes, rows],
        )
