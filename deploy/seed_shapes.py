"""Shapes for seeded tenants: real district boundaries where we have them, synthetic polygons below.

Streets, communities and grid cells have no public polygons; they are generated deterministically inside
their parents (geo.synthetic) and stored with `synthetic = true`.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shapely
from shapely import MultiPolygon, Point
from shapely.geometry import shape
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from geo.boundaries import allocate_grid_cell_ids
from geo.crs import geometry_to_wgs84, parse_crs
from geo.synthetic import area_km2, grid_cells, is_village, partition, target_cell_km2
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database

BEIJING_DISTRICTS = Path(__file__).resolve().parent / "data" / "beijing_districts.geojson"
BATCH = 2000

Progress = Callable[[int], None]


@dataclass
class ShapeCounts:
    districts: int = 0
    streets: int = 0
    stations: int = 0
    grid_cells: int = 0
    skipped: bool = False


def beijing_district_shapes(path: Path = BEIJING_DISTRICTS) -> dict[str, MultiPolygon]:
    """The 16 district boundaries, converted from the file's GCJ-02 to WGS84."""
    document = json.loads(path.read_text(encoding="utf-8"))
    crs = parse_crs(document.get("liaison", {}).get("crs", "WGS84"))
    shapes: dict[str, MultiPolygon] = {}
    for feature in document["features"]:
        geometry = shapely.make_valid(geometry_to_wgs84(shape(feature["geometry"]), crs), method="structure")
        shapes[feature["properties"]["code"]] = _multi(geometry)
    return shapes


def synthetic_city(districts: list[str], seed: int) -> dict[str, MultiPolygon]:
    """A round synthetic city (about 100 km² a district) around Tiananmen, cut into districts."""
    radius = 0.06 * max(1, len(districts)) ** 0.5
    city = MultiPolygon([Point(116.397, 39.909).buffer(radius, quad_segs=32)])
    return dict(zip(sorted(districts), partition(city, len(districts), seed), strict=True))


def _multi(geometry: Any) -> MultiPolygon:
    parts = [
        part
        for part in getattr(geometry, "geoms", [geometry])
        if part.geom_type in ("Polygon", "MultiPolygon")
    ]
    polygons = [polygon for part in parts for polygon in getattr(part, "geoms", [part])]
    return MultiPolygon(polygons)


def _seed_of(code: str) -> int:
    return zlib.crc32(code.encode())


async def _rows(session: AsyncSession, sql: str, tenant_id: int) -> list[Any]:
    return list((await session.execute(text(sql), {"tenant_id": tenant_id})).all())


