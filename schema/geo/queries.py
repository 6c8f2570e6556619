from __future__ import annotations

import math
from datetime import UTC, datetime
from types import SimpleNamespace

import strawberry
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession

from geo import assignment
from geo.assignment import PlacedNode, Placement
from geo.boundaries import grid_cells_by_id
from geo.crs import to_wgs84
from schema.context import Info
from schema.geo.types import CRS, GridCellRef, Location
from schema.hierarchy.types import GridCell, grid_cell_of
from schema.permissions import SIGNED_IN
from schema.territory import resident_homes
from services.hierarchy.repository import Level
from tenants.roles import Role


def _checked_point(lon: float, lat: float) -> None:
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise GraphQLError("lon and lat must be finite numbers", extensions={"code": "INVALID_INPUT"})
    if abs(lat) > 90 and abs(lon) <= 90 and abs(lat) <= 180:
        raise GraphQLError(
            "latitude and longitude look swapped: lon comes first", extensions={"code": "INVALID_INPUT"}
        )
    if abs(lon) > 180 or abs(lat) > 90:
        raise GraphQLError(
            "lon must lie in [-180, 180] and lat in [-90, 90]", extensions={"code": "INVALID_INPUT"}
        )


def prime_placement(info: Info, place: Placement) -> None:
    """The lookup already read the station, street and district: hand them to the loaders."""
    loaders = info.context.loaders
    station, street, district = place.station, place.street, place.district
    loaders.nodes(Level.STATION).prime(
        station.id, SimpleNamespace(**_fields(station), street_id=station.parent_id)
    )
    loaders.nodes(Level.STREET).prime(
        street.id, SimpleNamespace(**_fields(street), district_id=street.parent_id)
    )
    loaders.nodes(Level.DISTRICT).prime(district.id, SimpleNamespace(**_fields(district)))


def _fields(node: PlacedNode) -> dict[str, object]:
    return {
        "tenant_id": node.tenant_id,
        "id": node.id,
        "code": node.code,
        "name": node.name,
        "scope": node.scope,
        "created_at": node.created_at,
        "retired_at": node.retired_at,
    }


async def load_grid_cell(info: Info, key: int) -> GridCell | None:
    principal = info.context.require_principal()
    async with info.context.db() as session:
        cells = await grid_cells_by_id(session, principal.tenant_id, [key])
    return grid_cell_of(cells[0]) if cells else None


async def _lookup(
    session: AsyncSession, tenant_id: int, lon: float, lat: float, when: datetime
) -> tuple[assignment.Location, bool]:
    """The point among the cells the session sees, and whether a cell it does not see covers it."""
    found = await assignment.locate(session, tenant_id, lon, lat, when)
    hidden = found.unassigned and await assignment.covered_elsewhere(session, lon, lat, when)
    return found, hidden


@strawberry.type
class GeoQuery:
    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="The grid cell, station, street and district of a point, as the boundaries were at asOf.",
    )
    async def locate(
        self, info: Info, lon: float, lat: float, crs: CRS = CRS.WGS84, as_of: datetime | None = None
    ) -> Location:
        _checked_point(lon, lat)
        wgs_lon, wgs_lat = to_wgs84(lon, lat, crs.system)
        when = as_of if as_of is not None else datetime.now(UTC)
        if when.tzinfo is None:
            raise GraphQLError(
                "asOf needs a time zone, e.g. 2026-11-25T08:00:00+08:00", extensions={"code": "INVALID_INPUT"}
            )
        principal = info.context.require_principal()
        if principal.roles == {Role.RESIDENT}:
            # What a resident learns: the placement of a point in their home, else only outsideScope
            # (a cell elsewhere covers it) or unassigned with the nearest cell of their home.
            for home in resident_homes(principal):
                async with info.context.config.database.scoped(home) as session:
                    found, hidden = await _lookup(session, principal.tenant_id, wgs_lon, wgs_lat, when)
                if found.placement is not None:
                    break
        else:
            async with info.context.db() as session:
                found, hidden = await _lookup(session, principal.tenant_id, wgs_lon, wgs_lat, when)
        if hidden:
            return Location(longitude=wgs_lon, latitude=wgs_lat, outside_scope=True)
        if found.placement is not None:
            place = found.placement
            prime_placement(info, place)
            return Location(
                longitude=wgs_lon,
                latitude=wgs_lat,
                grid_cell=GridCellRef.of(place.grid_cell_id, place.grid_cell_code),
                station_key=place.station_id,
                street_key=place.street_id,
                district_key=place.district_id,
            )
        nearest = found.nearest
        if nearest is None:  # a tenant (or scope) without any grid cell
            return Location(longitude=wgs_lon, latitude=wgs_lat, unassigned=True)
        return Location(
            longitude=wgs_lon,
            latitude=wgs_lat,
            unassigned=True,
            nearest_grid_cell=GridCellRef.of(nearest.grid_cell_id, nearest.grid_cell_code),
            distance_meters=round(nearest.distance_meters, 1),
        )
