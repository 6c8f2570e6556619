"""heatmap, requestStats and supervisionSummary: aggregations of requests for signed-in staff.

Residents are refused (FORBIDDEN): these are pictures of a territory, and a resident has none. Bad
arguments are GraphQL errors with code INVALID_INPUT; a node the caller cannot see, NOT_FOUND. Each
field runs one aggregation statement in the request's transaction (geo.heat).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

import strawberry
from graphql import GraphQLError
from strawberry.permission import BasePermission
from strawberry.scalars import JSON

from geo import heat
from geo.heat import HeatInputError, NodeLevel, NodeNotFound, NodeRef, Window
from schema.context import Info
from schema.heat.types import HeatBucket, StatDimension, StatPeriod, StatRowType, SupervisionCount
from schema.permissions import IsAuthenticated
from schema.relay import BadGlobalId, decode_id
from tenants.roles import Role

STAFF = tuple(role for role in Role if role is not Role.RESIDENT)
_NODE_LEVELS = {
    "City": NodeLevel.CITY,
    "District": NodeLevel.DISTRICT,
    "Street": NodeLevel.STREET,
    "Station": NodeLevel.STATION,
}


class IsStaff(BasePermission):
    message = "only staff may read heat maps and statistics"
    error_extensions = {"code": "FORBIDDEN"}  # noqa: RUF012 (strawberry reads this class attribute)

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        principal = info.context.principal
        return principal is not None and principal.has_any_role(*STAFF)


STAFF_ONLY: list[type[BasePermission]] = [IsAuthenticated, IsStaff]


def invalid(message: str, field: str | None = None) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "INVALID_INPUT", "field": field})


def node_ref(node_id: strawberry.ID | None) -> NodeRef | None:
    if node_id is None:
        return None
    try:
        type_name, key = decode_id(node_id, *_NODE_LEVELS)
    except BadGlobalId as error:
        raise invalid(
            f"{error}; nodeId names the city, a district, a street or a station", "nodeId"
        ) from None
    return NodeRef(_NODE_LEVELS[type_name], key)


def window_of(
    info: Info,
    start: datetime,
    end: datetime,
    categories: list[str] | None,
    states: list[str] | None,
    node_id: strawberry.ID | None,
) -> Window:
    principal = info.context.require_principal()
    try:
        return Window(
            principal.tenant_id,
            principal.scopes,
            start,
            end,
            tuple(categories) if categories is not None else None,
            tuple(states) if states is not None else None,
            node_ref(node_id),
        )
    except HeatInputError as error:
        raise invalid(str(error), error.field) from None


def not_found(error: NodeNotFound) -> GraphQLError:
    return GraphQLError(str(error), extensions={"code": "NOT_FOUND", "field": "nodeId"})


@strawberry.type
class HeatQuery:
    @strawberry.field(
        permission_classes=STAFF_ONLY,
        description=(
            "Requests submitted in [from, to) inside your scope (and nodeId's), per grid cell or per H3 "
            f"hexagon (resolution {heat.MIN_RESOLUTION}..{heat.MAX_RESOLUTION}), as an RFC 7946 "
            "FeatureCollection: each feature's properties hold total, overdue, resolved, rated, satisfied, "
            "averageRating, solved, solvedShare and counts by category and by state. At most "
            f"{heat.MAX_WINDOW.days} days."
        ),
    )
    async def heatmap(
        self,
        info: Info,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        bucket: HeatBucket = HeatBucket.GRID_CELL,
        resolution: int | None = None,
        categories: list[str] | None = None,
        states: list[str] | None = None,
        node_id: strawberry.ID | None = None,
    ) -> JSON:
        window = window_of(info, from_, to, categories, states, node_id)
        if bucket is HeatBucket.H3:
            try:
                heat.check_resolution(resolution)
            except HeatInputError as error:
                raise invalid(str(error), error.field) from None
        elif resolution is not None:
            raise invalid("resolution applies to H3 buckets only", "resolution")
        async with info.context.db() as session:
            try:
                collection = await heat.heatmap(session, window, bucket.bucket, resolution)
            except NodeNotFound as error:
                raise not_found(error) from None
        return cast(JSON, collection)

    @strawberry.field(
        permission_classes=STAFF_ONLY,
        description="Requests submitted in [from, to) inside your scope, counted by the groupBy dimensions.",
    )
    async def request_stats(
        self,
        info: Info,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        group_by: list[StatDimension],
        period: StatPeriod = StatPeriod.DAY,
        categories: list[str] | None = None,
        states: list[str] | None = None,
        node_id: strawberry.ID | None = None,
    ) -> list[StatRowType]:
        window = window_of(info, from_, to, categories, states, node_id)
        async with info.context.db() as session:
            try:
                rows = await heat.request_stats(
                    session, window, [d.dimension for d in group_by], period.period
                )
            except HeatInputError as error:
                raise invalid(str(error), error.field) from None
            except NodeNotFound as error:
                raise not_found(error) from None
        return [StatRowType.of(row) for row in rows]

    @strawberry.field(
        permission_classes=STAFF_ONLY,
        description=(
            "Blue, yellow and red requests per child node of your scope (or of nodeId): districts of a city, "
            "streets of a district, stations of a street, grid cells of a station; optionally only those "
            "submitted in [from, to)."
        ),
    )
    async def supervision_summary(
        self,
        info: Info,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
        node_id: strawberry.ID | None = None,
    ) -> list[SupervisionCount]:
        principal = info.context.require_principal()
        node = node_ref(node_id)
        async with info.context.db() as session:
            try:
                rows = await heat.supervision_summary(
                    session, principal.tenant_id, principal.scopes, node=node, start=from_, end=to
                )
            except HeatInputError as error:
                raise invalid(str(error), error.field) from None
            except NodeNotFound as error:
                raise not_found(error) from None
        return [SupervisionCount.of(row) for row in rows]