async def seed_shapes(
    database: Database,
    tenant_id: int,
    district_shapes: Callable[[list[str]], dict[str, MultiPolygon]],
    *,
    district_source: str | None,
    with_grid_cells: bool = True,
    progress_factory: Callable[[int], Progress] | None = None,
) -> ShapeCounts:
    """Give every node of the tenant a shape, unless the tenant already has shapes (a re-run is a no-op).

    `district_shapes` maps district codes to shapes; `district_source` names where real ones come from
    (None: they are synthetic too)."""
    actor = TenantContext.whole_tenant(tenant_id, "system:seed")
    async with unit_of_work(database, actor) as session:
        existing = await session.scalar(
            text("SELECT count(*) FROM boundaries WHERE tenant_id = :tenant_id"), {"tenant_id": tenant_id}
        )
        if existing:
            return ShapeCounts(skipped=True)
        districts = await _rows(
            session,
            "SELECT id, code, scope::text FROM districts WHERE tenant_id = :tenant_id "
            "AND retired_at IS NULL ORDER BY code",
            tenant_id,
        )
        streets = await _rows(
            session,
            "SELECT id, code, scope::text, district_id FROM streets "
            "WHERE tenant_id = :tenant_id AND retired_at IS NULL ORDER BY code",
            tenant_id,
        )
        stations = await _rows(
            session,
            "SELECT id, code, scope::text, street_id, name FROM stations "
            "WHERE tenant_id = :tenant_id AND retired_at IS NULL ORDER BY code",
            tenant_id,
        )
    progress = progress_factory(len(districts) + len(streets) + len(stations)) if progress_factory else None
    shapes = district_shapes([row.code for row in districts])
    boundaries: list[dict[str, Any]] = []
    cells: list[tuple[Any, MultiPolygon, int]] = []

    def add(level: str, row: Any, geometry: MultiPolygon) -> None:
        real = level == "district" and district_source is not None
        boundaries.append(
            {
                "level": level,
                "node_id": row.id,
                "scope": row.scope,
                "wkb": shapely.to_wkb(geometry),
                "synthetic": not real,
                "source": district_source if real else "geo.synthetic",
            }
        )

    streets_of: dict[int, list[Any]] = {}
    for street in streets:
        streets_of.setdefault(street.district_id, []).append(street)
    stations_of: dict[int, list[Any]] = {}
    for station in stations:
        stations_of.setdefault(station.street_id, []).append(station)
    counts = ShapeCounts()
    for district in districts:
        district_shape = shapes.get(district.code)
        if district_shape is None:
            continue
        add("district", district, district_shape)
        counts.districts += 1
        children = streets_of.get(district.id, [])
        for street, street_shape in zip(
            children, _pieces(district_shape, len(children), district.code), strict=True
        ):
            add("street", street, street_shape)
            counts.streets += 1
            communities = stations_of.get(street.id, [])
            pieces = _pieces(street_shape, len(communities), street.code)
            for station, station_shape in zip(communities, pieces, strict=True):
                add("station", station, station_shape)
                counts.stations += 1
                if with_grid_cells:
                    target = target_cell_km2(area_km2(station_shape), is_village(station.name))
                    for number, cell in enumerate(
                        grid_cells(station_shape, target_km2=target, seed=_seed_of(station.code)), start=1
                    ):
                        cells.append((station, cell, number))
            if progress:
                progress(1 + len(communities))
        if progress:
            progress(1)
    counts.grid_cells = len(cells)
    await _store(database, actor, boundaries, cells)
    return counts


def _pieces(parent: MultiPolygon, n: int, code: str) -> list[MultiPolygon]:
    return partition(parent, n, _seed_of(code)) if n else []


async def _store(
    database: Database,
    actor: TenantContext,
    boundaries: list[dict[str, Any]],
    cells: list[tuple[Any, MultiPolygon, int]],
) -> None:
    tenant_id = actor.tenant_id
    insert_boundary = text(
        "INSERT INTO boundaries (tenant_id, level, node_id, scope, geom, synthetic, source) "
        "VALUES (:tenant_id, :level, :node_id, text2ltree(:scope), ST_SetSRID(ST_GeomFromWKB(:wkb), 4326), "
        ":synthetic, :source)"
    )
    for start in range(0, len(boundaries), BATCH):
        async with unit_of_work(database, actor) as session:
            await session.execute(
                insert_boundary,
                [{**row, "tenant_id": tenant_id} for row in boundaries[start : start + BATCH]],
            )
    for start in range(0, len(cells), BATCH):
        chunk = cells[start : start + BATCH]
        async with unit_of_work(database, actor) as session:
            ids = await allocate_grid_cell_ids(session, len(chunk))
            rows = [
                {
                    "tenant_id": tenant_id,
                    "id": cell_id,
                    "station_id": station.id,
                    "code": f"{station.code}-{number:02d}",
                    "name": f"{station.name}第{number}网格",
                    "scope": f"{station.scope}.g{cell_id}",
                    "wkb": shapely.to_wkb(geometry),
                }
                for cell_id, (station, geometry, number) in zip(ids, chunk, strict=True)
            ]
            await session.execute(
                text(
                    "INSERT INTO grid_cells (tenant_id, id, station_id, code, name, scope) "
                    "VALUES (:tenant_id, :id, :station_id, :code, :name, text2ltree(:scope))"
                ),
                rows,
            )
            await session.execute(
                insert_boundary,
                [
                    {
                        "tenant_id": tenant_id,
                        "level": "grid",
                        "node_id": row["id"],
                        "scope": row["scope"],
                        "wkb": row["wkb"],
                        "synthetic": True,
                        "source": "geo.synthetic",
                    }
                    for row in rows
                ],
            )
