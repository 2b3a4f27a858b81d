"""The domain rules: what a valid auction outcome is.

Pure (no Django, no database, no Kafka). One home for every limit and pattern: the message
parser (``outcomes.messages``), the write service, the API's filters and the OpenAPI
schema import them from here, so they cannot disagree.
"""

from __future__ import annotations

from decimal import Decimal

# An outcome's fields as a message carries them (``bid_request_id`` is read as ``bid_id``):
# what the write service stores and takes, and the order of every listing of them.
MESSAGE_FIELDS = (
    "bid_id",
    "user_id",
    "site_domain",
    "win_status",
    "win_price",
    "bid_price",
    "currency",
    "enriched",
    "user_interests",
    "auction_timestamp",
    "experiment",
    "variant",
)
MAX_TEXT_LENGTH = 255  # bid_id, user_id, site_domain, an interest (the columns' varchar)
MAX_INTERESTS = 100
# Text PostgreSQL can store (no NUL character), and text that is not blank besides (JSON
# Schema patterns, for the OpenAPI schema).
NO_NUL_PATTERN = "^[^\\u0000]*$"
NOT_BLANK_PATTERN = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
CENT = Decimal("0.01")
PRICE_DIGITS, PRICE_PLACES = 10, 2  # the price columns: numeric(10, 2)
COLUMN_MAX_PRICE = Decimal("9" * (PRICE_DIGITS - PRICE_PLACES) + "." + "9" * PRICE_PLACES)  # 99999999.99
DEFAULT_MAX_PRICE = Decimal("1000.00")  # CONSUMER_MAX_PRICE's default: the sanity bound
CURRENCY_LENGTH = 3
DEFAULT_CURRENCY = "USD"
CURRENCY_PATTERN = f"^[A-Za-z]{{{CURRENCY_LENGTH}}}$"  # any case in; stored upper-case
_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# An experiment's key and a variant's name: short slugs (GrowthBook's and Statsig's keys),
# case kept. A message carries both or neither.
SLUG_LENGTH = 64
SLUG_PATTERN = f"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{SLUG_LENGTH - 1}}}$"
_SLUG_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def currency_code(value: str) -> str:
    """An ISO 4217 code in any case (``eur``, ``Eur``), upper-cased. Raises ``ValueError``
    saying what is wrong with anything else."""
    code = value.upper()
    if len(value) != CURRENCY_LENGTH:
        raise ValueError(
            f"{value[:20]!r} has {len(value)} characters; an ISO 4217 currency code is 3 letters, such as USD"
        )
    others = sorted({c for c in code if c not in _LETTERS})
    if others:
        shown = ", ".join(repr(c) for c in others)
        raise ValueError(f"{value!r} contains {shown}; an ISO 4217 currency code is 3 letters A–Z, such as USD")
    return code


def slug(value: str) -> str:
    """An experiment key or variant name: 1 to 64 of A–Z, a–z, 0–9, ``.``, ``_``, ``-``,
    starting with a letter or digit. Raises ``ValueError`` saying what is wrong."""
    if not value:
        raise ValueError("must not be empty")
    if len(value) > SLUG_LENGTH:
        raise ValueError(f"is {len(value)} characters long, above {SLUG_LENGTH}")
    others = sorted({c for c in value if c not in _SLUG_CHARACTERS})
    if others:
        shown = ", ".join(repr(c) for c in others[:5])
        raise ValueError(f"{value[:40]!r} contains {shown}; use letters, digits, '.', '_' and '-'")
    if not value[0].isalnum():
        raise ValueError(f"{value[:40]!r} must start with a letter or a digit")
    return value
