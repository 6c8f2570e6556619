"""The city and its districts, streets and stations as GraphQL types."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.scalars import JSON

from geo.boundaries import BoundaryLevel, city_geojson
from schema.context import Info
from schema.relay import (
    MAX_PAGE_SIZE,
    Connection,
    Node,
    check_page_size,
    connection,
    decode_cursor,
    encode_id,
)
from services.hierarchy.repository import Level, PageArgs


def page_args(
    first: int, after: str | None, code: str | None, name_contains: str | None, include_retired: bool
) -> PageArgs:
    try:
        return PageArgs(
            first=check_page_size(first),
            after=decode_cursor(after),
            code=code,
            name_contains=name_contains,
            include_retired=include_retired,
        )
    except ValueError as error:
        raise GraphQLError(str(error), extensions={"code": "INVALID_INPUT"}) from None


async def children(info: Info, level: Level, parent_key: int, args: PageArgs) -> Connection[Any]:
    page = await info.context.loaders.pages(level, args).load(parent_key)
    return connection(
        page.rows,
        CONVERTERS[level],
        total=page.total,
        has_next=page.has_next,
        has_previous=page.has_previous,
        cursor_of=lambda row: row.code,
    )


MAX_SIMPLIFY_DEGREES = 0.1


def check_simplify(simplify: float | None) -> None:
    if simplify is not None and not 0 <= simplify <= MAX_SIMPLIFY_DEGREES:
        raise GraphQLError(
            f"simplify is a tolerance in degrees between 0 and {MAX_SIMPLIFY_DEGREES}",
            extensions={"code": "INVALID_INPUT"},
        )


async def boundary_of(info: Info, level: BoundaryLevel, key: int, simplify: float | None) -> JSON | None:
    check_simplify(simplify)
    found: JSON | None = await info.context.loaders.boundaries(level, simplify).load(key)
    return found


BOUNDARY_HELP = "The current boundary as an RFC 7946 GeoJSON geometry; simplify is a tolerance in degrees."


@strawberry.interface(description="A district, street or station of the city's hierarchy.")
class HierarchyNode(Node):
    code: str
    name: str
    scope: str = strawberry.field(description="The node's ltree path, e.g. c1.d3.s12.t5.")
    created_at: datetime
    retired_at: datetime | None


@strawberry.type(description="The city: the tenant.")
class City(Node):
    code: str
    name: str
    scope: str
    key: strawberry.Private[int]

    @strawberry.field(
        description="The city's outline: the union of the district shapes visible to the caller."
    )
    async def boundary(self, info: Info, simplify: float | None = None) -> JSON | None:
        check_simplify(simplify)
        async with info.context.db() as session:
            found = await city_geojson(session, self.key, simplify)
        return json.loads(found) if found is not None else None

    @strawberry.field
    async def districts(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        code: str | None = None,
        name_contains: str | None = None,
        include_retired: bool = False,
    ) -> Connection[District]:
        args = page_args(first, after, code, name_contains, include_retired)
        return await children(info, Level.DISTRICT, self.key, args)


@strawberry.type(description="A district (区).")
class District(HierarchyNode):
    key: strawberry.Private[int]
    tenant_id: strawberry.Private[int]

    @strawberry.field
    async def city(self, info: Info) -> City:
        from schema.hierarchy.queries import load_city

        found = await load_city(info)
        assert found is not None  # the caller's own city is visible to every scope in it
        return found

    @strawberry.field(description=BOUNDARY_HELP)
    async def boundary(self, info: Info, simplify: float | None = None) -> JSON | None:
        return await boundary_of(info, BoundaryLevel.DISTRICT, self.key, simplify)

    @strawberry.field
    async def streets(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        code: str | None = None,
        name_contains: str | None = None,
        include_retired: bool = False,
    ) -> Connection[Street]:
        args = page_args(first, after, code, name_contains, include_retired)
        return await children(info, Level.STREET, self.key, args)


@strawberry.type(description="A street or township (街道/乡镇).")
class Street(HierarchyNode):
    key: strawberry.Private[int]
    district_key: strawberry.Private[int]

    @strawberry.field
    async def district(self, info: Info) -> District:
        row = await info.context.loaders.nodes(Level.DISTRICT).load(self.district_key)
        return district_of(row)

    @strawberry.field(description=BOUNDARY_HELP)
    async def boundary(self, info: Info, simplify: float | None = None) -> JSON | None:
        return await boundary_of(info, BoundaryLevel.STREET, self.key, simplify)

    @strawberry.field
    async def stations(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        code: str | None = None,
        name_contains: str | None = None,
        include_retired: bool = False,
    ) -> Connection[Station]:
        args = page_args(first, after, code, name_contains, include_retired)
        return await children(info, Level.STATION, self.key, args)


@strawberry.type(description="A community liaison station (社区联络站), one per community.")
class Station(HierarchyNode):
    key: strawberry.Private[int]
    street_key: strawberry.Private[int]

    @strawberry.field
    async def street(self, info: Info) -> Street:
        row = await info.context.loaders.nodes(Level.STREET).load(self.street_key)
        return street_of(row)

    @strawberry.field(description=BOUNDARY_HELP)
    async def boundary(self, info: Info, simplify: float | None = None) -> JSON | None:
        return await boundary_of(info, BoundaryLevel.STATION, self.key, simplify)

    @strawberry.field(description="The station's grid cells (网格), by code.")
    async def grid_cells(self, info: Info, first: int = 100) -> list[GridCell]:
        if not 0 <= first <= MAX_PAGE_SIZE:
            raise GraphQLError(
                f"first must be between 0 and {MAX_PAGE_SIZE}", extensions={"code": "INVALID_INPUT"}
            )
        rows = await info.context.loaders.grid_cells(first).load(self.key)
        return [grid_cell_of(row) for row in rows]


@strawberry.type(description="A grid cell (网格): the smallest unit of grid governance, under a station.")
class GridCell(Node):
    code: str
    name: str
    scope: str
    key: strawberry.Private[int]
    station_key: strawberry.Private[int]

    @strawberry.field
    async def station(self, info: Info) -> Station:
        row = await info.context.loaders.nodes(Level.STATION).load(self.station_key)
        return station_of(row)

    @strawberry.field(description=BOUNDARY_HELP)
    async def boundary(self, info: Info, simplify: float | None = None) -> JSON | None:
        return await boundary_of(info, BoundaryLevel.GRID, self.key, simplify)


def grid_cell_of(row: Any) -> GridCell:
    return GridCell(
        id=encode_id("GridCell", row.id),
        code=row.code,
        name=row.name,
        scope=row.scope,
        key=row.id,
        station_key=row.station_id,
    )


def city_of(row: Any) -> City:
    return City(
        id=encode_id("City", row.tenant_id), code=row.code, name=row.name, scope=row.scope, key=row.tenant_id
    )


def district_of(row: Any) -> District:
    return District(
        id=encode_id("District", row.id),
        code=row.code,
        name=row.name,
        scope=row.scope,
        created_at=row.created_at,
        retired_at=row.retired_at,
        key=row.id,
        tenant_id=row.tenant_id,
    )


def street_of(row: Any) -> Street:
    return Street(
        id=encode_id("Street", row.id),
        code=row.code,
        name=row.name,
        scope=row.scope,
        created_at=row.created_at,
        retired_at=row.retired_at,
        key=row.id,
        district_key=row.district_id,
    )


def station_of(row: Any) -> Station:
    return Station(
        id=encode_id("Station", row.id),
        code=row.code,
        name=row.name,
        scope=row.scope,
        created_at=row.created_at,
        retired_at=row.retired_at,
        key=row.id,
        street_key=row.street_id,
    )


CONVERTERS: dict[Level, Any] = {
    Level.DISTRICT: district_of,
    Level.STREET: street_of,
    Level.STATION: station_of,
}
TYPE_LEVELS = {"District": Level.DISTRICT, "Street": Level.STREET, "Station": Level.STATION}
