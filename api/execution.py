"""A faster way through graphql-core for the fields that are plain attributes.

graphql-core executes every field the same way: it builds a ``GraphQLResolveInfo`` (and strawberry a
path entry), calls the resolver, then completes the value through the generic ``complete_value``
dispatch. For a field that is a plain attribute holding a scalar (``position``, ``source``,
``mimeTypes``...) that machinery is almost all of its cost, and such fields are most of what a
"notebook with everything" query resolves. ``FastExecutionContext`` reads those fields with one
``getattr`` and the scalar's own serializer, and hands every other case (a resolver, arguments,
middleware, a null where none is allowed, a value the scalar refuses, an object or abstract type) to
graphql-core unchanged, so the answers and the errors stay exactly graphql-core's.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_BACKREF = "strawberry-definition"
_SLOW = None  # plan of a field that takes graphql-core's ordinary path


def _leaf(type_: Any) -> tuple[Any, bool] | None:
    """(serializer, nullable) of a scalar or enum type, possibly non-null."""
    nullable = not isinstance(type_, GraphQLNonNull)
    inner = type_ if nullable else type_.of_type
    if isinstance(inner, GraphQLScalarType | GraphQLEnumType):
        return inner.coerce_output_value, nullable
    return None


def _plan(field: GraphQLField | None) -> tuple | None:
    """How to read ``field`` without graphql-core's generic path, or None when it needs that path."""
    if field is None or field.args or not getattr(field.resolve, "_is_default", False):
        return _SLOW  # a resolver of ours (or arguments): it may want Info, await, or raise
    definition = (field.extensions or {}).get(_BACKREF)
    name = getattr(definition, "python_name", None)
    if name is None:
        return _SLOW
    leaf = _leaf(field.type)
    if leaf is not None:
        return (name, False, *leaf)
    list_type = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    if isinstance(list_type, GraphQLList):
        item = _leaf(list_type.of_type)
        if item is not None:
            return (name, True, *item, not isinstance(field.type, GraphQLNonNull))
    return _SLOW


class FastExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context with the plain-attribute scalar fields read directly."""

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        try:
            plans = self._field_plans
        except AttributeError:  # first field of this request: no fast path when middleware wraps resolvers
            plans = self._field_plans = None if _has_middleware(self.middleware_manager) else _plans(self.schema)
        node = field_details_list[0].node
        if plans is not None and not node.arguments:
            key = (parent_type.name, node.name.value)
            try:
                plan = plans[key]
            except KeyError:
                plan = plans[key] = _plan(self.schema.get_field(parent_type, node.name.value))
            if plan is not _SLOW:
                value = _read(plan, source)
                if value is not _FALLBACK:
                    return value
        return super().execute_field(parent_type, source, field_details_list, path, position_context)


_FALLBACK = object()


def _read(plan: tuple, source: Any) -> Any:
    """The completed value, or _FALLBACK where graphql-core must decide (and word the error)."""
    try:
        if not plan[1]:
            name, _, serialize, nullable = plan
            value = getattr(source, name)
            if value is None:
                return None if nullable else _FALLBACK
            if isinstance(value, Exception):
                return _FALLBACK
            out = serialize(value)
            return _FALLBACK if out is None else out
        name, _, serialize, _item_nullable, nullable = plan
        value = getattr(source, name)
        if value is None:
            return None if nullable else _FALLBACK
        if not isinstance(value, list | tuple):
            return _FALLBACK
        out = [serialize(v) for v in value]
        if any(o is None for o in out):  # a null item (allowed or not) or a refused one: graphql-core's call
            return _FALLBACK
        return out
    except Exception:  # noqa: BLE001 - graphql-core repeats the read and reports the error its way
        return _FALLBACK


def _has_middleware(manager: Any) -> bool:
    # strawberry hands over a manager per request, empty unless an extension wraps resolvers
    return manager is not None and bool(manager.middlewares)


def _plans(schema: Any) -> dict:
    try:
        return schema._nbatlas_field_plans
    except AttributeError:
        schema._nbatlas_field_plans = {}
        return schema._nbatlas_field_plans
