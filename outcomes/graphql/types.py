"""The GraphQL types of the answers, made from the REST answers' serializers [pure].

Each REST answer's shape is declared once, as a DRF serializer (``outcomes.report_serializers``,
``outcomes.serializers``); its GraphQL type is derived from it here, field by field, with the
same names in camelCase (strawberry's default) and the same descriptions: a field added to a
report appears in both APIs, and the parity tests compare their answers value by value.

GraphQL cannot say what REST says with a key chosen at run time, so a few shapes differ, all
documented in the schema:

* a breakdown row carries its dimension's value in ``value`` (REST: under the ``by`` key);
* a dictionary (the sample-ratio check's ``observed``/``expected``) is a list of
  ``{key, value}`` entries in key order;
* a field REST leaves out when it does not apply (reach's ``relative_standard_error`` when
  exact) is null;
* integers are ``BigInt`` (64-bit, a JSON number): GraphQL's ``Int`` is 32-bit, and outcome
  counts pass 2^31 in a month of a busy exchange.
"""

from __future__ import annotations

import re
from decimal import Decimal as _Decimal
from decimal import InvalidOperation
from typing import Any, NewType

import strawberry
from rest_framework import serializers
from strawberry.utils.str_converters import to_camel_case

BigInt = NewType("BigInt", int)
DateTime = NewType("DateTime", str)
Date = NewType("Date", str)
Decimal = NewType("Decimal", str)


def _big_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise ValueError("BigInt takes a 64-bit signed integer.")
    return value


