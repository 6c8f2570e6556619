"""Mapbox Vector Tiles of the grid network: districts, streets, stations, grid cells (SQL of the geo domain).

One statement per tile, run in the caller's tenant-scoped transaction, so row-level security applies on
top of the explicit filters:

- the bounding box is tested in the table's own SRID (4326) against the tile envelope transformed once,
  so the GiST index `ix_boundaries_geom` does the work; only the candidates are transformed to 3857.
  Under row-level security PostgreSQL puts a query's condition into an index scan only when its operator
  is LEAKPROOF, and PostGIS does not mark `&&` (geometry_overlaps) so: until a migration does, the
  app's roles scan the tenant's rows instead (tests/geo/test_tiles.py shows both plans);
- `tenant_id` is filtered explicitly (one shard on Citus), and only current boundary versions are drawn;
- only features INSIDE the caller's scopes are drawn (`scope <@ caller scopes`). The hierarchy policies
  also let a scoped caller read its ancestors' rows (a street user reads its district's name and shape),
  but a tile is a picture of the caller's own part of the city: the ancestors' outlines are not in it
  (a street user's `districts` tile is empty; its `streets` tile holds its street alone);
- at most `max_features` features per tile, the lowest node ids first, so a capped tile is always the
  same tile; the cap bounds the work of a tile (a zoomed-out view of tens of thousands of grid cells)
  and the result says when it was reached.

Every feature has the MVT feature id and the properties `id` (the node's id), `code`, `name`, `scope`,
`level` and `synthetic` (generated shapes, not surveyed ones).

The `heat` layer draws the same grid cells with their requests in a time window instead: `count`,
`overdue`, `resolved`, `rated`, `satisfied`, `average_rating` (cells without a request are left out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from geo.boundaries import BoundaryLevel
from geo.heat import Window

MIN_ZOOM = 0
MAX_ZOOM = 22
# Tiles are cut to this zoom in the TileJSON; clients draw deeper zooms from them (overzoom).
TILEJSON_MAX_ZOOM = 16
MAX_FEATURES = 5_000
EXTENT = 4096
BUFFER = 256
# The envelope searched is the tile plus the rendering buffer, so shapes just outside still draw their edge.
MARGIN = BUFFER / EXTENT
WORLD_BOUNDS = (-180.0, -85.0511287798066, 180.0, 85.0511287798066)

# Property name -> TileJSON field type.
FIELDS: Mapping[str, str] = {
    "id": "Number",
    "code": "String",
    "name": "String",
    "scope": "String",
    "level": "String",
    "synthetic": "Boolean",
}


@dataclass(frozen=True, slots=True)
class TileLayer:
    name: str
    level: BoundaryLevel
    table: str
    description: str
    # The lowest zoom a map should ask for: below it a tile of the urban core would reach the cap.
    minzoom: int


LAYERS: Mapping[str, TileLayer] = {
    layer.name: layer
    for layer in (
        TileLayer("districts", BoundaryLevel.DISTRICT, "districts", "District boundaries (区)", 0),
        TileLayer("streets", BoundaryLevel.STREET, "streets", "Street boundaries (街道/乡镇)", 0),
        TileLayer("stations", BoundaryLevel.STATION, "stations", "Community boundaries (社区联络站)", 9),
        TileLayer("grid", BoundaryLevel.GRID, "grid_cells", "Grid cells (网格)", 11),
    )
}


class BadTile(ValueError):
    """Tile coordinates that do not name a tile; the message is a one-line reason for the caller."""


def check_tile(z: int, x: int, y: int) -> None:
    if not MIN_ZOOM <= z <= MAX_ZOOM:
        raise BadTile(f"zoom must lie in {MIN_ZOOM}..{MAX_ZOOM}, not {z}")
    last = (1 << z) - 1
    if not (0 <= x <= last and 0 <= y <= last):
        raise BadTile(f"at zoom {z}, x and y must lie in 0..{last}")


@dataclass(frozen=True, slots=True)
class Tile:
    data: bytes
    features: int
    truncated: bool

    @property
    def empty(self) -> bool:
        return not self.data


# The envelopes are immutable expressions of bound values: PostgreSQL folds them into constants when it
# plans the statement (computed once, not per row), and the constant 4326 box is what lets the planner
# estimate the bounding-box test from the column statistics and pick the GiST index.
_TILE_SQL = """
WITH candidates AS (
  SELECT b.node_id, b.scope, b.level, b.synthetic, b.geom
  FROM boundaries b
  WHERE b.tenant_id = :tenant_id AND b.level = :level AND b.valid_to IS NULL
    AND b.scope <@ CAST(:scopes AS ltree[])
    AND b.geom && ST_Transform(
      ST_TileEnvelope(CAST(:z AS integer), CAST(:x AS integer), CAST(:y AS integer),
                      margin => CAST(:margin AS float8)),
      4326)
  ORDER BY b.node_id
  LIMIT :candidates
),
features AS (
  SELECT c.node_id AS fid, c.node_id AS id, n.code::text AS code, n.name::text AS name,
         c.scope::text AS scope, c.level::text AS level, c.synthetic,
         ST_AsMVTGeom(ST_Transform(c.geom, 3857),
                      ST_TileEnvelope(CAST(:z AS integer), CAST(:x AS integer), CAST(:y AS integer)),
                      CAST(:extent AS integer), CAST(:buffer AS integer), true) AS geom
  FROM (SELECT * FROM candidates ORDER BY node_id LIMIT :max_features) c
  JOIN {table} n ON n.tenant_id = :tenant_id AND n.id = c.node_id AND n.retired_at IS NULL
)
SELECT
  (SELECT ST_AsMVT(f, CAST(:layer AS text), CAST(:extent AS integer), 'geom', 'fid')
   FROM features f WHERE f.geom IS NOT NULL) AS data,
  (SELECT count(*) FROM features f WHERE f.geom IS NOT NULL) AS features,
  (SELECT count(*) FROM candidates) > :max_features AS truncated
