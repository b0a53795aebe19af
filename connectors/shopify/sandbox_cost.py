"""Shopify's calculated query cost, and the leaky bucket it is charged to.

The cost model is Shopify's documented one, simplified (https://shopify.dev/api/usage/rate-limits;
see `query_cost`). A query is charged what it requested, and the page slots it did not fill are
refunded after it ran (as Shopify documents); one over the single-query limit (1000 points) is
refused with `MAX_COST_EXCEEDED`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
)
from graphql.utilities import value_from_ast

MAX_QUERY_COST = 1000
BUCKET_SIZE = 2000.0
RESTORE_RATE = 100.0  # points per second on the Standard plan
MUTATION_COST = 10


class CostBucket:
    """Shopify's leaky bucket of query-cost points, restored at `rate` per second."""

    def __init__(self, size: float, rate: float) -> None:
        self.size = size
        self.rate = rate
        self.available = size
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def _restore(self) -> None:
        now = time.monotonic()
        self.available = min(self.size, self.available + (now - self.at) * self.rate)
        self.at = now

    def take(self, cost: float) -> bool:
        with self.lock:
            self._restore()
            if cost > self.available:
                return False
            self.available -= cost
            return True

    def refund(self, points: float) -> None:
        with self.lock:
            self._restore()
            self.available = min(self.size, self.available + points)

    def status(self) -> dict[str, float]:
        with self.lock:
            self._restore()
            return {
                "maximumAvailable": self.size,
                "currentlyAvailable": round(self.available, 1),
                "restoreRate": self.rate,
            }


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: Mapping[str, Any],
    operation_name: str | None,
    returned: Mapping[str, int] | None = None,
) -> int:
    """Shopify's documented model, simplified: scalars and enums 0, objects 1, a connection 2 plus
    its page size times the cost of one node, a mutation field 10. With `returned` (nodes each root
    connection gave back), the actual cost instead of the requested one."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if not operations:
        raise GraphQLError("No operation to execute")
    operation = operations[0]
    if operation.operation == OperationType.MUTATION:
        return MUTATION_COST * len(_fields(operation.selection_set, fragments))
    root_type = schema.query_type
    assert root_type is not None
    return _selection_cost(operation.selection_set, root_type, variables, fragments, returned)


def _fields(selection_set: SelectionSetNode | None, fragments: Mapping[str, FragmentDefinitionNode]) -> list[FieldNode]:
    out: list[FieldNode] = []
    if selection_set is None:
        return out
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            out.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            out.extend(_fields(selection.selection_set, fragments))
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            out.extend(_fields(fragments[selection.name.value].selection_set, fragments))
    return out


def _selection_cost(
    selection_set: SelectionSetNode | None,
    parent: Any,
    variables: Mapping[str, Any],
    fragments: Mapping[str, FragmentDefinitionNode],
    returned: Mapping[str, int] | None = None,
) -> int:
    total = 0
    for node in _fields(selection_set, fragments):
        if node.name.value == "__typename" or not hasattr(parent, "fields"):
            continue
        field = parent.fields.get(node.name.value)
        if field is None:
            continue
        named = get_named_type(field.type)
        if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            continue
        if named.name.endswith("Connection"):
            size = 0
            for arg in node.arguments or ():
                if arg.name.value in ("first", "last"):
                    value = value_from_ast(arg.value, field.args[arg.name.value].type, dict(variables))
                    size = int(value or 0)
            response_key = node.alias.value if node.alias else node.name.value
            if returned is not None and response_key in returned:
                size = min(size, returned[response_key])
            per_node = 0
            for child in _fields(node.selection_set, fragments):
                child_field = named.fields.get(child.name.value)
                if child_field is None or child.name.value == "pageInfo":
                    continue
                child_type = get_named_type(child_field.type)
                if child.name.value == "nodes":
                    per_node = max(per_node, 1 + _selection_cost(child.selection_set, child_type, variables, fragments))
                elif child.name.value == "edges" and isinstance(child_type, GraphQLObjectType):
                    per_node = max(per_node, _selection_cost(child.selection_set, child_type, variables, fragments))
            total += 2 + size * per_node
        else:
            total += 1 + _selection_cost(node.selection_set, named, variables, fragments)
    return total
