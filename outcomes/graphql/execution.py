"""Completing answers that are plain data, at the speed of a dictionary walk.

A report field's answer is the REST answer (dictionaries, lists and scalars), and GraphQL
only projects it onto the selection: the fields asked for, under their response keys
(aliases), fragments and ``@include``/``@skip`` applied. graphql-core completes each field
of each object through its resolver machinery — about 5 µs a field, so a week of hourly
buckets (1,700 fields) costs 8 ms on top of a report that took 10. Here the fields without
a resolver of their own, of the types made from the REST serializers (``types.plain_types``)
and the outcomes connection, are completed by reading the dictionary (or attribute) and
serializing the leaf with its scalar type (a string, boolean or finite float as it is);
the selection is still collected by graphql-core (``collect_subfields``, memoized per list).

Anything out of the ordinary under a response key — a null where the type says non-null,
a value a scalar refuses, a field with a resolver of its own — falls back to graphql-core's
own execution of that key, which reports it with the exact path: the same answers and the
same errors, faster.
"""

from __future__ import annotations

from math import isfinite
from typing import Any

from graphql import GraphQLBoolean, GraphQLFloat, GraphQLList, GraphQLNonNull, GraphQLObjectType, GraphQLString
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_BACKREF = "strawberry-definition"
_SLOW = object()  # "not by the fast path": graphql-core executes the key


def _leaf(return_type) -> tuple[bool, Any] | None:
    """(nullable, serialize) of a scalar or enum field; None for lists and objects. Strings,
    booleans and floats already of their Python type pass as they are (what graphql-core's
    serializers return for them)."""
    nullable = not isinstance(return_type, GraphQLNonNull)
    inner = return_type if nullable else return_type.of_type
    if isinstance(inner, GraphQLList | GraphQLObjectType):
        return None
    serialize = inner.serialize
    if inner.name in (GraphQLString.name, GraphQLBoolean.name):
        kind = str if inner.name == GraphQLString.name else bool
        return nullable, lambda value, kind=kind, slow=serialize: value if type(value) is kind else slow(value)
    if inner.name == GraphQLFloat.name:  # a finite float as it is; anything else as graphql-core says
        return (
            nullable,
            lambda value, slow=serialize: value if type(value) is float and isfinite(value) else slow(value),
        )
    return nullable, serialize


def plans(schema, names: set[str]) -> dict[str, dict[str, tuple[str, Any, Any]]]:
    """Per object type of ``names``: GraphQL field name → (the key or attribute it reads,
    the field's type), for its fields without a resolver of their own (the others are
    graphql-core's to execute)."""
    found = {}
    for name in names:
        graphql_type = schema.get_type(name)
        if not isinstance(graphql_type, GraphQLObjectType):
            continue
        plan = {}
        for field_name, field in graphql_type.fields.items():
            definition = (field.extensions or {}).get(_BACKREF)
            if definition is not None and definition.base_resolver is None:
                plan[field_name] = (definition.python_name, field.type, _leaf(field.type))
        if plan:
            found[name] = plan
    return found


class PlainDataExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's execution, with plain-data objects completed directly."""

    plans: dict[str, dict[str, tuple[str, Any, Any]]] = {}

    def execute_fields(self, parent_type, source_value, path, grouped_field_set, position_context):
        plan = self.plans.get(parent_type.name)
        if plan is None or source_value is None:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        results: dict[str, Any] = {}
        for key, field_details_list in grouped_field_set.items():
            value = self._field(parent_type, plan, source_value, field_details_list)
            if value is _SLOW:
                value = self.execute_field(
                    parent_type, source_value, field_details_list, Path(path, key, parent_type.name), position_context
                )
                if value is Undefined:
                    continue
            results[key] = value
        return results

    def _field(self, parent_type, plan, source, field_details_list):
        name = field_details_list[0].node.name.value
        if name == "__typename":
            return parent_type.name
        entry = plan.get(name)
        if entry is None:
            return _SLOW
        key, return_type, leaf = entry
        value = source.get(key) if isinstance(source, dict) else getattr(source, key, None)
        if leaf is None:
            return self._complete(return_type, field_details_list, value)
        nullable, serialize = leaf
        if value is None:
            return None if nullable else _SLOW
        try:
            serialized = serialize(value)
        except Exception:  # noqa: BLE001 - graphql-core reports it, with its path
            return _SLOW
        return _SLOW if serialized is None else serialized

    def _complete(self, return_type, field_details_list, value):
        if isinstance(return_type, GraphQLNonNull):
            if value is None:
                return _SLOW  # graphql-core says where the null is
            return_type = return_type.of_type
        elif value is None:
            return None
        if isinstance(return_type, GraphQLList):
            if not isinstance(value, list):
                return _SLOW
            items = []
            for item in value:
                completed = self._complete(return_type.of_type, field_details_list, item)
                if completed is _SLOW:
                    return _SLOW
                items.append(completed)
            return items
        if isinstance(return_type, GraphQLObjectType):
            plan = self.plans.get(return_type.name)
            if plan is None:
                return _SLOW
            grouped_field_set = self.collect_subfields(return_type, field_details_list)[0]
            results = {}
            for key, sub_fields in grouped_field_set.items():
                completed = self._field(return_type, plan, value, sub_fields)
                if completed is _SLOW:
                    return _SLOW
                results[key] = completed
            return results
        try:
            serialized = return_type.serialize(value)
        except Exception:  # noqa: BLE001 - graphql-core reports it, with its path
            return _SLOW
        return _SLOW if serialized is None else serialized
