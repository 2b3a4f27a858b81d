"""What a GraphQL request costs against the API's rate limit [pure].

A REST request asks for one report and costs 1; a GraphQL request may ask for many at once,
so it costs one per report (or list) it asks for: the root fields of the operation it runs,
fragments and aliases expanded (``{a: stats … b: stats …}`` is two reports). Introspection
and ``__typename`` cost nothing beyond the request's minimum of 1. A document that does not
parse costs 1: the answer is its syntax error.
"""

from __future__ import annotations

import functools

from graphql import GraphQLError, parse
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)


@functools.lru_cache(maxsize=256)  # clients send the same few documents again and again
def request_cost(query: str, operation_name: str | None, *, max_tokens: int) -> int:
    """The cost of running ``operation_name`` (or the document's only operation) of ``query``."""
    try:
        document = parse(query, no_location=True, max_tokens=max_tokens)
    except GraphQLError:
        return 1
    return max(1, len(root_fields(document, operation_name)))


def root_fields(document: DocumentNode, operation_name: str | None) -> list[str]:
    """The response keys of the operation's root fields (aliases as given), introspection left out."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [op for op in operations if op.name is not None and op.name.value == operation_name]
    if len(operations) != 1:
        return []  # the execution says why (no such operation, or one must be named)
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    keys: list[str] = []
    _collect(operations[0].selection_set, fragments, keys, visited=set())
    return keys


def _collect(selections: SelectionSetNode, fragments: dict, keys: list[str], visited: set[str]) -> None:
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue
            key = selection.alias.value if selection.alias else selection.name.value
            if key not in keys:  # the same key twice is merged into one field
                keys.append(key)
        elif isinstance(selection, InlineFragmentNode):
            _collect(selection.selection_set, fragments, keys, visited)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in visited:  # a cycle is a validation error
                _collect(fragments[name].selection_set, fragments, keys, visited | {name})
