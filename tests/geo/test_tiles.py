"""Vector tiles of the grid network: decoded features, scope isolation, caching, refusals, TileJSON, plans."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import mapbox_vector_tile  # type: ignore[import-untyped]
import psycopg
import pytest
from shapely import MultiPolygon, box
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette

from deploy.seed import seed_synthetic
from geo.boundaries import BoundaryLevel, set_boundary
from geo.tiles import LAYERS, MAX_FEATURES, WORLD_BOUNDS, render_tile, tile_parameters, tile_statement
from schema.context import ApiConfig
from schema.tiles import etag_of, tile_routes, tilejson_document
from services.hierarchy import repository
from services.hierarchy.repository import Level
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database, async_url
from tests.geo.conftest import GIST_INDEX, Grid
from tests.helpers import Api, TenantInfo

MVT = "application/vnd.mapbox-vector-tile"
CORNER = (116.40, 39.90)  # where cells A, B (station 1) and C, D (station 2) meet
BLOCK = (117.01, 40.01)  # the middle of the 400 small cells of station 3


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    """The slippy-map tile holding a WGS84 point."""
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return z, x, y


def url(layer: str, tile: tuple[int, int, int]) -> str:
    z, x, y = tile
    return f"/tiles/{layer}/{z}/{x}/{y}.mvt"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def decode(data: bytes) -> dict[str, list[dict[str, Any]]]:
    layers: dict[str, Any] = mapbox_vector_tile.decode(data)
    return {name: layer["features"] for name, layer in layers.items()}


async def features(client: httpx.AsyncClient, layer: str, tile: tuple[int, int, int], token: str) -> Any:
    response = await client.get(url(layer, tile), headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == MVT
    return decode(response.content).get(layer, [])


def codes(found: list[dict[str, Any]]) -> set[str]:
    return {feature["properties"]["code"] for feature in found}


def within(scope: str, ancestor: str) -> bool:
    return scope == ancestor or scope.startswith(ancestor + ".")


# ---- the grid layer, on the shared geoville grid ------------------------------------------------------


async def test_a_grid_tile_holds_the_cells_with_their_properties(api: Api, grid: Grid) -> None:
    token = api.token(grid.tenant, ["city_admin"])
    found = await features(api.client, "grid", tile_of(*CORNER, 14), token)
    by_code = {feature["properties"]["code"]: feature for feature in found}
    assert {"G-A", "G-B", "G-C", "G-D"} <= set(by_code)
    a = by_code["G-A"]
    assert a["id"] == grid.cells["A"]
    assert a["geometry"]["type"] in {"Polygon", "MultiPolygon"}
    properties = a["properties"]
    assert properties["id"] == grid.cells["A"]
    assert properties["name"] == "网格A"
    assert properties["level"] == "grid"
    assert properties["synthetic"] is False
    assert within(properties["scope"], grid.stations[0][1])
    assert properties["scope"].endswith(f".g{grid.cells['A']}")
    for feature in found:
        assert {"id", "code", "name", "scope", "level"} <= set(feature["properties"])


async def test_a_zoomed_out_tile_holds_the_whole_block(api: Api, grid: Grid) -> None:
    tile = tile_of(*BLOCK, 12)
    assert tile_of(117.0, 40.0, 12) == tile_of(117.02, 40.02, 12) == tile  # the block fits one tile
    found = await features(api.client, "grid", tile, api.token(grid.tenant, ["city_admin"]))
    assert {f"G-{i}-{j}" for i in range(20) for j in range(20)} <= codes(found)


async def test_a_station_token_sees_only_its_stations_cells(api: Api, grid: Grid) -> None:
    station_one = grid.stations[0][1]
    token = api.token(grid.tenant, ["station_liaison"], [station_one])
    found = await features(api.client, "grid", tile_of(*CORNER, 14), token)
    assert {"G-A", "G-B"} <= codes(found)
    assert not {"G-C", "G-D"} & codes(found)
    assert all(within(feature["properties"]["scope"], station_one) for feature in found)
    # The 400 cells of station 3 are nowhere in station 1's tiles.
    assert await features(api.client, "grid", tile_of(*BLOCK, 12), token) == []


async def test_a_tile_with_nothing_of_the_callers_is_an_empty_200(api: Api, grid: Grid) -> None:
    station_three = grid.stations[2][1]
    token = api.token(grid.tenant, ["station_liaison"], [station_three])
    response = await api.client.get(url("grid", tile_of(*CORNER, 14)), headers=bearer(token))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == MVT
    assert response.headers["etag"] == etag_of(b"")


async def test_another_tenant_sees_nothing_of_geoville(api: Api, grid: Grid, alpha: TenantInfo) -> None:
    token = api.token(alpha, ["city_admin"])
    for layer in LAYERS:
        for tile in (tile_of(*CORNER, 14), tile_of(*BLOCK, 12), (0, 0, 0)):
            found = await features(api.client, layer, tile, token)
            assert not any(within(f["properties"]["scope"], grid.tenant.scope) for f in found)
            assert not codes(found) & {"G-A", "G-B", "G-C", "G-D", "G-0-0"}


async def test_a_scope_of_another_tenant_is_forbidden(api: Api, grid: Grid, alpha: TenantInfo) -> None:
    token = api.token(alpha, ["city_admin"], [grid.tenant.scope])
    response = await api.client.get(url("grid", tile_of(*CORNER, 14)), headers=bearer(token))
    assert response.status_code == 403
    assert response.text == f"scope {grid.tenant.scope} lies outside tenant 'alpha'"
    assert (await api.post("{ __typename }", token=token)).text == response.text


# ---- districts, streets and stations, on a tenant of their own ----------------------------------------


@dataclass
class Town:
    tenant: TenantInfo
    district: tuple[str, str]  # code, scope
    streets: list[tuple[str, str]]
    stations: list[tuple[str, str]]


# A district of 0.1 x 0.1 degree near Shanghai, two streets (west and east halves), two stations each.
WEST, SOUTH, SIZE = 121.40, 31.20, 0.1


@pytest.fixture(scope="module")
async def town(database: Database) -> Town:
    result = await seed_synthetic(database, "tileville", districts=1, streets=2, stations=2, seed=5)
    tenant = TenantInfo("tileville", result.tenant_id)
    context = TenantContext.whole_tenant(tenant.tenant_id, "system:test")
    nodes: dict[Level, list[Any]] = {}
    async with unit_of_work(database, context) as session:
        for level in Level:
            page = await repository.page_of_all(
                session, level, tenant.tenant_id, repository.PageArgs(first=10)
            )
            nodes[level] = sorted(page.rows, key=lambda row: row.code)

        async def draw(
            level: BoundaryLevel,
            row: Any,
            west: float,
            south: float,
            east: float,
            north: float = SOUTH + SIZE,
        ) -> None:
            shape = MultiPolygon([box(west, south, east, north)])
            await set_boundary(
                session,
                tenant_id=tenant.tenant_id,
                level=level,
                node_id=row.id,
                scope=row.scope,
                geometry=shape,
                synthetic=True,
            )

        await draw(BoundaryLevel.DISTRICT, nodes[Level.DISTRICT][0], WEST, SOUTH, WEST + SIZE)
        half = SIZE / 2
        for s, street in enumerate(nodes[Level.STREET]):
            await draw(BoundaryLevel.STREET, street, WEST + s * half, SOUTH, WEST + (s + 1) * half)
            children = [row for row in nodes[Level.STATION] if row.scope.startswith(street.scope + ".")]
            for t, station in enumerate(sorted(children, key=lambda row: row.code)):
                # Two stations per street: the south and the north half of it (north edge shared).
                west = WEST + s * half
                south = SOUTH + t * half
                await draw(BoundaryLevel.STATION, station, west, south, west + half, south + half)
    return Town(
        tenant,
        (nodes[Level.DISTRICT][0].code, nodes[Level.DISTRICT][0].scope),
        [(row.code, row.scope) for row in nodes[Level.STREET]],
        [(row.code, row.scope) for row in nodes[Level.STATION]],
    )


def town_tile(z: int = 10) -> tuple[int, int, int]:
    tile = tile_of(WEST + SIZE / 2, SOUTH + SIZE / 2, z)
    assert (
        tile_of(WEST + 1e-6, SOUTH + 1e-6, z) == tile_of(WEST + SIZE - 1e-6, SOUTH + SIZE - 1e-6, z) == tile
    )
    return tile


async def test_each_level_has_its_layer(api: Api, town: Town) -> None:
    token = api.token(town.tenant, ["city_admin"])
    districts = await features(api.client, "districts", town_tile(), token)
    assert codes(districts) == {town.district[0]}
    assert districts[0]["properties"]["level"] == "district"
    assert districts[0]["properties"]["scope"] == town.district[1]
    assert districts[0]["properties"]["synthetic"] is True
    streets = await features(api.client, "streets", town_tile(), token)
    assert codes(streets) == {code for code, _ in town.streets}
    stations = await features(api.client, "stations", town_tile(), token)
    assert codes(stations) == {code for code, _ in town.stations}
    assert all(feature["properties"]["name"].endswith("社区") for feature in stations)


async def test_a_street_user_sees_its_street_and_not_its_district(api: Api, town: Town) -> None:
    code, scope = town.streets[0]
    token = api.token(town.tenant, ["street_staff"], [scope])
    # The district row is readable (an ancestor), but a tile draws only the caller's own part of the city.
    assert await features(api.client, "districts", town_tile(), token) == []
    assert codes(await features(api.client, "streets", town_tile(), token)) == {code}
    stations = await features(api.client, "stations", town_tile(), token)
    assert codes(stations) == {c for c, s in town.stations if within(s, scope)}
    assert len(stations) == 2 and all(within(f["properties"]["scope"], scope) for f in stations)


async def test_a_user_with_two_scopes_sees_both(api: Api, town: Town) -> None:
    scopes = [town.stations[0][1], town.stations[-1][1]]
    token = api.token(town.tenant, ["station_liaison"], scopes)
    found = await features(api.client, "stations", town_tile(), token)
    assert codes(found) == {town.stations[0][0], town.stations[-1][0]}


# ---- caching ----------------------------------------------------------------------------------------


async def test_tiles_carry_a_strong_etag_and_honour_if_none_match(api: Api, grid: Grid) -> None:
    token = api.token(grid.tenant, ["city_admin"])
    path = url("grid", tile_of(*CORNER, 14))
    first = await api.client.get(path, headers=bearer(token))
    etag = first.headers["etag"]
    assert etag == etag_of(first.content) and etag.startswith('"') and not etag.startswith("W/")
    assert first.headers["cache-control"] == "private, max-age=60"
    assert first.headers["vary"] == "Authorization"
    again = await api.client.get(path, headers={**bearer(token), "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag and again.headers["cache-control"] == "private, max-age=60"
    listed = await api.client.get(path, headers={**bearer(token), "If-None-Match": f'"x", W/{etag}'})
    assert listed.status_code == 304
    stale = await api.client.get(path, headers={**bearer(token), "If-None-Match": '"0123"'})
    assert stale.status_code == 200 and stale.content == first.content
    # Another scope draws another tile: its ETag differs, so a shared cache could never mix them up.
    scoped = api.token(grid.tenant, ["station_liaison"], [grid.stations[0][1]])
    other = await api.client.get(path, headers={**bearer(scoped), "If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag


# ---- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/tiles/grid/a/0/0.mvt", "z must be a non-negative integer, not 'a'"),
        ("/tiles/grid/1/1.5/0.mvt", "x must be a non-negative integer, not '1.5'"),
        ("/tiles/grid/1/0/-1.mvt", "y must be a non-negative integer, not '-1'"),
        ("/tiles/grid/%2B1/0/0.mvt", "z must be a non-negative integer, not '+1'"),
        ("/tiles/grid/23/0/0.mvt", "zoom must lie in 0..22, not 23"),
        ("/tiles/grid/2/4/0.mvt", "at zoom 2, x and y must lie in 0..3"),
        ("/tiles/grid/2/0/4.mvt", "at zoom 2, x and y must lie in 0..3"),
        ("/tiles/grid/0/1/0.mvt", "at zoom 0, x and y must lie in 0..0"),
        ("/tiles/grid/3/0/99999999999.mvt", "at zoom 3, x and y must lie in 0..7"),
        ("/tiles/grid/3/0/" + "9" * 5000 + ".mvt", "y is out of range"),
        ("/tiles/grid/22/4194304/0.mvt", "at zoom 22, x and y must lie in 0..4194303"),
    ],
)
async def test_bad_tile_coordinates_are_a_400(api: Api, grid: Grid, path: str, says: str) -> None:
    response = await api.client.get(path, headers=bearer(api.token(grid.tenant, ["city_admin"])))
    assert response.status_code == 400
    assert response.text == says


@pytest.mark.parametrize(
    "path", ["/tiles/grid/0/0/0.mvt", "/tiles/grid/22/4194303/4194303.mvt", "/tiles/grid/012/0/0.mvt"]
)
async def test_the_corners_of_the_tile_space_are_tiles(api: Api, grid: Grid, path: str) -> None:
    response = await api.client.get(path, headers=bearer(api.token(grid.tenant, ["city_admin"])))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/tiles/roads/1/0/0.mvt", "/tiles/roads.json", "/tiles/grid/1/0/0.pbf"])
async def test_an_unknown_layer_is_a_404(api: Api, grid: Grid, path: str) -> None:
    response = await api.client.get(path, headers=bearer(api.token(grid.tenant, ["city_admin"])))
    assert response.status_code == 404


async def test_no_token_is_a_401(api: Api) -> None:
    for path in ("/tiles/grid/1/0/0.mvt", "/tiles/grid.json"):
        response = await api.client.get(path)
        assert response.status_code == 401
        assert response.text == "sign in first: send 'Authorization: Bearer <token>'"
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("kind", ["malformed", "expired", "scheme", "tenant"])
async def test_an_invalid_token_is_a_401_with_the_same_reason_as_graphql(
    api: Api, grid: Grid, kind: str
) -> None:
    token = {
        "malformed": "not-a-token",
        "expired": api.token(grid.tenant, ["city_admin"], ttl=timedelta(seconds=-120)),
        "scheme": "",
        "tenant": api.token("nowhere", ["city_admin"]),
    }[kind]
    header = {"Authorization": "Basic abc"} if kind == "scheme" else bearer(token)
    response = await api.client.get(url("grid", tile_of(*CORNER, 14)), headers=header)
    assert response.status_code == 401
    assert "\n" not in response.text and response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    graphql = await api.client.post("/graphql", json={"query": "{ __typename }"}, headers=header)
    assert (graphql.status_code, graphql.text) == (401, response.text)


# ---- the feature cap --------------------------------------------------------------------------------


async def test_the_feature_cap_holds(api_config: ApiConfig, database: Database, grid: Grid) -> None:
    app = Starlette(routes=tile_routes(api_config, max_features=7))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        token = api_config.tokens.issue(
            sub="operator:test",
            tenant=grid.tenant.code,
            scopes=[grid.stations[2][1]],
            roles=["station_liaison"],
            ttl=timedelta(minutes=5),
        )
        response = await client.get(url("grid", tile_of(*BLOCK, 12)), headers=bearer(token))
        assert response.status_code == 200
        assert response.headers["x-tile-truncated"] == "true"
        capped = decode(response.content)["grid"]
        # The lowest node ids first, so a capped tile is always the same tile.
        block = sorted(await _block_ids(database, grid))
        assert sorted(feature["id"] for feature in capped) == block[:7]
        small = await client.get(url("grid", tile_of(*CORNER, 14)), headers=bearer(token))
        assert "x-tile-truncated" not in small.headers

    context = TenantContext.whole_tenant(grid.tenant.tenant_id, "system:test")
    async with database.scoped(context) as session:
        layer = LAYERS["grid"]
        tenant_id, scopes = grid.tenant.tenant_id, [grid.tenant.scope]
        z, x, y = tile_of(*BLOCK, 12)
        tile = await render_tile(
            session, layer, tenant_id=tenant_id, scopes=scopes, z=z, x=x, y=y, max_features=50
        )
        assert (tile.features, tile.truncated) == (50, True)
        assert len(decode(tile.data)["grid"]) == 50
        whole = await render_tile(session, layer, tenant_id=tenant_id, scopes=scopes, z=z, x=x, y=y)
        assert whole.features >= 400 and not whole.truncated


async def _block_ids(database: Database, grid: Grid) -> list[int]:
    context = TenantContext(grid.tenant.tenant_id, (grid.stations[2][1],), "system:test")
    z, x, y = tile_of(*BLOCK, 12)
    async with database.scoped(context) as session:
        found = await render_tile(
            session,
            LAYERS["grid"],
            tenant_id=grid.tenant.tenant_id,
            scopes=[grid.stations[2][1]],
            z=z,
            x=x,
            y=y,
        )
    return [feature["id"] for feature in decode(found.data)["grid"]]


# ---- TileJSON ---------------------------------------------------------------------------------------


async def test_tilejson_describes_the_layer_and_the_callers_bounds(api: Api, grid: Grid) -> None:
    token = api.token(grid.tenant, ["city_admin"])
    response = await api.client.get("/tiles/grid.json", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "private, max-age=60"
    document = response.json()
    assert document["tilejson"] == "3.0.0"
    assert document["tiles"] == ["http://testserver/tiles/grid/{z}/{x}/{y}.mvt"]
    assert 0 <= document["minzoom"] <= document["maxzoom"] <= 22
    assert document["vector_layers"][0]["id"] == "grid"
    assert {"code", "name", "scope", "level", "id"} <= set(document["vector_layers"][0]["fields"])
    west, south, east, north = document["bounds"]
    assert west <= 116.39 and south <= 39.89 and east >= 117.02 and north >= 40.02

    scoped = api.token(grid.tenant, ["station_liaison"], [grid.stations[0][1]])
    own = (await api.client.get("/tiles/grid.json", headers=bearer(scoped))).json()
    assert own["bounds"] == pytest.approx([116.39, 39.89, 116.41, 39.90], abs=2e-6)

    again = await api.client.get(
        "/tiles/grid.json", headers={**bearer(token), "If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304


def test_tilejson_of_a_caller_with_no_shapes_spans_the_world() -> None:
    document = tilejson_document(LAYERS["districts"], "https://grid.example/api/", None)
    assert document["bounds"] == list(WORLD_BOUNDS)
    assert document["tiles"] == ["https://grid.example/api/tiles/districts/{z}/{x}/{y}.mvt"]
    json.dumps(document)


# ---- the plan, on a tenant of realistic density ---------------------------------------------------------

DENSE = (118.0, 41.0)  # south-west corner of 100 x 200 cells of 0.001 degree
DENSE_COLUMNS, DENSE_ROWS = 100, 200


@dataclass
class Dense:
    tenant: TenantInfo
    station_scope: str


@pytest.fixture(scope="module")
async def dense(database: Database, owner_dsn: str) -> Dense:
    """20,000 grid cells written set-based, so the planner sees a table worth an index."""
    result = await seed_synthetic(database, "tiledense", districts=1, streets=1, stations=1, seed=3)
    tenant = TenantInfo("tiledense", result.tenant_id)
    context = TenantContext.whole_tenant(tenant.tenant_id, "system:test")
    async with unit_of_work(database, context) as session:
        page = await repository.page_of_all(
            session, Level.STATION, tenant.tenant_id, repository.PageArgs(first=1)
        )
        station = page.rows[0]
        await session.execute(
            text(
                """
                WITH cells AS (
                  SELECT nextval(pg_get_serial_sequence('grid_cells', 'id')) AS id, i, j
                  FROM generate_series(0, :columns - 1) i, generate_series(0, :rows - 1) j
                ), inserted AS (
                  INSERT INTO grid_cells (tenant_id, id, station_id, code, name, scope)
                  SELECT :tenant_id, id, :station_id, 'H-' || i || '-' || j, '密格' || i || '-' || j,
                         text2ltree(:scope || '.g' || id)
                  FROM cells
                  RETURNING id, scope
                )
                INSERT INTO boundaries (tenant_id, level, node_id, scope, geom, synthetic)
                SELECT :tenant_id, 'grid', inserted.id, inserted.scope,
                       ST_Multi(ST_MakeEnvelope(:west + i * 0.001, :south + j * 0.001,
                                                :west + (i + 1) * 0.001, :south + (j + 1) * 0.001, 4326)),
                       true
                FROM inserted JOIN cells USING (id)
                """
            ),
            {
                "tenant_id": tenant.tenant_id,
                "station_id": station.id,
                "scope": station.scope,
                "columns": DENSE_COLUMNS,
                "rows": DENSE_ROWS,
                "west": DENSE[0],
                "south": DENSE[1],
            },
        )
    async with await psycopg.AsyncConnection.connect(owner_dsn, autocommit=True) as owner:
        await owner.execute("ANALYZE boundaries")
        await owner.execute("ANALYZE grid_cells")
    return Dense(tenant, station.scope)


async def test_a_crowded_tile_stops_at_the_default_cap(api: Api, dense: Dense) -> None:
    tile = tile_of(DENSE[0] + 0.05, DENSE[1] + 0.1, 12)
    response = await api.client.get(
        url("grid", tile), headers=bearer(api.token(dense.tenant, ["city_admin"]))
    )
    assert response.status_code == 200 and response.headers["x-tile-truncated"] == "true"
    found = decode(response.content)["grid"]
    assert len(found) == MAX_FEATURES
    assert all(feature["properties"]["code"].startswith("H-") for feature in found)


def explain(layer_name: str) -> Any:
    return text("EXPLAIN (FORMAT JSON) " + tile_statement(LAYERS[layer_name]).text)


def values_for(tenant: TenantInfo, scopes: tuple[str, ...], tile: tuple[int, int, int]) -> dict[str, Any]:
    z, x, y = tile
    return tile_parameters(LAYERS["grid"], tenant_id=tenant.tenant_id, scopes=scopes, z=z, x=x, y=y)


async def test_the_tile_query_is_shaped_for_the_gist_index(owner_dsn: str, dense: Dense) -> None:
    """Without row-level security in the way (the owner bypasses it) the planner takes the GiST index:
    the bounding box is a constant in the column's SRID."""
    tile = tile_of(DENSE[0] + 0.05, DENSE[1] + 0.1, 14)
    engine = create_async_engine(async_url(owner_dsn))
    try:
        async with engine.connect() as connection:
            found = await connection.execute(
                explain("grid"), values_for(dense.tenant, (dense.tenant.scope,), tile)
            )
            plan = json.dumps(found.scalar())
    finally:
        await engine.dispose()
    assert GIST_INDEX.search(plan), plan


async def plan_as_app(
    database: Database, tenant: TenantInfo, scopes: tuple[str, ...], tile: tuple[int, int, int]
) -> str:
    async with database.scoped(TenantContext(tenant.tenant_id, scopes, "user:1")) as session:
        return json.dumps((await session.execute(explain("grid"), values_for(tenant, scopes, tile))).scalar())


async def test_under_row_level_security_the_tile_query_uses_the_gist_index(
    database: Database, dense: Dense, grid: Grid
) -> None:
    tile = tile_of(DENSE[0] + 0.05, DENSE[1] + 0.1, 14)
    assert GIST_INDEX.search(await plan_as_app(database, dense.tenant, (dense.tenant.scope,), tile))
    scopes = (grid.stations[0][1],)
    assert GIST_INDEX.search(await plan_as_app(database, grid.tenant, scopes, tile_of(*CORNER, 14)))