"""

_BOUNDS_SQL = """
SELECT ST_XMin(e) AS west, ST_YMin(e) AS south, ST_XMax(e) AS east, ST_YMax(e) AS north FROM (
  SELECT ST_Extent(b.geom) AS e
  FROM boundaries b
  JOIN {table} n ON n.tenant_id = b.tenant_id AND n.id = b.node_id AND n.retired_at IS NULL
  WHERE b.tenant_id = :tenant_id AND b.level = :level AND b.valid_to IS NULL
    AND b.scope <@ CAST(:scopes AS ltree[])
) extent
"""

# Table names come from the fixed LAYERS mapping above, never from a request; every value is bound.
_TILE_STATEMENTS = {name: text(_TILE_SQL.format(table=layer.table)) for name, layer in LAYERS.items()}
_BOUNDS_STATEMENTS = {name: text(_BOUNDS_SQL.format(table=layer.table)) for name, layer in LAYERS.items()}


def tile_statement(layer: TileLayer) -> TextClause:
    return _TILE_STATEMENTS[layer.name]


def tile_parameters(
    layer: TileLayer,
    *,
    tenant_id: int,
    scopes: Sequence[str],
    z: int,
    x: int,
    y: int,
    max_features: int = MAX_FEATURES,
) -> dict[str, Any]:
    check_tile(z, x, y)
    if max_features < 1:
        raise ValueError("max_features must be at least 1")
    return {
        "z": z,
        "x": x,
        "y": y,
        "margin": MARGIN,
        "tenant_id": tenant_id,
        "level": layer.level.value,
        "scopes": list(scopes),
        "candidates": max_features + 1,
        "max_features": max_features,
        "extent": EXTENT,
        "buffer": BUFFER,
        "layer": layer.name,
    }


async def render_tile(
    session: AsyncSession,
    layer: TileLayer,
    *,
    tenant_id: int,
    scopes: Sequence[str],
    z: int,
    x: int,
    y: int,
    max_features: int = MAX_FEATURES,
) -> Tile:
    """The tile's MVT bytes (empty when nothing of the caller's lies there), under the session's RLS."""
    values = tile_parameters(
        layer, tenant_id=tenant_id, scopes=scopes, z=z, x=x, y=y, max_features=max_features
    )
    row = (await session.execute(tile_statement(layer), values)).one()
    return Tile(bytes(row.data or b""), int(row.features), bool(row.truncated))


async def layer_bounds(
    session: AsyncSession, layer: TileLayer, *, tenant_id: int, scopes: Sequence[str]
) -> tuple[float, float, float, float] | None:
    """West, south, east, north of the caller's current shapes in the layer; None when there are none."""
    values = {"tenant_id": tenant_id, "level": layer.level.value, "scopes": list(scopes)}
    row = (await session.execute(_BOUNDS_STATEMENTS[layer.name], values)).one()
    if row.west is None:
        return None
    return float(row.west), float(row.south), float(row.east), float(row.north)


# The heat layer: grid cells coloured by their requests in a window (see geo.heat for the statistics).

HEAT_LAYER = "heat"
HEAT_DESCRIPTION = "Requests per grid cell in a time window (热力图)"
HEAT_MINZOOM = 11
HEAT_FIELDS: Mapping[str, str] = {
    "id": "Number",
    "code": "String",
    "name": "String",
    "count": "Number",
    "overdue": "Number",
    "resolved": "Number",
    "rated": "Number",
    "satisfied": "Number",
    "average_rating": "Number",
}

