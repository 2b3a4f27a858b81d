"""Bytes from the ``auction_outcomes`` topic → ``OutcomeEvent`` or ``InvalidOutcome``.

Pure: no Kafka, no database, no Django settings. Every rejection carries a stable reason
code (``DeadLetter.Reason`` values) and a human-readable detail naming the field, so a
dead letter says exactly what was wrong.

Message format (the service specification's "Message Flow Example")::

    {"bid_request_id": "req-123", "user_id": "user-456", "site_domain": "news.example",
     "bid_price": 0.80, "win_status": true, "win_price": 0.80, "currency": "USD",
     "enriched": true, "user_interests": ["technology", "sports"],
     "auction_timestamp": "2025-10-25T12:00:02Z"}

``bid_id`` is accepted in place of ``bid_request_id``. Prices may be JSON numbers or
decimal strings and are rounded half-up to cents. ``win_price`` may be omitted (or null)
for a lost auction and is then 0.00. A timestamp without a UTC offset is taken as UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import orjson

from outcomes.validation import (
    CENT,
    DEFAULT_CURRENCY,
    DEFAULT_MAX_PRICE,
    MAX_INTERESTS,
    MAX_TEXT_LENGTH,
    currency_code,
    slug,
)

DEFAULT_MAX_MESSAGE_BYTES = 65536


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    """One valid auction outcome, ready to store."""

    bid_id: str
    user_id: str
    site_domain: str | None
    win_status: bool
    win_price: Decimal
    bid_price: Decimal
    currency: str
    enriched: bool
    user_interests: tuple[str, ...]
    auction_timestamp: datetime | None
    raw_json: str  # the complete message text, stored as raw_data
    experiment: str | None = None  # an experiment's key and the variant served (both or neither)
    variant: str | None = None


@dataclass(frozen=True, slots=True)
class InvalidOutcome:
    """Why a message cannot be stored. ``reason`` is a ``DeadLetter.Reason`` value; ``field``
    names the offending field when one is to blame (the API reports it as that field's error)."""

    reason: str
    detail: str
    field: str | None = None


class _Reject(Exception):
    def __init__(self, reason: str, detail: str, field: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.field = field


def parse_outcome(
    value: bytes | None,
    key: bytes | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_price: Decimal = DEFAULT_MAX_PRICE,
) -> OutcomeEvent | InvalidOutcome:
    """Parse and validate one message. Never raises for bad input."""
    try:
        return _parse(value, key, max_bytes, max_price)
    except _Reject as rejected:
        return InvalidOutcome(rejected.reason, rejected.detail, rejected.field)


def _parse(value: bytes | None, key: bytes | None, max_bytes: int, max_price: Decimal) -> OutcomeEvent:
    if key is not None:
        try:
            key.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Reject(
                "undecodable_key", f"message key is not valid UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
    if not value:
        raise _Reject("empty_message", "message value is empty (null or zero bytes)")
    if len(value) > max_bytes:
        raise _Reject("oversized", f"message is {len(value)} bytes, above the limit of {max_bytes}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Reject(
            "undecodable_value", f"message value is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    if "\\u0000" in text:
        # PostgreSQL's jsonb cannot hold U+0000; storing it would fail the whole batch.
        raise _Reject("invalid_value", "message contains the NUL character (\\u0000), which cannot be stored")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise _Reject("invalid_json", f"message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Reject("not_an_object", f"message is a JSON {_json_type(data)}, not an object")

    bid_id = _bid_id(data)
    user_id = _text(data, "user_id", required=True)
    site_domain = _text(data, "site_domain", required=False) or None
    win_status = _bool(data, "win_status", required=True)
    bid_price = _price(data, "bid_price", max_price, required=True)
    win_price = _price(data, "win_price", max_price, required=win_status)
    if win_price is None:
        win_price = Decimal("0.00")
    if win_status and win_price > bid_price:
        raise _Reject(
            "invalid_value", f"win_price {win_price} is above bid_price {bid_price} for a won auction", "win_price"
        )
    currency = data.get("currency")
    if currency is None:
        currency = DEFAULT_CURRENCY
    elif not isinstance(currency, str):
        raise _Reject("wrong_type", f"currency must be a string, got {_json_type(currency)}", "currency")
    else:
        try:
            currency = currency_code(currency)
        except ValueError as exc:
            raise _Reject("invalid_currency", f"currency {exc}", "currency") from None
    enriched = _bool(data, "enriched", required=False)
    interests = _interests(data)
    auction_timestamp = _timestamp(data, "auction_timestamp")
    experiment, variant = _experiment(data)

    return OutcomeEvent(
        bid_id=bid_id,
        user_id=user_id,
        site_domain=site_domain,
        win_status=win_status,
        win_price=win_price,
        bid_price=bid_price,
        currency=currency,
        enriched=bool(enriched),
        user_interests=interests,
        auction_timestamp=auction_timestamp,
        raw_json=text,
        experiment=experiment,
        variant=variant,
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _bid_id(data: dict) -> str:
    has_request_id = data.get("bid_request_id") is not None
    has_bid_id = data.get("bid_id") is not None
    if not has_request_id and not has_bid_id:
        raise _Reject("missing_field", "bid_request_id (or bid_id) is required", "bid_id")
    request_id = _text(data, "bid_request_id", required=False) if has_request_id else None
    bid_id = _text(data, "bid_id", required=False) if has_bid_id else None
    if request_id and bid_id and request_id != bid_id:
        raise _Reject("invalid_value", "bid_request_id and bid_id are both given and differ", "bid_id")
    result = request_id or bid_id
    if not result:
        raise _Reject("invalid_value", "bid_request_id must not be empty", "bid_id")
    return result


def _experiment(data: dict) -> tuple[str | None, str | None]:
    """(experiment, variant): both slugs, or both absent (null is absent)."""
    experiment, variant = data.get("experiment"), data.get("variant")
    if experiment is None and variant is None:
        return None, None
    if experiment is None or variant is None:
        given, missing = ("variant", "experiment") if experiment is None else ("experiment", "variant")
        raise _Reject("invalid_experiment", f"{given} is given without {missing}: both or neither", missing)
    for field, value in (("experiment", experiment), ("variant", variant)):
        if not isinstance(value, str):
            raise _Reject("invalid_experiment", f"{field} must be a string, got {_json_type(value)}", field)
        try:
            slug(value)
        except ValueError as exc:
            raise _Reject("invalid_experiment", f"{field} {exc}", field) from None
    return experiment, variant


def _given(data: dict, field: str, *, required: bool):
    """The field's value; None when it is absent or null and may be, a rejection when it may not."""
    value = data.get(field)
    if value is None and required:
        raise _Reject("missing_field", f"{field} is required", field)
    return value


def _text(data: dict, field: str, *, required: bool) -> str | None:
    value = _given(data, field, required=required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Reject("wrong_type", f"{field} must be a string, got {_json_type(value)}", field)
    if required and not value.strip():
        raise _Reject("invalid_value", f"{field} must not be empty", field)
    if len(value) > MAX_TEXT_LENGTH:
        raise _Reject("invalid_value", f"{field} is {len(value)} characters long, above {MAX_TEXT_LENGTH}", field)
    return value


def _bool(data: dict, field: str, *, required: bool) -> bool | None:
    value = _given(data, field, required=required)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _Reject("wrong_type", f"{field} must be true or false, got {_json_type(value)}", field)
    return value


def _price(data: dict, field: str, max_price: Decimal, *, required: bool) -> Decimal | None:
    value = _given(data, field, required=required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Reject("wrong_type", f"{field} must be a number, got {_json_type(value)}", field)
    try:
        amount = Decimal(value) if isinstance(value, (int, str)) else Decimal(repr(value))
    except InvalidOperation:
        raise _Reject("wrong_type", f"{field} {str(value)[:40]!r} is not a decimal number", field) from None
    if not amount.is_finite():
        raise _Reject("invalid_value", f"{field} must be a finite number", field)
    if amount < 0:
        raise _Reject("negative_price", f"{field} {amount} is negative", field)
    if amount > max_price:
        raise _Reject("price_above_bound", f"{field} {amount} is above the sanity bound {max_price}", field)
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def _interests(data: dict) -> tuple[str, ...]:
    value = data.get("user_interests")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _Reject(
            "wrong_type", f"user_interests must be an array of strings, got {_json_type(value)}", "user_interests"
        )
    if len(value) > MAX_INTERESTS:
        raise _Reject(
            "invalid_value", f"user_interests has {len(value)} entries, above {MAX_INTERESTS}", "user_interests"
        )
    for item in value:
        if not isinstance(item, str):
            raise _Reject(
                "wrong_type", f"user_interests must hold only strings, found {_json_type(item)}", "user_interests"
            )
    return tuple(value)


def _timestamp(data: dict, field: str) -> datetime | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Reject("invalid_timestamp", f"{field} must be an ISO 8601 string, got {_json_type(value)}", field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Reject("invalid_timestamp", f"{field} {value[:40]!r} is not an ISO 8601 date-time", field) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _Reject("invalid_timestamp", f"{field} {value[:40]!r} is out of range", field) from None
