"""Storing shapes: versioned boundaries of hierarchy nodes and grid cells (SQL of the geo domain)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shapely import MultiPolygon, to_wkb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class BoundaryLevel(StrEnum):
    DISTRICT = "district"
    STREET = "street"
    STATION = "station"
    GRID = "grid"


@dataclass(frozen=True, slots=True)
class StoredBoundary:
    id: int
    closed_previous: bool


async def set_boundary(
    session: AsyncSession,
    *,
    tenant_id: int,
    level: BoundaryLevel,
    node_id: int,
    scope: str,
    geometry: MultiPolygon,
    valid_from: datetime | None = None,
    synthetic: bool = False,
    source: str = "",
) -> StoredBoundary:
    """Make `geometry` the node's current shape, closing the version it replaces (kept for "as of")."""
    values = {"tenant_id": tenant_id, "level": level.value, "node_id": node_id, "valid_from": valid_from}
    closed = await session.execute(
        text(
            "UPDATE boundaries SET valid_to = coalesce(:valid_from, now()) "
            "WHERE tenant_id = :tenant_id AND level = :level AND node_id = :node_id AND valid_to IS NULL"
        ),
        values,
    )
    new_id = await session.scalar(
        text(
            "INSERT INTO boundaries (tenant_id, level, node_id, scope, geom, valid_from, synthetic, source) "
            "VALUES (:tenant_id, :level, :node_id, text2ltree(:scope), "
            "ST_SetSRID(ST_GeomFromWKB(:wkb), 4326), coalesce(:valid_from, now()), :synthetic, :source) "
            "RETURNING id"
        ),
        {**values, "scope": scope, "wkb": to_wkb(geometry), "synthetic": synthetic, "source": source},
    )
    return StoredBoundary(int(new_id), bool(getattr(closed, "rowcount", 0)))


async def add_grid_cell(
    session: AsyncSession,
    *,
    tenant_id: int,
    station_id: int,
    station_scope: str,
    code: str,
    name: str,
    geometry: MultiPolygon | None,
    grid_worker_id: int | None = None,
    synthetic: bool = False,
    source: str = "",
) -> int:
    cell_id = int(await session.scalar(text("SELECT nextval(pg_get_serial_sequence('grid_cells', 'id'))")))
    scope = f"{station_scope}.g{cell_id}"
    await session.execute(
        text(
            "INSERT INTO grid_cells (tenant_id, id, station_id, code, name, scope, grid_worker_id) "
            "VALUES (:tenant_id, :id, :station_id, :code, :name, text2ltree(:scope), :grid_worker_id)"
        ),
        {
            "tenant_id": tenant_id,
            "id": cell_id,
            "station_id": station_id,
            "code": code,
            "name": name,
            "scope": scope,
            "grid_worker_id": grid_worker_id,
        },
    )
    if geometry is not None:  # None: the caller sets the shape itself
        await set_boundary(
            session,
            tenant_id=tenant_id,
            level=BoundaryLevel.GRID,
            node_id=cell_id,
            scope=scope,
            geometry=geometry,
            synthetic=synthetic,
            source=source,
        )
    return cell_id


# Node tables by boundary level, for the lookups below (fixed names, never input).
NODE_TABLES = {
    BoundaryLevel.DISTRICT: "districts",
    BoundaryLevel.STREET: "streets",
    BoundaryLevel.STATION: "stations",
    BoundaryLevel.GRID: "grid_cells",
}
PARENTS = {
    BoundaryLevel.STREET: (BoundaryLevel.DISTRICT, "district_id"),
    BoundaryLevel.STATION: (BoundaryLevel.STREET, "street_id"),
    BoundaryLevel.GRID: (BoundaryLevel.STATION, "station_id"),
}


async def current_geojson(
    session: AsyncSession,
    tenant_id: int,
    level: BoundaryLevel,
    node_ids: list[int],
    simplify: float | None,
    as_of: datetime | None = None,
) -> dict[int, str]:
    """RFC 7946 GeoJSON text of each node's shape (current, or valid at `as_of`): counter-clockwise
    exteriors, at most 7 decimals, optionally simplified without breaking topology."""
    rows = await session.execute(
        text(
            # ST_Multi: simplifying a one-part MultiPolygon gives back a Polygon.
            "SELECT node_id, ST_AsGeoJSON(ST_Multi(ST_ForcePolygonCCW("
            "CASE WHEN CAST(:simplify AS float8) IS NULL THEN geom "
            "ELSE ST_SimplifyPreserveTopology(geom, CAST(:simplify AS float8)) END)), 7) "
            "FROM boundaries WHERE tenant_id = :tenant_id AND level = :level AND node_id = ANY(:ids) "
            "AND CASE WHEN CAST(:as_of AS timestamptz) IS NULL THEN valid_to IS NULL "
            "ELSE valid_from <= CAST(:as_of AS timestamptz) "
            "AND (valid_to IS NULL OR valid_to > CAST(:as_of AS timestamptz)) END"
        ),
        {"tenant_id": tenant_id, "level": level.value, "ids": node_ids, "simplify": simplify, "as_of": as_of},
    )
    return {int(node_id): str(geojson) for node_id, geojson in rows}


@dataclass(frozen=True, slots=True)
class Overlap:
    code: str
    square_meters: float