# Cells as in the grid layer (caller's scopes, current shapes, box test in 4326, capped, lowest ids first);
# their requests are found through the box of those cells (the GiST index of request points), so a cell
# that straddles the tile's edge counts all its requests in every tile that draws it. Cells without a
# request in the window are left out.
_HEAT_TILE_SQL = """
WITH candidates AS (
  SELECT b.node_id, b.geom
  FROM boundaries b
  WHERE b.tenant_id = :tenant_id AND b.level = 'grid' AND b.valid_to IS NULL
    AND b.scope <@ CAST(:scopes AS ltree[])
    AND b.geom && ST_Transform(
      ST_TileEnvelope(CAST(:z AS integer), CAST(:x AS integer), CAST(:y AS integer),
                      margin => CAST(:margin AS float8)),
      4326)
  ORDER BY b.node_id
  LIMIT :candidates
),
drawn AS (SELECT * FROM candidates ORDER BY node_id LIMIT :max_features),
settings AS MATERIALIZED (
  SELECT coalesce(max(rating_threshold), 80) AS threshold FROM request_settings WHERE tenant_id = :tenant_id
),
counts AS (
  SELECT r.grid_cell_id, count(*) AS count, count(*) FILTER (WHERE r.overdue) AS overdue,
    count(*) FILTER (WHERE r.state IN ('resolved', 'closed')) AS resolved, count(r.rating) AS rated,
    count(*) FILTER (WHERE r.rating >= s.threshold) AS satisfied,
    round(avg(r.rating), 2)::float8 AS average_rating
  FROM requests r CROSS JOIN settings s
  WHERE r.tenant_id = :tenant_id AND r.scope <@ CAST(:scopes AS ltree[])
    AND r.geom && (SELECT ST_SetSRID(ST_Extent(geom)::geometry, 4326) FROM drawn)
    AND r.submitted_at >= :start AND r.submitted_at < :end
    AND r.grid_cell_id IN (SELECT node_id FROM drawn)
    AND (CAST(:categories AS text[]) IS NULL OR r.category_id IN (
      SELECT id FROM request_categories
      WHERE tenant_id = :tenant_id AND code = ANY(CAST(:categories AS text[]))))
    AND (CAST(:states AS text[]) IS NULL OR r.state = ANY(CAST(:states AS text[])))
  GROUP BY r.grid_cell_id
),
features AS (
  SELECT c.node_id AS fid, c.node_id AS id, n.code::text AS code, n.name::text AS name,
         k.count, k.overdue, k.resolved, k.rated, k.satisfied, k.average_rating,
         ST_AsMVTGeom(ST_Transform(c.geom, 3857),
                      ST_TileEnvelope(CAST(:z AS integer), CAST(:x AS integer), CAST(:y AS integer)),
                      CAST(:extent AS integer), CAST(:buffer AS integer), true) AS geom
  FROM drawn c
  JOIN counts k ON k.grid_cell_id = c.node_id
  JOIN grid_cells n ON n.tenant_id = :tenant_id AND n.id = c.node_id AND n.retired_at IS NULL
)
SELECT
  (SELECT ST_AsMVT(f, CAST(:layer AS text), CAST(:extent AS integer), 'geom', 'fid')
   FROM features f WHERE f.geom IS NOT NULL) AS data,
  (SELECT count(*) FROM features f WHERE f.geom IS NOT NULL) AS features,
  (SELECT count(*) FROM candidates) > :max_features AS truncated
"""
_HEAT_TILE_STATEMENT = text(_HEAT_TILE_SQL)


def heat_tile_statement() -> TextClause:
    return _HEAT_TILE_STATEMENT


def heat_tile_parameters(
    *,
    tenant_id: int,
    scopes: Sequence[str],
    z: int,
    x: int,
    y: int,
    start: datetime,
    end: datetime,
    categories: Sequence[str] | None = None,
    states: Sequence[str] | None = None,
    max_features: int = MAX_FEATURES,
) -> dict[str, Any]:
    """The heat tile's bound values; the window and filters are checked as geo.heat checks them."""
    window = Window(
        tenant_id,
        tuple(scopes),
        start,
        end,
        tuple(categories) if categories is not None else None,
        tuple(states) if states is not None else None,
    )
    values = tile_parameters(
        LAYERS["grid"], tenant_id=tenant_id, scopes=scopes, z=z, x=x, y=y, max_features=max_features
    )
    values.update(
        layer=HEAT_LAYER,
        start=window.start,
        end=window.end,
        categories=list(window.categories) if window.categories is not None else None,
        states=list(window.states) if window.states is not None else None,
    )
    return values


async def render_heat_tile(
    session: AsyncSession,
    *,
    tenant_id: int,
    scopes: Sequence[str],
    z: int,
    x: int,
    y: int,
    start: datetime,
    end: datetime,
    categories: Sequence[str] | None = None,
    states: Sequence[str] | None = None,
    max_features: int = MAX_FEATURES,
) -> Tile:
    """The heat tile's MVT bytes: the caller's grid cells with requests in [start, end), with counts."""
    values = heat_tile_parameters(
        tenant_id=tenant_id,
        scopes=scopes,
        z=z,
        x=x,
        y=y,
        start=start,
        end=end,
        categories=categories,
        states=states,
        max_features=max_features,
    )
    row = (await session.execute(_HEAT_TILE_STATEMENT, values)).one()
    return Tile(bytes(row.data or b""), int(row.features), bool(row.truncated))
