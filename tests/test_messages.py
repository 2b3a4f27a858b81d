"""Message parsing and validation: pure, no database, no broker."""

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from outcomes.messages import InvalidOutcome, OutcomeEvent, parse_outcome
from tests.factories import SPEC_MESSAGE

pytestmark = pytest.mark.fast


def parse(data, **kwargs):
    value = data if isinstance(data, bytes) else orjson.dumps(data)
    return parse_outcome(value, **kwargs)


def test_spec_example_maps_exactly():
    event = parse(SPEC_MESSAGE)
    assert isinstance(event, OutcomeEvent)
    assert event.bid_id == "req-123"
    assert event.user_id == "user-456"
    assert event.site_domain is None
    assert event.win_status is True
    assert event.win_price == Decimal("0.80") and str(event.win_price) == "0.80"
    assert event.bid_price == Decimal("0.80")
    assert event.currency == "USD"
    assert event.enriched is True
    assert event.user_interests == ("technology", "sports")
    assert event.auction_timestamp == datetime(2025, 10, 25, 12, 0, 2, tzinfo=UTC)
    assert orjson.loads(event.raw_json) == SPEC_MESSAGE


def test_bid_id_is_accepted_instead_of_bid_request_id():
    data = {k: v for k, v in SPEC_MESSAGE.items() if k != "bid_request_id"} | {"bid_id": "b-1"}
    assert parse(data).bid_id == "b-1"


def test_both_ids_must_agree():
    result = parse(SPEC_MESSAGE | {"bid_id": "other"})
    assert result == InvalidOutcome("invalid_value", "bid_request_id and bid_id are both given and differ", "bid_id")


def test_defaults_for_optional_fields():
    data = {"bid_request_id": "r", "user_id": "u", "bid_price": 1, "win_status": False}
    event = parse(data)
    assert event.currency == "USD"
    assert event.enriched is False
    assert event.user_interests == ()
    assert event.win_price == Decimal("0.00")
    assert event.auction_timestamp is None
    assert event.site_domain is None


def test_prices_round_half_up_to_cents_and_accept_decimal_strings():
    event = parse(SPEC_MESSAGE | {"bid_price": "1.005", "win_price": 0.125})
    assert event.bid_price == Decimal("1.01")
    assert event.win_price == Decimal("0.13")


def test_site_domain_kept_and_empty_means_absent():
    assert parse(SPEC_MESSAGE | {"site_domain": "news.example"}).site_domain == "news.example"
    assert parse(SPEC_MESSAGE | {"site_domain": ""}).site_domain is None


