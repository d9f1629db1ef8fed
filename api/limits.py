"""Public mode's cap on how many objects one query may return, checked before it runs.

Depth, alias and token limits bound the size of the *document*; they do not bound the size of the
*answer*: ``notebooks(first: 100) { nodes { cells(first: 100) { nodes { outputs { images {
outputs(first: 100) ... }}}}}}`` is shallow and short, and asks for millions of objects. The
estimate multiplies the page sizes down each path: a field with a ``first`` argument returns up to
``first`` objects per parent (the server's page size limit when ``first`` is left out and the
schema gives no default, or when it is larger: that is refused anyway), a list without paging (a cell's outputs, an output's images) is counted at
``UNPAGED_FANOUT`` per parent, and everything else at one. Summed over every object-valued field,
that is an upper estimate of the objects the answer holds; above the limit the query is refused as
a validation error, before any SQL runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
)
from graphql.pyutils import Undefined
from strawberry.extensions import SchemaExtension

# a list with no page size of its own: a cell's outputs, an output's images, a notebook's sources.
# Real ones hold a handful; counting ten keeps the estimate an upper one for nearly all of them
UNPAGED_FANOUT = 10
PAGE_ARGUMENT = "first"


def _is_list(type_: Any) -> bool:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


def _is_connection(type_: GraphQLNamedType) -> bool:
    return type_.name.endswith("Connection")


class ResultSizeEstimate:
    """Walks an operation with the schema's types and the request's variables."""

    def __init__(self, context: ValidationContext, variables: dict[str, Any], default_page: int) -> None:
        self.context = context
        self.variables = variables
        self.default_page = default_page
        self.variable_defaults: dict[str, Any] = {}

    def operation(self, node: OperationDefinitionNode) -> int:
        root = self.context.schema.get_root_type(node.operation)
        self.variable_defaults = {
            d.variable.name.value: d.default_value.value
            for d in node.variable_definitions or ()
            if isinstance(d.default_value, IntValueNode)
        }
        if root is None:
            return 0
        return self.selection(root, node.selection_set, 1, set())

    def selection(self, parent: GraphQLNamedType, selection_set: SelectionSetNode | None, multiplier: int,
                  fragments: set[str], page: int = 1) -> int:
        """Objects under ``selection_set``, each of its parents counted ``multiplier`` times;
        ``page`` is the page size of the connection ``parent`` is (its nodes and edges)."""
        total = 0
        for field, owner in self._fields(parent, selection_set, fragments):
            if field.name.value.startswith("__"):  # introspection: bounded by the schema's size
                continue
            definition = getattr(owner, "fields", {}).get(field.name.value)
            if definition is None or field.selection_set is None:
                continue  # a scalar, or an unknown field (another rule reports it)
            target = get_named_type(definition.type)
            child_page = 1
            if PAGE_ARGUMENT in definition.args:
                # a first above the page size limit is refused on its own, with its own words
                size = min(max(1, self._page_size(definition, field)), self.default_page)
                if _is_connection(target):  # one connection per parent; its nodes are the page
                    here, child_page = multiplier, size
                else:
                    here = multiplier * size
            elif _is_list(definition.type):
                here = multiplier * (page if _is_connection(owner) else UNPAGED_FANOUT)
            else:
                here = multiplier
            total += here + self.selection(target, field.selection_set, here, fragments, child_page)
        return total

    def _fields(self, parent: GraphQLNamedType, selection_set: SelectionSetNode | None,
                fragments: set[str]) -> Iterator[tuple[FieldNode, GraphQLNamedType]]:
        for sel in selection_set.selections if selection_set else ():
            if isinstance(sel, FieldNode):
                yield sel, parent
            elif isinstance(sel, InlineFragmentNode):
                owner = parent
                if sel.type_condition is not None:
                    owner = self.context.schema.get_type(sel.type_condition.name.value) or parent
                yield from self._fields(owner, sel.selection_set, fragments)
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                fragment = self.context.get_fragment(name)
                if fragment is None or name in fragments:  # unknown or cyclic: other rules report it
                    continue
                owner = self.context.schema.get_type(fragment.type_condition.name.value) or parent
                yield from self._fields(owner, fragment.selection_set, fragments | {name})

    def _page_size(self, definition, field: FieldNode) -> int:
        for arg in field.arguments or ():
            if arg.name.value != PAGE_ARGUMENT:
                continue
            value = arg.value
            if isinstance(value, VariableNode):
                name = value.name.value
                given = self.variables.get(name, self.variable_defaults.get(name))
                return _as_int(given, self.default_page)
            if isinstance(value, IntValueNode):
                return _as_int(value.value, self.default_page)
            return self.default_page  # null, or a wrong type another rule reports
        default = definition.args[PAGE_ARGUMENT].default_value
        return _as_int(default, self.default_page) if default is not Undefined else self.default_page


def _as_int(value: Any, fallback: int) -> int:
    try:
        return int(value) if value is not None else fallback
    except (TypeError, ValueError):
        return fallback


class ResultSizeLimiter(SchemaExtension):
    """Refuses an operation whose answer could hold more than ``max_nodes`` objects (see above)."""

    def __init__(self, *, max_nodes: int, page_size: int) -> None:
        self.max_nodes = max_nodes
        self.page_size = page_size

    def on_operation(self) -> Iterator[None]:
        limiter = self
        variables = dict(self.execution_context.variables or {})

        class ResultSizeRule(ValidationRule):
            def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
                estimate = ResultSizeEstimate(self.context, variables, limiter.page_size).operation(node)
                if estimate > limiter.max_nodes:
                    self.report_error(GraphQLError(
                        f"this query could return about {estimate:,} objects (the page sizes multiplied down "
                        f"each path); this server answers at most {limiter.max_nodes:,} per query: ask for "
                        "smaller pages (first:), fewer nested lists, or use /export for whole tables",
                        node,
                    ))

        self.execution_context.validation_rules = (*self.execution_context.validation_rules, ResultSizeRule)
        yield