def _text(kind: str):
    def parse(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{kind} takes a string (ISO 8601).")
        return value

    return parse


def _decimal(value: Any) -> str:
    """A decimal as the REST filter takes it: a string or a number, passed on as text (the
    filter checks its range and says so)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("Decimal takes a number or a decimal string.")
    text = str(value)
    try:
        _Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text[:40]!r} is not a decimal number.") from None
    return text


SCALARS = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description="A 64-bit signed integer, as a JSON number.",
        serialize=int,
        parse_value=_big_int,
    ),
    DateTime: strawberry.scalar(
        name="DateTime",
        description="An ISO 8601 date-time as the REST API writes it: `Z` for UTC, else the offset of the "
        "report's time zone. As an argument, any ISO 8601 date-time or date (midnight UTC); without an "
        "offset the time is UTC.",
        serialize=str,
        parse_value=_text("DateTime"),
    ),
    Date: strawberry.scalar(
        name="Date", description="An ISO 8601 date (YYYY-MM-DD).", serialize=str, parse_value=_text("Date")
    ),
    Decimal: strawberry.scalar(
        name="Decimal",
        description="An exact decimal: a string in answers (prices with two places, as REST writes them); "
        "a string or a number as an argument.",
        serialize=str,
        parse_value=_decimal,
    ),
}

# Field classes → GraphQL scalars (the first that matches; ChoiceField is not a CharField).
_PLAIN: tuple[tuple[type, Any], ...] = (
    (serializers.BooleanField, bool),
    (serializers.IntegerField, BigInt),
    (serializers.FloatField, float),
    (serializers.DecimalField, Decimal),
    (serializers.DateTimeField, DateTime),
    (serializers.DateField, Date),
    (serializers.ChoiceField, str),
    (serializers.CharField, str),
)
# Model fields a ModelSerializer maps to a DRF field class without a GraphQL scalar of its own.
_MODEL_FIELD_OVERRIDES = {"user_interests": list[str]}
# Types by serializer class: one GraphQL type per shape, however many answers nest it.
_TYPES: dict[type, type] = {}
_ENTRIES: dict[tuple[str, Any], type] = {}
# The breakdown row's dimension value (REST: under the key the ``by`` parameter names).
BREAKDOWN_VALUE = "value"


def type_name(serializer_class: type) -> str:
    name = serializer_class.__name__.removesuffix("Serializer")
    return {"ReportStats": "Stats", "AuctionOutcome": "Outcome"}.get(name, name)


def _entry(name: str, value_type: Any) -> type:
    """``{key, value}``: one entry of a dictionary of the REST answer."""
    found = _ENTRIES.get((name, value_type))
    if found is None:
        cls = type(name, (), {"__annotations__": {"key": str, "value": value_type}, "__module__": __name__})
        found = strawberry.type(cls, description="One entry of a dictionary, keys in order.")
        _ENTRIES[(name, value_type)] = found
    return found


def _annotation(owner: str, name: str, field: serializers.Field) -> Any:
    if name in _MODEL_FIELD_OVERRIDES and isinstance(field, serializers.JSONField):
        return _MODEL_FIELD_OVERRIDES[name]
    if isinstance(field, serializers.ListSerializer):
        return list[object_type(type(field.child))]
    if isinstance(field, serializers.BaseSerializer):
        return object_type(type(field))
    if isinstance(field, serializers.ListField):
        return list[_annotation(owner, name, field.child)]
    if isinstance(field, serializers.DictField):
        camel = "".join(part.title() for part in name.split("_"))
        return list[_entry(f"{owner}{camel}Entry", _annotation(owner, name, field.child))]
    for cls, scalar in _PLAIN:
        if isinstance(field, cls):
            return scalar
    raise TypeError(f"{owner}.{name}: no GraphQL type for {type(field).__name__}")


def object_type(serializer_class: type) -> type:
    """The strawberry type of answers of ``serializer_class`` (made once)."""
    found = _TYPES.get(serializer_class)
    if found is not None:
        return found
    name = type_name(serializer_class)
    optional_output = set(getattr(serializer_class, "optional_output", ()))
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": __name__}
    for field_name, field in serializer_class().fields.items():
        annotation = _annotation(name, field_name, field)
        if isinstance(field, serializers.DictField):
            namespace[field_name] = strawberry.field(
                resolver=_entries(field_name, annotation), description=_help(field)
            )
            continue
        if field.allow_null or field_name in optional_output:
            annotation = annotation | None
            namespace[field_name] = strawberry.field(default=None, description=_help(field))
        else:
            namespace[field_name] = strawberry.field(description=_help(field))
        annotations[field_name] = annotation
    if name == "BreakdownRow":
        annotations[BREAKDOWN_VALUE] = str | None
        namespace[BREAKDOWN_VALUE] = strawberry.field(
            default=None,
            description="The value of the dimension broken down by (`by`), as text (`true`/`false` for "
            "enriched); null for outcomes without one.",
        )
    namespace["__annotations__"] = annotations
    found = strawberry.type(type(name, (), namespace), description=_help(serializer_class()) or None)
    _TYPES[serializer_class] = found
    return found


def _entries(name: str, annotation: Any):
    def entries(root):
        return [{"key": key, "value": value} for key, value in (root.get(name) or {}).items()]

    entries.__name__ = name
    entries.__annotations__ = {"root": dict, "return": annotation}
    return entries


_SNAKE = re.compile(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`")


# REST's answers named by status, as GraphQL says them (the error's extensions.code).
_STATUS_WORDS = {"a 400": "a BAD_USER_INPUT error", "a 404": "a NOT_FOUND error", "a 409": "a CONFLICT error"}
_STATUS = re.compile("|".join(_STATUS_WORDS))


def graphql_text(text: str) -> str:
    """A REST description in GraphQL's words: `snake_case` names in camelCase, HTTP statuses
    as the error codes GraphQL answers with."""
    text = _STATUS.sub(lambda m: _STATUS_WORDS[m.group(0)], text)
    return _SNAKE.sub(lambda m: f"`{to_camel_case(m.group(1))}`", text)


def _help(field) -> str | None:
    text = getattr(field, "help_text", None)
    if text:
        return graphql_text(str(text))
    doc = type(field).__doc__ if isinstance(field, serializers.BaseSerializer) else None
    return " ".join(doc.split()) if doc else None


def plain_types() -> set[str]:
    """The names of the types made here: their answers are plain data (``execution``)."""
    return {t.__strawberry_definition__.name for t in [*_TYPES.values(), *_ENTRIES.values()]}


def resolve(source: Any, name: str) -> Any:
    """The default resolver (``StrawberryConfig.default_resolver``): answers are the REST
    answers' dictionaries."""
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name)