def test_timestamp_with_offset_is_converted_to_utc_and_naive_is_utc():
    assert parse(SPEC_MESSAGE | {"auction_timestamp": "2025-10-25T14:00:02+02:00"}).auction_timestamp == datetime(
        2025, 10, 25, 12, 0, 2, tzinfo=UTC
    )
    assert parse(SPEC_MESSAGE | {"auction_timestamp": "2025-10-25T12:00:02.5"}).auction_timestamp == datetime(
        2025, 10, 25, 12, 0, 2, 500000, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (None, None, "empty_message"),
        (b"", None, "empty_message"),
        (b"x" * 70000, None, "oversized"),
        (b"\xff\xfe{}", None, "undecodable_value"),
        (orjson.dumps(SPEC_MESSAGE), b"\xc3\x28", "undecodable_key"),
        (b"{not json", None, "invalid_json"),
        (b'{"a": NaN}', None, "invalid_json"),
        (b"[1, 2]", None, "not_an_object"),
        (b'"text"', None, "not_an_object"),
        (orjson.dumps({k: v for k, v in SPEC_MESSAGE.items() if k != "user_id"}), None, "missing_field"),
        (orjson.dumps({k: v for k, v in SPEC_MESSAGE.items() if k != "bid_request_id"}), None, "missing_field"),
        (orjson.dumps({k: v for k, v in SPEC_MESSAGE.items() if k != "win_status"}), None, "missing_field"),
        (orjson.dumps({k: v for k, v in SPEC_MESSAGE.items() if k != "bid_price"}), None, "missing_field"),
        (orjson.dumps({k: v for k, v in SPEC_MESSAGE.items() if k != "win_price"}), None, "missing_field"),
        (orjson.dumps(SPEC_MESSAGE | {"user_id": 456}), None, "wrong_type"),
        (orjson.dumps(SPEC_MESSAGE | {"win_status": "yes"}), None, "wrong_type"),
        (orjson.dumps(SPEC_MESSAGE | {"bid_price": True}), None, "wrong_type"),
        (orjson.dumps(SPEC_MESSAGE | {"bid_price": "cheap"}), None, "wrong_type"),
        (orjson.dumps(SPEC_MESSAGE | {"enriched": 1}), None, "wrong_type"),
        (orjson.dumps(SPEC_MESSAGE | {"user_interests": "sports"}), None, "wrong_type"),
        (orjson.dumps(SPEC_MESSAGE | {"user_interests": ["a", 1]}), None, "wrong_type"),
        (orjson.dumps(SPEC_MESSAGE | {"currency": 840}), None, "wrong_type"),
        (orjson.dumps(SPEC_MESSAGE | {"bid_price": -0.5}), None, "negative_price"),
        (orjson.dumps(SPEC_MESSAGE | {"win_status": False, "win_price": -1}), None, "negative_price"),
        (orjson.dumps(SPEC_MESSAGE | {"bid_price": 5000, "win_price": 1}), None, "price_above_bound"),
        (orjson.dumps(SPEC_MESSAGE | {"currency": "U$D"}), None, "invalid_currency"),
        (orjson.dumps(SPEC_MESSAGE | {"currency": "US Dollar"}), None, "invalid_currency"),
        (orjson.dumps(SPEC_MESSAGE | {"auction_timestamp": "yesterday"}), None, "invalid_timestamp"),
        (orjson.dumps(SPEC_MESSAGE | {"auction_timestamp": "2025-13-45T00:00:00Z"}), None, "invalid_timestamp"),
        (orjson.dumps(SPEC_MESSAGE | {"auction_timestamp": 1761393602}), None, "invalid_timestamp"),
        (orjson.dumps(SPEC_MESSAGE | {"win_price": 0.9}), None, "invalid_value"),
        (orjson.dumps(SPEC_MESSAGE | {"user_id": ""}), None, "invalid_value"),
        (orjson.dumps(SPEC_MESSAGE | {"user_id": "u" * 256}), None, "invalid_value"),
        (orjson.dumps(SPEC_MESSAGE | {"user_id": "a\u0000b"}), None, "invalid_value"),
    ],
)
def test_bad_messages_are_rejected_with_a_specific_reason(value, key, reason):
    result = parse_outcome(value, key, max_bytes=65536, max_price=Decimal("1000"))
    assert isinstance(result, InvalidOutcome)
    assert result.reason == reason
    assert result.detail


@pytest.mark.parametrize("code", ["eur", "Eur", "eUR", "EUR"])
def test_a_currency_in_any_case_is_stored_upper_case(code):
    assert parse(SPEC_MESSAGE | {"currency": code}).currency == "EUR"


@pytest.mark.parametrize(
    ("code", "detail"),
    [
        ("US Dollar", "currency 'US Dollar' has 9 characters; an ISO 4217 currency code is 3 letters, such as USD"),
        ("EU", "currency 'EU' has 2 characters; an ISO 4217 currency code is 3 letters, such as USD"),
        ("U$D", "currency 'U$D' contains '$'; an ISO 4217 currency code is 3 letters A–Z, such as USD"),
        ("ÜSD", "currency 'ÜSD' contains 'Ü'; an ISO 4217 currency code is 3 letters A–Z, such as USD"),
        ("E 1", "currency 'E 1' contains ' ', '1'; an ISO 4217 currency code is 3 letters A–Z, such as USD"),
    ],
)
def test_a_refused_currency_says_what_is_wrong(code, detail):
    result = parse(SPEC_MESSAGE | {"currency": code})
    assert result.reason == "invalid_currency" and result.field == "currency"
    assert result.detail == detail


def test_detail_names_the_field():
    result = parse(SPEC_MESSAGE | {"bid_price": -1})
    assert "bid_price" in result.detail
    result = parse({k: v for k, v in SPEC_MESSAGE.items() if k != "user_id"})
    assert result.detail == "user_id is required"


def test_limits_are_parameters():
    data = SPEC_MESSAGE | {"bid_price": 5, "win_price": 4}
    assert isinstance(parse(data, max_price=Decimal("10")), OutcomeEvent)
    assert parse(data, max_price=Decimal("4.99")).reason == "price_above_bound"
    assert parse(orjson.dumps(SPEC_MESSAGE), max_bytes=10).reason == "oversized"


def test_a_lost_auction_may_report_the_clearing_price_above_its_bid():
    event = parse(SPEC_MESSAGE | {"win_status": False, "win_price": 1.5, "bid_price": 1.0})
    assert isinstance(event, OutcomeEvent)
    assert event.win_price == Decimal("1.50")
