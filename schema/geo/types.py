from __future__ import annotations

from enum import Enum

import strawberry

from geo.crs import CRS as CoordinateSystem
from schema.context import Info
from schema.hierarchy.types import District, Station, Street, district_of, station_of, street_of
from schema.relay import encode_id
from services.hierarchy.repository import Level


@strawberry.enum(
    description="Coordinate system of an input point; front-ends in China often send GCJ-02 or BD-09."
)
class CRS(Enum):
    WGS84 = "WGS84"
    GCJ02 = "GCJ02"
    BD09 = "BD09"

    @property
    def system(self) -> CoordinateSystem:
        return CoordinateSystem(self.value)


@strawberry.type(description="A grid cell (网格) under a station.")
class GridCellRef:
    id: strawberry.ID
    code: str

    @classmethod
    def of(cls, key: int, code: str) -> GridCellRef:
        return cls(id=encode_id("GridCell", key), code=code)


@strawberry.type(
    description="Where a point falls: its grid cell and the station, street and district above it."
)
class Location:
    longitude: float = strawberry.field(description="The point in WGS84, after conversion.")
    latitude: float
    grid_cell: GridCellRef | None = None
    unassigned: bool = strawberry.field(
        default=False, description="No grid cell covers the point; it is kept, never dropped."
    )
    outside_scope: bool = strawberry.field(
        default=False,
        description="The point lies in a part of the city outside the caller's scope; nothing more is said.",
    )
    nearest_grid_cell: GridCellRef | None = None
    distance_meters: float | None = strawberry.field(
        default=None, description="Distance to the nearest cell when unassigned."
    )
    station_key: strawberry.Private[int | None] = None
    street_key: strawberry.Private[int | None] = None
    district_key: strawberry.Private[int | None] = None

    @strawberry.field
    async def station(self, info: Info) -> Station | None:
        if self.station_key is None:
            return None
        row = await info.context.loaders.nodes(Level.STATION).load(self.station_key)
        return station_of(row) if row is not None else None

    @strawberry.field
    async def street(self, info: Info) -> Street | None:
        if self.street_key is None:
            return None
        row = await info.context.loaders.nodes(Level.STREET).load(self.street_key)
        return street_of(row) if row is not None else None

    @strawberry.field
    async def district(self, info: Info) -> District | None:
        if self.district_key is None:
            return None
        row = await info.context.loaders.nodes(Level.DISTRICT).load(self.district_key)
        return district_of(row) if row is not None else None
