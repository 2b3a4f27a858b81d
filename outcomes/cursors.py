"""Keyset cursors: an opaque token of the last row's ordering values, and the rows after it.

A page is ``WHERE (ordering keys) after (the last row's) … LIMIT n`` on an index, so every
page costs what the first does, rows added meanwhile never shift a page, and no row is
missed or repeated. The token is bound to its ordering.
"""

from __future__ import annotations

import base64
from datetime import datetime
from decimal import Decimal, InvalidOperation

import orjson
from django.db.models import Q

_FIELD_TYPES = {
    "timestamp": "datetime",
    "event_time": "datetime",
    "win_price": "decimal",
    "bid_price": "decimal",
    "user_id": "text",
    "site_domain": "text",
    "id": "int",
}
_NULLABLE = {"site_domain"}


class InvalidCursor(ValueError):
    """A token that is not one of ours, or one made for another ordering (the message says)."""


def encode(ordering: list[str], values: list) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, Decimal) else v for v in values]
    return base64.urlsafe_b64encode(orjson.dumps({"o": ordering, "v": plain})).decode().rstrip("=")


def decode(token: str, ordering: list[str]) -> list:
    """The ordering values a token carries; ``InvalidCursor`` when it is not a valid token
    for ``ordering``."""
    problem = InvalidCursor("Invalid cursor: use the `next` link of a previous page.")
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict):
            raise problem
        order, raw_values = data["o"], data["v"]
    except (ValueError, KeyError, TypeError):
        raise problem from None
    if order != ordering:
        raise InvalidCursor(
            f"This cursor walks ordering {','.join(map(str, order))!r}; keep the same ordering "
            "(and filters) as the request that returned it."
        )
    if not isinstance(raw_values, list) or len(raw_values) != len(ordering):
        raise problem
    values = []
    try:
        for field, raw in zip(ordering, raw_values, strict=True):
            name = field.lstrip("-")
            kind = _FIELD_TYPES.get(name)
            if raw is None and name in _NULLABLE:
                values.append(None)
            elif kind == "datetime" and isinstance(raw, str):
                values.append(datetime.fromisoformat(raw))
            elif kind == "decimal" and isinstance(raw, str):
                values.append(Decimal(raw))
            elif _plain_value_ok(kind, raw):
                values.append(raw)
            else:
                raise problem
    except (ValueError, InvalidOperation):
        raise problem from None
    return values


def position(ordering: list[str], row) -> str:
    """The token of ``row``'s place in ``ordering``: the rows after it follow."""
    return encode(ordering, [getattr(row, field.lstrip("-")) for field in ordering])


def page(queryset, token: str, size: int) -> tuple[list, bool, list[str]]:
    """(up to ``size`` rows after ``token`` in the queryset's order, whether more follow, the
    ordering): every page one indexed range read. ``InvalidCursor`` for a token that is not
    one of this ordering's. The list's cursor pages and the GraphQL connection both page so."""
    ordering = list(queryset.query.order_by or queryset.model._meta.ordering)
    if token:
        queryset = queryset.filter(after(ordering, decode(token, ordering)))
    rows = list(queryset[: size + 1])
    return rows[:size], len(rows) > size, ordering


def _plain_value_ok(kind: str | None, raw) -> bool:
    if kind == "int":
        return isinstance(raw, int) and not isinstance(raw, bool)
    return kind == "text" and isinstance(raw, str) and "\x00" not in raw


def after(ordering: list[str], values: list) -> Q:
    """Rows strictly after ``values`` in ``ordering`` (PostgreSQL puts NULLs last ascending,
    first descending). The leading field also gets a plain range bound, for the index."""
    condition = Q(pk__in=[])
    equal = Q()
    for field, value in zip(ordering, values, strict=True):
        name = field.lstrip("-")
        descending = field.startswith("-")
        if value is None:
            beyond = Q(**{f"{name}__isnull": False}) if descending else Q(pk__in=[])
            same = Q(**{f"{name}__isnull": True})
        else:
            beyond = Q(**{f"{name}__{'lt' if descending else 'gt'}": value})
            if name in _NULLABLE and not descending:
                beyond |= Q(**{f"{name}__isnull": True})
            same = Q(**{name: value})
        condition |= equal & beyond
        equal &= same
    first, value = ordering[0], values[0]
    if value is not None:
        name = first.lstrip("-")
        bound = Q(**{f"{name}__{'lte' if first.startswith('-') else 'gte'}": value})
        if name in _NULLABLE and not first.startswith("-"):
            bound |= Q(**{f"{name}__isnull": True})
        condition &= bound
    return condition
