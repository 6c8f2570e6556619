from __future__ import annotations

from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension

from schema.context import Info
from schema.errors import (
    ConflictError,
    DuplicateCodeError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    OutOfScopeError,
)
from schema.hierarchy.types import (
    CONVERTERS,
    TYPE_LEVELS,
    District,
    HierarchyNode,
    Station,
    Street,
    district_of,
    station_of,
    street_of,
)
from schema.mutations import parse_id, run_service
from schema.permissions import RequireRoles
from services.hierarchy import service
from services.hierarchy.repository import Level
from tenants.context import TenantContext
from tenants.roles import Role

ADMIN_ONLY: list[FieldExtension] = [RequireRoles(Role.CITY_ADMIN)]


@strawberry.input
class CreateDistrictInput:
    code: str
    name: str


@strawberry.input
class CreateStreetInput:
    district_id: strawberry.ID
    code: str
    name: str


@strawberry.input
class CreateStationInput:
    street_id: strawberry.ID
    code: str
    name: str


@strawberry.input
class RenameNodeInput:
    id: strawberry.ID
    name: str


@strawberry.input
class MoveStreetInput:
    id: strawberry.ID
    district_id: strawberry.ID


@strawberry.input
class MoveStationInput:
    id: strawberry.ID
    street_id: strawberry.ID


@strawberry.input
class RetireNodeInput:
    id: strawberry.ID


@strawberry.type
class DistrictPayload:
    district: District


@strawberry.type
class StreetPayload:
    street: Street


@strawberry.type
class StationPayload:
    station: Station


@strawberry.type
class NodePayload:
    node: HierarchyNode


_Errors = (
    NotFoundError | OutOfScopeError | DuplicateCodeError | InvalidInputError | ConflictError | ForbiddenError
)
DistrictResult = Annotated[DistrictPayload | _Errors, strawberry.union("DistrictResult")]
StreetResult = Annotated[StreetPayload | _Errors, strawberry.union("StreetResult")]
StationResult = Annotated[StationPayload | _Errors, strawberry.union("StationResult")]
NodeResult = Annotated[NodePayload | _Errors, strawberry.union("NodeResult")]


def _node_level(global_id: str, field: str = "id") -> tuple[Level, int]:
    type_name, key = parse_id(global_id, field, *TYPE_LEVELS)
    return TYPE_LEVELS[type_name], key


@strawberry.type
class HierarchyMutation:
    @strawberry.mutation(extensions=ADMIN_ONLY, description="Create a district (city admins).")
    async def create_district(self, info: Info, input: CreateDistrictInput) -> DistrictResult:
        async def work(session: AsyncSession, actor: TenantContext) -> DistrictPayload:
            row = await service.create_node(
                session, actor, Level.DISTRICT, parent_id=None, code=input.code, name=input.name
            )
            return DistrictPayload(district=district_of(row))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ADMIN_ONLY, description="Create a street under a district (city admins).")
    async def create_street(self, info: Info, input: CreateStreetInput) -> StreetResult:
        async def work(session: AsyncSession, actor: TenantContext) -> StreetPayload:
            _, district_key = parse_id(input.district_id, "districtId", "District")
            row = await service.create_node(
                session, actor, Level.STREET, parent_id=district_key, code=input.code, name=input.name
            )
            return StreetPayload(street=street_of(row))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ADMIN_ONLY, description="Create a station under a street (city admins).")
    async def create_station(self, info: Info, input: CreateStationInput) -> StationResult:
        async def work(session: AsyncSession, actor: TenantContext) -> StationPayload:
            _, street_key = parse_id(input.street_id, "streetId", "Street")
            row = await service.create_node(
                session, actor, Level.STATION, parent_id=street_key, code=input.code, name=input.name
            )
            return StationPayload(station=station_of(row))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ADMIN_ONLY, description="Rename a district, street or station.")
    async def rename_node(self, info: Info, input: RenameNodeInput) -> NodeResult:
        async def work(session: AsyncSession, actor: TenantContext) -> NodePayload:
            level, key = _node_level(input.id)
            row = await service.rename_node(session, actor, level, key, input.name)
            return NodePayload(node=_convert(level, row))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ADMIN_ONLY, description="Move a street to another district.")
    async def move_street(self, info: Info, input: MoveStreetInput) -> StreetResult:
        async def work(session: AsyncSession, actor: TenantContext) -> StreetPayload:
            _, key = parse_id(input.id, "id", "Street")
            _, district_key = parse_id(input.district_id, "districtId", "District")
            row = await service.move_node(session, actor, Level.STREET, key, district_key)
            return StreetPayload(street=street_of(row))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ADMIN_ONLY, description="Move a station to another street.")
    async def move_station(self, info: Info, input: MoveStationInput) -> StationResult:
        async def work(session: AsyncSession, actor: TenantContext) -> StationPayload:
            _, key = parse_id(input.id, "id", "Station")
            _, street_key = parse_id(input.street_id, "streetId", "Street")
            row = await service.move_node(session, actor, Level.STATION, key, street_key)
            return StationPayload(station=station_of(row))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ADMIN_ONLY, description="Retire a node that has no active children.")
    async def retire_node(self, info: Info, input: RetireNodeInput) -> NodeResult:
        async def work(session: AsyncSession, actor: TenantContext) -> NodePayload:
            level, key = _node_level(input.id)
            row = await service.retire_node(session, actor, level, key)
            return NodePayload(node=_convert(level, row))

        return await run_service(info, work)  # type: ignore[return-value]


def _convert(level: Level, row: Any) -> HierarchyNode:
    converted: HierarchyNode = CONVERTERS[level](row)
    return converted
