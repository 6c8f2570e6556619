"""The schema: queries and mutations of every domain, node(id:), limits, masking and the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.types.base_scalars import wrap_parser

from schema.context import ApiConfig, Info, NotAuthenticated
from schema.deliberation.mutations import DeliberationMutation
from schema.deliberation.queries import DeliberationQuery
from schema.deputies.activities import (
    ActivitiesMutation,
    ActivitiesQuery,
    FiveOnesMutation,
    FiveOnesQuery,
    load_activity,
)
from schema.deputies.mutations import DeputiesMutation
from schema.deputies.points import ArchiveQuery, PointsMutation, PointsQuery
from schema.deputies.queries import DeputiesQuery
from schema.deputies.types import load_deputy
from schema.deputies.warnings import WarningsMutation, WarningsQuery, load_warning
from schema.geo.mutations import GeoMutation
from schema.geo.queries import GeoQuery, load_grid_cell
from schema.heat.queries import HeatQuery
from schema.hierarchy.mutations import HierarchyMutation
from schema.hierarchy.queries import HierarchyQuery, load_city
from schema.hierarchy.types import CONVERTERS, TYPE_LEVELS
from schema.identity.mutations import IdentityMutation
from schema.identity.queries import IdentityQuery
from schema.matching.mutations import MatchingMutation
from schema.matching.queries import MatchingQuery, load_demand, load_match, load_resource
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
    DeputiesQuery,
    MatchingQuery,
    ActivitiesQuery,
    FiveOnesQuery,
    PointsQuery,
    WarningsQuery,
    ArchiveQuery,
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
        if type_name == "Deputy":
            return await load_deputy(info, key)
        if type_name == "Demand":
            return await load_demand(info, key)
        if type_name == "Resource":
            return await load_resource(info, key)
        if type_name == "Match":
            return await load_match(info, key)
        if type_name == "Activity":
            return await load_activity(info, key)
        if type_name == "DeputyWarning":
            return await load_warning(info, key)
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
    DeputiesMutation,
    MatchingMutation,
    ActivitiesMutation,
    FiveOnesMutation,
    PointsMutation,
    WarningsMutation,
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


INTERNAL = "INTERNAL_SERVER_ERROR"


def _code(error: GraphQLError) -> str | None:
    code = (error.extensions or {}).get("code")
    return code if isinstance(code, str) else None


def _label(errors: Iterable[GraphQLError], code: str) -> None:
    for error in errors:
        if _code(error) is None:
            error.extensions = {**(error.extensions or {}), "code": code}


def unexpected(error: GraphQLError, *, production: bool) -> GraphQLError:
    """The error as the caller sees it: unchanged when the API raised it on purpose; an exception nobody
    expected becomes INTERNAL_SERVER_ERROR with no message of its own (a driver's message holds the SQL
    and its parameters). Outside production the exception's type name stays, for whoever debugs."""
    original: Any = error.original_error
    if _code(error) is not None or original is None or isinstance(original, GraphQLError):
        return error
    if isinstance(original, NotAuthenticated):
        code = "UNAUTHENTICATED"
        return GraphQLError(str(original), error.nodes, path=error.path, extensions={"code": code})
    message = "Unexpected error." if production else f"Unexpected error ({type(original).__name__})."
    return GraphQLError(message, error.nodes, path=error.path, extensions={"code": INTERNAL})


def with_codes(errors: list[GraphQLError], *, production: bool) -> list[GraphQLError]:
    """The last word on every error (the view calls it on every result): the phases' codes stay; what is
    left failed outside them (a syntax error from the parser cache, an extension that raised)."""
    coded = []
    for error in errors:
        if _code(error) is None:
            error = unexpected(error, production=production)
        if _code(error) is None:
            _label([error], "GRAPHQL_PARSE_FAILED" if isinstance(error, GraphQLSyntaxError) else INTERNAL)
        coded.append(error)
    return coded


class ErrorCodes(SchemaExtension):
    """Every error carries `extensions.code`: GRAPHQL_VALIDATION_FAILED, INVALID_INPUT for variables that
    do not coerce (or an operation that cannot be picked), the resolvers' own codes, and
    INTERNAL_SERVER_ERROR for anything unexpected, masked (see `unexpected`)."""

    def __init__(self, *, production: bool) -> None:
        self.production = production

    def on_validate(self) -> Iterator[None]:
        yield
        _label(self.execution_context.pre_execution_errors or (), "GRAPHQL_VALIDATION_FAILED")

    def on_execute(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        # No path: nothing ran yet, the request itself was refused.
        _label((error for error in result.errors if error.path is None), "INVALID_INPUT")
        result.errors = [unexpected(error, production=self.production) for error in result.errors]
        _label(result.errors, INTERNAL)


def _utc(value: datetime) -> str:
    """One rule for every DateTime the API returns: UTC, ISO 8601 with +00:00."""
    moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _isoparse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    try:
        parsed.astimezone(UTC)  # the instant must exist in UTC too (not 0001-01-01T00:00+01:00)
    except OverflowError:
        raise ValueError("it lies outside the years 1 to 9999 in UTC") from None
    return parsed


# strawberry's DateTime, answering in UTC.
DATETIME = strawberry.scalar(
    name="DateTime",
    description="Date with time (ISO 8601); answers are always in UTC, with +00:00.",
    serialize=_utc,
    parse_value=wrap_parser(_isoparse, "DateTime"),
)


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
        lambda: ErrorCodes(production=config.production),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        lambda: AddValidationRules(limit_rules),
        lambda: MaxTokensLimiter(max_token_count=config.max_tokens),
    ]
    if not config.introspection:
        extensions.append(DisableIntrospection)
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(scalar_map={datetime: DATETIME}),
    )
