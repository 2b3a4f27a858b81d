"""Money in one currency: reference exchange rates and how an amount is converted (pure).

Rates are quoted as the European Central Bank quotes its euro foreign exchange reference
rates: how many units of a currency one euro buys on a day (the euro itself is 1). An amount
in currency A on day D is worth ``amount / per_euro(A, D) * per_euro(B, D)`` in currency B.

The ECB publishes on TARGET working days only. A day without a rate of its own takes the
latest rate at most ``MAX_RATE_AGE_DAYS`` before it (a weekend, a holiday), as the ECB's own
convention and accounting practice do; older than that, the rate is missing and a report
that needs it says which day and currency (``MissingRate``), never a silent guess.

Reads the two CSV layouts the ECB serves (``parse_ecb_csv``): the history
(``eurofxref-hist.csv``: ``Date,USD,JPY,…`` then ``2026-11-30,1.0565,158.48,…``, ``N/A``
where a currency had no rate) and the latest day (``eurofxref.csv``: ``Date, USD, …`` then
``30 November 2026, 1.0565, …``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from outcomes.validation import currency_code

EURO = "EUR"
MAX_RATE_AGE_DAYS = 7
# What a stored rate may hold: DecimalField(max_digits=18, decimal_places=8).
RATE_DIGITS, RATE_PLACES = 18, 8


class MissingRate(LookupError):
    """No usable rate for ``currency`` on ``day``."""

    def __init__(self, day: date, currency: str, max_age_days: int = MAX_RATE_AGE_DAYS) -> None:
        self.day, self.currency = day, currency
        if not currency:  # rollup rows older than the currency they now keep (apps.REBUILT_AFTER)
            super().__init__(
                f"{day.isoformat()} cannot be converted: its rollups were stored before they kept the currency, "
                "and its raw outcomes were pruned"
            )
            return
        super().__init__(
            f"no exchange rate for {currency} on {day.isoformat()} (nor in the {max_age_days} days before): "
            "load the reference rates with `manage.py load_fx_rates FILE`"
        )


def rate_value(text: str) -> Decimal:
    """A quoted rate: a positive decimal that fits the stored column."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"'{text.strip()}' is not a number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"a rate must be a positive number, got {text.strip()}")
    quantized = value.quantize(Decimal(1).scaleb(-RATE_PLACES))
    if len(quantized.as_tuple().digits) > RATE_DIGITS:
        raise ValueError(f"rate {text.strip()} is too large")
    if quantized == 0:
        raise ValueError(f"rate {text.strip()} rounds to zero at {RATE_PLACES} decimal places")
    return quantized


def _day(text: str) -> date:
    text = text.strip()
    for layout in ("%Y-%m-%d", "%d %B %Y"):
        try:
            return datetime.strptime(text, layout).date()
        except ValueError:
            continue
    raise ValueError(f"'{text}' is not a date (2026-11-30 or 30 November 2026)")


def parse_ecb_csv(text: str) -> list[tuple[date, str, Decimal]]:
    """(day, currency, units per euro) of every rate in an ECB reference-rate CSV; ``N/A`` and
    empty cells are days without a rate. A malformed file raises ``ValueError`` naming the line."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    if not rows or not rows[0] or rows[0][0].strip().lower() != "date":
        raise ValueError("line 1: the header must start with 'Date' (the ECB reference-rate CSV layout)")
    header = [cell.strip() for cell in rows[0]]
    currencies: list[str | None] = [None]
    for position, name in enumerate(header[1:], start=2):
        if not name:
            currencies.append(None)  # the trailing comma of the ECB's files
            continue
        try:
            currencies.append(currency_code(name))
        except ValueError as exc:
            raise ValueError(f"line 1, column {position}: {exc}") from None
    rates = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            day = _day(row[0])
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        for position, cell in enumerate(row[1:], start=1):
            cell = cell.strip()
            if cell in ("", "N/A") or position >= len(currencies) or currencies[position] is None:
                continue
            try:
                rates.append((day, currencies[position], rate_value(cell)))
            except ValueError as exc:
                raise ValueError(f"line {number}, {currencies[position]}: {exc}") from None
    if not rates:
        raise ValueError("the file holds no rate")
    return rates


class RateTable:
    """Rates by currency and day, answering for any day with the latest rate at most
    ``max_age_days`` before it."""

    def __init__(self, rates: Iterable[tuple[date, str, Decimal]], max_age_days: int = MAX_RATE_AGE_DAYS) -> None:
        self.max_age_days = max_age_days
        self._rates: dict[str, dict[date, Decimal]] = {}
        for day, currency, per_euro in rates:
            self._rates.setdefault(currency, {})[day] = per_euro

    def per_euro(self, currency: str, day: date) -> Decimal:
        if currency == EURO:
            return Decimal(1)
        quoted = self._rates.get(currency, {})
        for age in range(self.max_age_days + 1):
            rate = quoted.get(day - timedelta(days=age))
            if rate is not None:
                return rate
        raise MissingRate(day, currency, self.max_age_days)

    def factor(self, source: str, target: str, day: date) -> Decimal:
        """What one unit of ``source`` is worth in ``target`` on ``day``."""
        if source == target:
            return Decimal(1)
        return self.per_euro(target, day) / self.per_euro(source, day)

    def convert(self, amount: Decimal, source: str, target: str, day: date) -> Decimal:
        return amount * self.factor(source, target, day)
