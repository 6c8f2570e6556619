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
    geometry: MultiPolygon,
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
