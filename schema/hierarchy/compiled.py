"""A compiled fast path for read-only hierarchy queries (in the style of PostGraphile and Hasura).

A query that only reads the city, districts, streets and stations is translated into one SQL statement
that builds the response's `data` inside PostgreSQL (services.hierarchy.tree_sql), in the request's own
tenant-scoped transaction. Anything else, and anything that would produce an error, returns None and
takes the normal strawberry execution: the fast path changes how fast an answer comes, never what it is.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    NamedTypeNode,
    NoSchemaIntrospectionCustomRule,
    OperationType,
    SelectionSetNode,
    get_named_type,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from starlette.requests import Request
from strawberry import Schema
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter
from strawberry.http.parse_content_type import parse_content_type
from strawberry.schema.base import BaseSchema

from schema.context import Context
from schema.hierarchy.types import page_args
from services.hierarchy import tree_sql
from services.hierarchy.repository import PageArgs

logger = logging.getLogger(__name__)

# Tests switch the fast path off (through a fixture that restores it) to get the reference answer.
ENABLED = True

_NODE_FIELDS = frozenset({"__typename", "id", "code", "name", "scope"})
_CONNECTION_FIELDS = frozenset({"__typename", "totalCount", "edges", "pageInfo"})
_EDGE_FIELDS = frozenset({"__typename", "node", "cursor"})
# What the fast path answers, by GraphQL type; every other field falls back.
SUPPORTED: dict[str, frozenset[str]] = {
    "Query": frozenset({"__typename", "city", "districts", "streets", "stations"}),
    "City": _NODE_FIELDS | {"districts"},
    "District": _NODE_FIELDS | {"city", "streets"},
    "Street": _NODE_FIELDS | {"district", "stations"},
    "Station": _NODE_FIELDS | {"street"},
    **{f"{name}Connection": _CONNECTION_FIELDS for name in ("District", "Street", "Station")},
    **{f"{name}Edge": _EDGE_FIELDS for name in ("District", "Street", "Station")},
    "PageInfo": frozenset({"__typename", "hasNextPage", "hasPreviousPage", "startCursor", "endCursor"}),
}

PAGE_ARGUMENTS = frozenset({"first", "after", "code", "nameContains", "includeRetired"})

Operation = tuple[str, dict[str, Any] | None, str | None]


class _Unsupported(Exception):
    pass


async def read_operation(request: Request) -> Operation | None:
    """(query, variables, operationName) of a plain GraphQL-over-HTTP query request, else None."""
    accept = request.headers.get("accept", "")
    if "text/event-stream" in accept or "multipart/mixed" in accept:
        return None
    data: Any
    if request.method == "GET":
        data = dict(request.query_params)
        if data.get("variables"):
            try:
                data["variables"] = json.loads(data["variables"])
            except (ValueError, RecursionError):
                return None
    elif request.method == "POST":
        content_type, _ = parse_content_type(request.headers.get("content-type", ""))
        if "application/json" not in content_type:
            return None
        try:
            data = json.loads(await request.body())
        except (ValueError, RecursionError):
            return None
    else:
        return None
    if not isinstance(data, dict) or data.get("extensions") not in (None, {}):
        return None
    query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
    if (
        not isinstance(query, str)
        or not isinstance(variables, dict | None)
        or not isinstance(name, str | None)
    ):
        return None
    return query, variables, name


async def try_compiled(
    schema: BaseSchema,
    context: Context,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> str | None:
    """The JSON text of the answer's `data`, or None when the normal execution must answer."""
    principal = context.principal
    if not ENABLED or principal is None or not isinstance(schema, Schema):
        return None
    try:
        variables_key = json.dumps(variables, sort_keys=True) if variables else ""
    except (TypeError, ValueError, RecursionError):
        return None
    config = context.config
    limits = (config.max_depth, config.max_aliases, config.max_tokens, config.introspection)
    statement = _statement(schema._schema, query, variables_key, operation_name, limits)
    if statement is None:
        return None
    try:
        async with context.db() as session:
            return await tree_sql.read_json(session, statement, principal.tenant_id)
    except Exception:
        # Whatever failed (a value PostgreSQL or the driver refuses, a bug here), the normal execution
        # answers from a fresh transaction, with the errors it has always given.
        logger.exception("the compiled hierarchy query failed; answering the normal way")
        if context.work is not None:
            await context.work.rollback()
            context.work = None
        return None


Limits = tuple[int, int, int, bool]  # max depth, max aliases, max tokens, introspection