async def outside_parent(
    session: AsyncSession, tenant_id: int, level: BoundaryLevel, node_id: int
) -> float | None:
    """Square metres of the node's current shape outside its parent's (None when there is no parent shape)."""
    parent = PARENTS.get(level)
    if parent is None:
        return None
    parent_level, parent_column = parent
    area = await session.scalar(
        text(
            "SELECT ST_Area(ST_Difference(c.geom, p.geom)::geography) "  # noqa: S608 (fixed names)
            f"FROM boundaries c JOIN {NODE_TABLES[level]} n "
            "ON n.tenant_id = c.tenant_id AND n.id = c.node_id "
            "JOIN boundaries p ON p.tenant_id = n.tenant_id AND p.level = :parent_level "
            f"AND p.node_id = n.{parent_column} AND p.valid_to IS NULL "
            "WHERE c.tenant_id = :tenant_id AND c.level = :level AND c.node_id = :node_id "
            "AND c.valid_to IS NULL"
        ),
        {
            "tenant_id": tenant_id,
            "level": level.value,
            "node_id": node_id,
            "parent_level": parent_level.value,
        },
    )
    return float(area) if area is not None else None


async def overlapping_siblings(
    session: AsyncSession, tenant_id: int, level: BoundaryLevel, node_id: int, min_square_meters: float = 1.0
) -> list[Overlap]:
    """Other current shapes of the same level that overlap this node's by more than `min_square_meters`."""
    rows = await session.execute(
        text(
            "SELECT n.code, ST_Area(ST_Intersection(a.geom, b.geom)::geography) AS overlap "  # noqa: S608
            "FROM boundaries a JOIN boundaries b ON b.tenant_id = a.tenant_id AND b.level = a.level "
            "AND b.node_id <> a.node_id AND b.valid_to IS NULL AND ST_Intersects(a.geom, b.geom) "
            f"JOIN {NODE_TABLES[level]} n ON n.tenant_id = b.tenant_id AND n.id = b.node_id "
            "WHERE a.tenant_id = :tenant_id AND a.level = :level AND a.node_id = :node_id "
            "AND a.valid_to IS NULL "
            "ORDER BY n.code"
        ),
        {"tenant_id": tenant_id, "level": level.value, "node_id": node_id},
    )
    return [Overlap(code, float(area)) for code, area in rows if float(area) > min_square_meters]


@dataclass(frozen=True, slots=True)
class NodeRef:
    id: int
    code: str
    scope: str


async def find_node(
    session: AsyncSession,
    tenant_id: int,
    level: BoundaryLevel,
    *,
    node_id: int | None = None,
    code: str | None = None,
) -> NodeRef | None:
    """A node the caller can see, by id or by code."""
    column, value = ("id", node_id) if node_id is not None else ("code", code)
    row = (
        await session.execute(
            text(
                f"SELECT id, code, scope::text FROM {NODE_TABLES[level]} "  # noqa: S608 (fixed names)
                f"WHERE tenant_id = :tenant_id AND {column} = :value"
            ),
            {"tenant_id": tenant_id, "value": value},
        )
    ).first()
    return NodeRef(int(row[0]), str(row[1]), str(row[2])) if row is not None else None


@dataclass(frozen=True, slots=True)
class GridCellRow:
    id: int
    station_id: int
    code: str
    name: str
    scope: str


async def grid_cells_of(
    session: AsyncSession, tenant_id: int, station_ids: list[int], first: int
) -> dict[int, list[GridCellRow]]:
    """The first `first` live grid cells of each station, by code (one statement for many stations)."""
    rows = await session.execute(
        text(
            "SELECT id, station_id, code, name, scope::text FROM ("
            "  SELECT g.*, row_number() OVER (PARTITION BY station_id ORDER BY code) AS n FROM grid_cells g"
            "  WHERE tenant_id = :tenant_id AND station_id = ANY(:ids) AND retired_at IS NULL"
            ") ranked WHERE n <= :first ORDER BY station_id, code"
        ),
        {"tenant_id": tenant_id, "ids": station_ids, "first": first},
    )
    found: dict[int, list[GridCellRow]] = {station_id: [] for station_id in station_ids}
    for row in rows:
        found[int(row[1])].append(
            GridCellRow(int(row[0]), int(row[1]), str(row[2]), str(row[3]), str(row[4]))
        )
    return found


async def grid_cells_by_id(session: AsyncSession, tenant_id: int, ids: list[int]) -> list[GridCellRow]:
    rows = await session.execute(
        text(
            "SELECT id, station_id, code, name, scope::text FROM grid_cells "
            "WHERE tenant_id = :tenant_id AND id = ANY(:ids) ORDER BY id"
        ),
        {"tenant_id": tenant_id, "ids": ids},
    )
    return [GridCellRow(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]


async def allocate_grid_cell_ids(session: AsyncSession, count: int) -> list[int]:
    rows = await session.scalars(
        text("SELECT nextval(pg_get_serial_sequence('grid_cells', 'id')) FROM generate_series(1, :n)"),
        {"n": count},
    )
    return [int(value) for value in rows]


async def city_geojson(session: AsyncSession, tenant_id: int, simplify: float | None) -> str | None:
    """The city's outline: the union of the current district shapes the caller can see."""
    found = await session.scalar(
        text(
            "SELECT ST_AsGeoJSON(ST_Multi(ST_ForcePolygonCCW(CASE WHEN CAST(:simplify AS float8) IS NULL "
            "THEN ST_Union(geom) ELSE ST_SimplifyPreserveTopology(ST_Union(geom), CAST(:simplify AS float8)) "
            "END)), 7) FROM boundaries "
            "WHERE tenant_id = :tenant_id AND level = 'district' AND valid_to IS NULL"
        ),
        {"tenant_id": tenant_id, "simplify": simplify},
    )
    return str(found) if found is not None else None
