"""Point to grid cell -> station -> street -> district, by point-in-polygon on the GiST index."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# ST_Covers (not ST_Contains) so a point on an edge belongs to a cell; where several cells cover it (a
# shared edge, a corner where four meet) the lowest cell id wins, so the answer is always the same. The
# covering cells are found first (MATERIALIZED), so the planner starts from the GiST index rather than
# walking cells in id order.
COVERING_CELL = """
WITH covering AS MATERIALIZED (
  SELECT b.node_id FROM boundaries b
  WHERE b.tenant_id = :tenant_id AND b.level = 'grid'
    -- The box test spelled out: under RLS only a LEAKPROOF operator (see migration 0003) may drive the
    -- index, and ST_Covers itself is not one.
    AND b.geom ~ ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)
    AND ST_Covers(b.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
    AND b.valid_from <= :as_of AND (b.valid_to IS NULL OR b.valid_to > :as_of)
)
SELECT g.id AS grid_cell_id, g.code AS grid_cell_code, t.id AS station_id, t.code AS station_code,
       s.id AS street_id, s.code AS street_code, d.id AS district_id, d.code AS district_code,
       t.name AS station_name, t.scope::text AS station_scope, t.created_at AS station_created_at,
       t.retired_at AS station_retired_at,
       s.name AS street_name, s.scope::text AS street_scope, s.created_at AS street_created_at,
       s.retired_at AS street_retired_at,
       d.name AS district_name, d.scope::text AS district_scope, d.created_at AS district_created_at,
       d.retired_at AS district_retired_at
FROM (SELECT min(node_id) AS node_id FROM covering) c
JOIN grid_cells g ON g.tenant_id = :tenant_id AND g.id = c.node_id
JOIN stations t ON t.tenant_id = g.tenant_id AND t.id = g.station_id
JOIN streets s ON s.tenant_id = t.tenant_id AND s.id = t.street_id
JOIN districts d ON d.tenant_id = s.tenant_id AND d.id = s.district_id
"""

# The index orders candidates by bounding-box distance; the true distance (on the spheroid) picks among
# the few nearest.
NEAREST_CELL = """
SELECT node_id, code, distance FROM (
  SELECT b.node_id, g.code,
         ST_Distance(b.geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS distance
  FROM boundaries b
  JOIN grid_cells g ON g.tenant_id = b.tenant_id AND g.id = b.node_id
  WHERE b.tenant_id = :tenant_id AND b.level = 'grid'
    AND b.valid_from <= :as_of AND (b.valid_to IS NULL OR b.valid_to > :as_of)
  ORDER BY b.geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)
  LIMIT 8
) nearest
ORDER BY distance, node_id
LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class PlacedNode:
    """A station, street or district as the lookup found it (the API shows them without asking again)."""

    tenant_id: int
    id: int
    parent_id: int
    code: str
    name: str
    scope: str
    created_at: datetime
    retired_at: datetime | None


@dataclass(frozen=True, slots=True)
class Placement:
    grid_cell_id: int
    grid_cell_code: str
    station: PlacedNode
    street: PlacedNode
    district: PlacedNode

    @property
    def station_id(self) -> int:
        return self.station.id

    @property
    def street_id(self) -> int:
        return self.street.id

    @property
    def district_id(self) -> int:
        return self.district.id


@dataclass(frozen=True, slots=True)
class Nearest:
    grid_cell_id: int
    grid_cell_code: str
    distance_meters: float


@dataclass(frozen=True, slots=True)
class Location:
    """Where a point falls: its placement, or (unassigned) the nearest cell and how far it is."""

    placement: Placement | None
    nearest: Nearest | None

    @property
    def unassigned(self) -> bool:
        return self.placement is None


def _values(tenant_id: int, lon: float, lat: float, as_of: datetime) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "lon": lon, "lat": lat, "as_of": as_of}


async def covered_elsewhere(session: AsyncSession, lon: float, lat: float, as_of: datetime) -> bool:
    """Whether a cell of the caller's tenant covers the point, visible to the caller or not (yes or no)."""
    found = await session.scalar(
        text("SELECT liaison_point_in_tenant_grid(:lon, :lat, :as_of)"),
        {"lon": lon, "lat": lat, "as_of": as_of},
    )
    return bool(found)


async def locate(session: AsyncSession, tenant_id: int, lon: float, lat: float, as_of: datetime) -> Location:
    """Locate a WGS84 point among the grid cells visible to the session, as they were at `as_of`."""
    values = _values(tenant_id, lon, lat, as_of)
    row = (await session.execute(text(COVERING_CELL), values)).mappings().first()
    if row is not None:
        return Location(_placement(tenant_id, row), None)
    near = (await session.execute(text(NEAREST_CELL), values)).first()
    nearest = Nearest(int(near.node_id), str(near.code), float(near.distance)) if near is not None else None
    return Location(None, nearest)


def _placement(tenant_id: int, row: Any) -> Placement:
    def node(prefix: str, parent_id: int) -> PlacedNode:
        return PlacedNode(
            tenant_id=tenant_id,
            id=int(row[f"{prefix}_id"]),
            parent_id=parent_id,
            code=str(row[f"{prefix}_code"]),
            name=str(row[f"{prefix}_name"]),
            scope=str(row[f"{prefix}_scope"]),
            created_at=row[f"{prefix}_created_at"],
            retired_at=row[f"{prefix}_retired_at"],
        )

    return Placement(
        grid_cell_id=int(row["grid_cell_id"]),
        grid_cell_code=str(row["grid_cell_code"]),
        station=node("station", int(row["street_id"])),
        street=node("street", int(row["district_id"])),
        district=node("district", tenant_id),
    )