@functools.lru_cache(maxsize=256)
def _statement(
    schema: GraphQLSchema, query: str, variables: str, operation_name: str | None, limits: Limits
) -> tree_sql.TreeStatement | None:
    """The statement answering a request (variables as canonical JSON), or None when it cannot."""
    document = _validated(schema, query, limits)
    if document is None:
        return None
    fields = _plan(schema, document, json.loads(variables) if variables else None, operation_name)
    if fields is None:
        return None
    try:
        return tree_sql.build(fields)
    except tree_sql.UnsupportedSelection:
        return None


@functools.lru_cache(maxsize=256)
def _validated(schema: GraphQLSchema, query: str, limits: Limits) -> DocumentNode | None:
    """The parsed document when it passes the same checks as the schema's extensions, else None."""
    max_depth, max_aliases, max_tokens, introspection = limits
    try:
        document = parse(query, max_tokens=max_tokens)
    except (GraphQLError, RecursionError):
        return None
    rules = [
        *specified_rules,
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
    ]
    if not introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    try:
        errors = validate(schema, document, rules)
    except RecursionError:
        return None
    return None if errors else document


def _plan(
    schema: GraphQLSchema,
    document: DocumentNode,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> tuple[tree_sql.Field, ...] | None:
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY or operation.directives:
        return None
    definitions = operation.variable_definitions or ()
    if variables and not set(variables) <= {definition.variable.name.value for definition in definitions}:
        return None
    coerced = get_variable_values(schema, definitions, variables or {})
    if not isinstance(coerced, VariableValues):
        return None
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    try:
        return _Planner(schema, fragments, coerced).fields("Query", [operation.selection_set])
    except _Unsupported:
        return None


class _Planner:
    """Walks a selection into tree_sql fields, merging repeated keys as graphql-core does."""

    def __init__(
        self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode], variables: VariableValues
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def object_type(self, name: str) -> GraphQLObjectType:
        found = self.schema.get_type(name)
        if not isinstance(found, GraphQLObjectType) or name not in SUPPORTED:
            raise _Unsupported(name)
        return found

    def fields(self, type_name: str, selections: Sequence[SelectionSetNode]) -> tuple[tree_sql.Field, ...]:
        object_type = self.object_type(type_name)
        grouped: dict[str, list[FieldNode]] = {}
        for selection_set in selections:
            self.collect(object_type, selection_set, grouped)
        planned: list[tree_sql.Field] = []
        for key, nodes in grouped.items():
            name = nodes[0].name.value
            if name not in SUPPORTED[type_name] or any(node.name.value != name for node in nodes):
                raise _Unsupported(name)
            if name == "__typename":
                planned.append(tree_sql.Field(key, name))
                continue
            definition = object_type.fields[name]
            child = get_named_type(definition.type).name
            page = self.page(object_type, name, nodes[0]) if definition.args else None
            sub_selections = [node.selection_set for node in nodes if node.selection_set is not None]
            children = self.fields(child, sub_selections) if sub_selections else ()
            planned.append(tree_sql.Field(key, name, children, page))
        return tuple(planned)

    def collect(
        self,
        object_type: GraphQLObjectType,
        selection_set: SelectionSetNode,
        grouped: dict[str, list[FieldNode]],
    ) -> None:
        for selection in selection_set.selections:
            if selection.directives:
                raise _Unsupported("directives")
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                grouped.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                self.check_condition(object_type, selection.type_condition)
                self.collect(object_type, selection.selection_set, grouped)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is None or fragment.directives or fragment.variable_definitions:
                    raise _Unsupported("fragment")
                self.check_condition(object_type, fragment.type_condition)
                self.collect(object_type, fragment.selection_set, grouped)
            else:
                raise _Unsupported("selection")

    @staticmethod
    def check_condition(object_type: GraphQLObjectType, condition: NamedTypeNode | None) -> None:
        """Fragments are flattened only when they certainly apply: to the type or one of its interfaces."""
        if condition is None or condition.name.value == object_type.name:
            return
        if condition.name.value not in {interface.name for interface in object_type.interfaces}:
            raise _Unsupported("fragment type")

    def page(self, object_type: GraphQLObjectType, name: str, node: FieldNode) -> PageArgs:
        definition = object_type.fields[name]
        if set(definition.args) != PAGE_ARGUMENTS:  # an argument added later would be ignored here
            raise _Unsupported("arguments")
        try:
            args = get_argument_values(definition, node, self.variables)
            # The resolvers' own conversion: the same checks, the same errors (which fall back).
            return page_args(
                args["first"],
                args.get("after"),
                args.get("code"),
                args.get("nameContains"),
                args["includeRetired"],
            )
        except (GraphQLError, KeyError) as error:
            raise _Unsupported("arguments") from error
