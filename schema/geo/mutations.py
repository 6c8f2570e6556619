from __future__ import annotations

from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension
from strawberry.scalars import JSON

from geo.boundaries import BoundaryLevel
from geo.validation import GeometryRefused, validate_polygonal
from schema.context import Info
from schema.errors import (
    ConflictError,
    Error,
    ErrorCode,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    OutOfScopeError,
)
from schema.geo.types import CRS
from schema.mutations import parse_id, run_service
from schema.permissions import RequireRoles
from services.geography.service import set_node_boundary
from tenants.context import TenantContext
from tenants.roles import Role

ADMIN_ONLY: list[FieldExtension] = [RequireRoles(Role.CITY_ADMIN)]
LEVELS_BY_TYPE = {
    "District": BoundaryLevel.DISTRICT,
    "Street": BoundaryLevel.STREET,
    "Station": BoundaryLevel.STATION,
    "GridCell": BoundaryLevel.GRID,
}


@strawberry.type
class InvalidGeometryError(Error):
    reason: str = strawberry.field(description="Why the shape was refused, e.g. 'Self-intersection at ...'.")
    repairable: bool = strawberry.field(description="repair: true would have fixed it.")


@strawberry.type
class SiblingOverlap:
    code: str
    square_meters: float


@strawberry.input
class SetBoundaryInput:
    id: strawberry.ID = strawberry.field(description="A District, Street, Station or GridCell id.")
    geometry: JSON = strawberry.field(description="A GeoJSON Polygon or MultiPolygon (or a Feature).")
    crs: CRS = CRS.WGS84
    repair: bool = strawberry.field(default=False, description="Repair invalid polygons and report it.")


@strawberry.type
class BoundaryPayload:
    id: strawberry.ID
    node_code: str
    replaced_previous: bool = strawberry.field(
        description="An older version was closed and kept for history."
    )
    repairs: list[str]
    outside_parent_square_meters: float | None = strawberry.field(
        description="How much of the shape lies outside its parent's current shape."
    )
    overlaps: list[SiblingOverlap] = strawberry.field(description="Siblings whose shapes overlap this one.")


SetBoundaryResult = Annotated[
    BoundaryPayload
    | InvalidGeometryError
    | NotFoundError
    | OutOfScopeError
    | InvalidInputError
    | ConflictError
    | ForbiddenError,
    strawberry.union("SetBoundaryResult"),
]


@strawberry.type
class GeoMutation:
    @strawberry.mutation(extensions=ADMIN_ONLY, description="Set the boundary of one node (city admins).")
    async def set_boundary(self, info: Info, input: SetBoundaryInput) -> SetBoundaryResult:
        geometry: object = input.geometry
        try:
            if not isinstance(geometry, dict):
                raise GeometryRefused("the geometry must be a GeoJSON object", code="not_geojson")
            validated = validate_polygonal(geometry, repair=input.repair, crs=input.crs.system)
        except GeometryRefused as refused:
            return InvalidGeometryError(
                code=ErrorCode.INVALID_INPUT,
                message=refused.reason,
                field="geometry",
                reason=refused.reason,
                repairable=refused.repairable,
            )

        async def work(session: AsyncSession, actor: TenantContext) -> BoundaryPayload:
            type_name, key = parse_id(input.id, "id", *LEVELS_BY_TYPE)
            report = await set_node_boundary(
                session, actor, LEVELS_BY_TYPE[type_name], validated, node_id=key, source="graphql"
            )
            return BoundaryPayload(
                id=input.id,
                node_code=report.code,
                replaced_previous=report.replaced_previous,
                repairs=report.repairs,
                outside_parent_square_meters=report.outside_parent_square_meters,
                overlaps=[
                    SiblingOverlap(code=o.code, square_meters=o.square_meters) for o in report.overlaps
                ],
            )

        return await run_service(info, work)  # type: ignore[return-value]
