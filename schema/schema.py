"""The schema: queries and mutations of every domain, node(id:), limits, masking and the transaction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from schema.context import ApiConfig, Info
from schema.deliberation.mutations import DeliberationMutation
from schema.deliberation.queries import DeliberationQuery
from schema.geo.mutations import GeoMutation
from schema.geo.queries import GeoQuery, load_grid_cell
from schema.heat.queries import HeatQuery
from schema.hierarchy.mutations import HierarchyMutation
from schema.hierarchy.queries import HierarchyQuery, load_city
from schema.hierarchy.types import CONVERTERS, TYPE_LEVELS
from schema.identity.mutations import IdentityMutation
from schema.identity.queries import IdentityQuery
from schema.mediation.mutations import MediationMutation
from schema.mediation.queries import MediationQuery
from schema.meetings.mutations import MeetingsMutation
from schema.meetings.queries import MeetingsQuery, load_meeting
from schema.notifications.mutations import NotificationsMutation
from schema.notifications.queries import NotificationsQuery
from schema.permissions import SIGNED_IN
from schema.relay import BadGlobalId, Node, decode_id
from schema.requests.admin import RequestsAdminMutation, RequestsAdminQuery
from schema.requests.mutations import RequestsMutation
from schema.requests.queries import RequestsQuery, load_request


@strawberry.type
class Query(
    IdentityQuery,
    HierarchyQuery,
    GeoQuery,
    NotificationsQuery,
    RequestsQuery,
    RequestsAdminQuery,
    DeliberationQuery,
    MediationQuery,
    MeetingsQuery,
    HeatQuery,
):
    @strawberry.field(permission_classes=SIGNED_IN, description="Any object by its global id.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        try:
            type_name, key = decode_id(id)
        except BadGlobalId as error:
            raise GraphQLError(str(error), extensions={"code": "INVALID_INPUT"}) from None
        if type_name == "GridCell":
            return await load_grid_cell(info, key)
        if type_name == "Request":
            return await load_request(info, key)
        if type_name == "Meeting":
            return await load_meeting(info, key)
        if type_name == "City":
            city = await load_city(info)
            return city if city is not None and city.key == key else None
        level = TYPE_LEVELS.get(type_name)
        if level is None:
            return None
        row = await info.context.loaders.nodes(level).load(key)
        return CONVERTERS[level](row) if row is not None else None


@strawberry.type
class Mutation(
    IdentityMutation,
    HierarchyMutation,
    GeoMutation,
    NotificationsMutation,
    RequestsMutation,
    RequestsAdminMutation,
    DeliberationMutation,
    MediationMutation,
    MeetingsMutation,
):
    pass


class Transaction(SchemaExtension):
    """The request owns its transaction: commit when the operation produced no errors, else roll back."""

    def on_operation(self) -> Iterator[None]:
        yield
        # The commit itself happens in the view after execution, where it can be awaited.
        result = self.execution_context.result
        context = self.execution_context.context
        context.failed = result is None or bool(result.errors)


def _mask(error: GraphQLError) -> bool:
    """Hide unexpected failures; keep errors the API raised on purpose (their original is a GraphQLError)."""
    original: Any = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


def build_schema(config: ApiConfig) -> strawberry.Schema:
    # Factories, so each request gets fresh extension instances.
    # The limiters' rule classes are made once: each limiter builds a new class when constructed, and the
    # validation cache is keyed by the rule classes, so per-request limiters made every lookup miss.
    limit_rules = [
        *QueryDepthLimiter(max_depth=config.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=config.max_aliases).validation_rules,
    ]
    extensions: list[Any] = [
        Transaction,
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        lambda: AddValidationRules(limit_rules),
        lambda: MaxTokensLimiter(max_token_count=config.max_tokens),
    ]
    if not config.introspection:
        extensions.append(DisableIntrospection)
    if config.production:
        extensions.append(lambda: MaskErrors(should_mask_error=_mask))
    return strawberry.Schema(query=Query, mutation=Mutation, extensions=extensions)
