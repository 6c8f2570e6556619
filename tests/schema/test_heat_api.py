"""heatmap, requestStats, supervisionSummary and the heat tile over HTTP: counts, scope, refusals."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import h3
import mapbox_vector_tile  # type: ignore[import-untyped]
import pytest

from schema.relay import encode_id
from tenants.db import Database
from tests.geo.test_heat import END, START, HeatCity, build_heat_city, expected_buckets, found_buckets
from tests.helpers import Api

HEATMAP = """
query($from: DateTime!, $to: DateTime!, $bucket: HeatBucket!, $resolution: Int, $nodeId: ID,
      $categories: [String!]) {
  heatmap(from: $from, to: $to, bucket: $bucket, resolution: $resolution, nodeId: $nodeId,
          categories: $categories)
}
"""
STATS = """
query($from: DateTime!, $to: DateTime!, $groupBy: [StatDimension!]!, $nodeId: ID) {
  requestStats(from: $from, to: $to, groupBy: $groupBy, nodeId: $nodeId) {
    keys { dimension value name } count overdue resolved rated satisfied averageRating
  }
}
"""
SUPERVISION = """
query($nodeId: ID) {
  supervisionSummary(nodeId: $nodeId) { parentScope level nodeId code name scope blue yellow red total }
}
"""
MVT = "application/vnd.mapbox-vector-tile"


@pytest.fixture(scope="module")
async def city(database: Database) -> HeatCity:
    return await build_heat_city(database, "heatapi", seed=4)


def variables(**extra: Any) -> dict[str, Any]:
    return {"from": START.isoformat(), "to": END.isoformat(), "bucket": "GRID_CELL", **extra}


def admin(api: Api, city: HeatCity) -> str:
    return api.token(city.tenant, ["city_admin"])


def district_token(api: Api, city: HeatCity, index: int = 0) -> str:
    return api.token(city.tenant, ["district_staff"], [city.districts[index][2]])


def codes(errors: list[dict[str, Any]]) -> list[str]:
    return [error["extensions"]["code"] for error in errors]


async def test_the_heat_map_over_graphql_in_one_statement(api: Api, city: HeatCity) -> None:
    token = admin(api, city)
    await api.gql(HEATMAP, variables(), token)  # warm: the tenant directory, the parser cache
    with api.count_statements() as statements:
        data = await api.gql(HEATMAP, variables(), token)
    work = [s for s in statements if not s.lstrip().upper().startswith("SET LOCAL")]
    assert len(work) == 1, work
    collection = data["heatmap"]
    ids = {int(feature["id"]) for feature in collection["features"]}
    expected = expected_buckets(city.rows_in(), lambda r: r.grid_cell_id)
    assert ids == set(expected)
    assert {int(k): v for k, v in found_buckets(collection).items()} == expected


async def test_h3_over_graphql(api: Api, city: HeatCity) -> None:
    data = await api.gql(HEATMAP, variables(bucket="H3", resolution=9), admin(api, city))
    expected = expected_buckets(city.rows_in(), lambda r: h3.cell_to_parent(format(r.h3_cell, "x"), 9))
    assert found_buckets(data["heatmap"]) == expected


async def test_a_district_token_sees_no_bucket_of_the_other_district(api: Api, city: HeatCity) -> None:
    token = district_token(api, city)
    grid = (await api.gql(HEATMAP, variables(), token))["heatmap"]
    hexes = (await api.gql(HEATMAP, variables(bucket="H3", resolution=12), token))["heatmap"]
    scope = city.districts[0][2]
    mine = city.rows_in(scope=scope)
    my_cells = {r.grid_cell_id for r in mine}
    assert {f["id"] for f in grid["features"]} == my_cells
    assert sum(f["properties"]["total"] for f in grid["features"]) == len(mine)
    assert sum(f["properties"]["total"] for f in hexes["features"]) == len(mine)
    other = {r.grid_cell_id for r in city.rows_in(scope=city.districts[1][2])}
    assert other and not other & {f["id"] for f in grid["features"]}
    # Naming the other district is as if it did not exist.
    other_id = encode_id("District", city.districts[1][0])
    response = await api.post(HEATMAP, variables(nodeId=other_id), token)
    assert codes(response.json()["errors"]) == ["NOT_FOUND"]
    # The city node narrows nothing: the district's own buckets again.
    city_id = encode_id("City", city.tenant.tenant_id)
    again = (await api.gql(HEATMAP, variables(nodeId=city_id), token))["heatmap"]
    assert again == grid


async def test_a_resident_is_refused(api: Api, city: HeatCity) -> None:
    token = api.token(city.tenant, ["resident"], sub="user:77")
    for query, extra in ((HEATMAP, variables()), (STATS, {**variables(), "groupBy": ["STATE"]})):
        response = await api.post(query, extra, token)
        body = response.json()
        assert codes(body["errors"]) == ["FORBIDDEN"]
        assert body["data"] is None
    response = await api.post(SUPERVISION, {}, token)
    assert codes(response.json()["errors"]) == ["FORBIDDEN"]


async def test_no_token_is_refused(api: Api, city: HeatCity) -> None:
    response = await api.post(HEATMAP, variables())
    assert codes(response.json()["errors"]) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"bucket": "H3", "resolution": 13}, "resolution"),
        ({"bucket": "H3", "resolution": 4}, "resolution"),
        ({"bucket": "H3"}, "resolution"),
        ({"resolution": 8}, "resolution"),
        ({"to": (START + timedelta(days=367)).isoformat()}, "to"),
        ({"to": START.isoformat()}, "from"),
        ({"from": END.isoformat(), "to": START.isoformat()}, "from"),
        ({"from": "2026-06-01T00:00:00"}, "from"),
        ({"nodeId": "bm9wZQ"}, "nodeId"),
        ({"nodeId": encode_id("GridCell", 1)}, "nodeId"),
    ],
)
async def test_bad_input_is_invalid_input(
    api: Api, city: HeatCity, extra: dict[str, Any], field: str
) -> None:
    response = await api.post(HEATMAP, variables(**extra), admin(api, city))
    errors = response.json()["errors"]
    assert codes(errors) == ["INVALID_INPUT"], errors
    assert errors[0]["extensions"]["field"] == field
    assert errors[0]["message"]


async def test_request_stats_by_category(api: Api, city: HeatCity) -> None:
    data = await api.gql(STATS, {**variables(), "groupBy": ["CATEGORY"]}, district_token(api, city, 1))
    mine = city.rows_in(scope=city.districts[1][2])
    found = {row["keys"][0]["value"]: row["count"] for row in data["requestStats"]}
    assert found == dict(Counter(r.category for r in mine))
    assert all(
        row["keys"][0]["dimension"] == "CATEGORY" and row["keys"][0]["name"] for row in data["requestStats"]
    )
    response = await api.post(STATS, {**variables(), "groupBy": ["STATE", "STATE"]}, admin(api, city))
    assert codes(response.json()["errors"]) == ["INVALID_INPUT"]


async def test_supervision_summary_per_child(api: Api, city: HeatCity) -> None:
    data = await api.gql(SUPERVISION, {}, district_token(api, city))
    district_id = city.districts[0][0]
    rows = data["supervisionSummary"]
    streets = {code: street_id for street_id, code, _, d in city.streets if d == district_id}
    assert {row["code"] for row in rows} == set(streets)
    for row in rows:
        members = [r for r in city.rows if r.street_id == streets[row["code"]]]
        assert row["red"] == sum(r.supervision == "red" for r in members)
        assert row["total"] == len(members)
        assert row["nodeId"] == encode_id("Street", streets[row["code"]])
    # One street of it: its stations.
    street_id = next(iter(streets.values()))
    data = await api.gql(SUPERVISION, {"nodeId": encode_id("Street", street_id)}, district_token(api, city))
    assert {row["level"] for row in data["supervisionSummary"]} == {"station"}
    assert sum(row["total"] for row in data["supervisionSummary"]) == sum(
        r.street_id == street_id for r in city.rows
    )


# The heat tile.


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int, int]:
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return z, x, y


def heat_url(tile: tuple[int, int, int], **query: str) -> str:
    z, x, y = tile
    window = {"from": START.isoformat(), "to": END.isoformat(), **query}
    return f"/tiles/heat/{z}/{x}/{y}.mvt?" + "&".join(f"{k}={quote(v)}" for k, v in window.items())


# The test cells lie in 116.30..116.42 x 39.90..39.96, across a few z 11 tiles.
ZOOM = 11
CITY_TILE = tile_of(116.36, 39.93, ZOOM)


async def heat_features(api: Api, token: str, url: str) -> dict[int, dict[str, Any]]:
    response = await api.client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == MVT
    layers = mapbox_vector_tile.decode(response.content)
    return {f["properties"]["id"]: f["properties"] for f in layers.get("heat", {}).get("features", [])}


async def heat_everywhere(api: Api, city: HeatCity, token: str, **query: str) -> dict[int, dict[str, Any]]:
    """The features of every tile the cells touch; a cell drawn in two tiles has the same counts in both."""
    tiles = {tile_of(lon, lat, ZOOM) for cell in city.cells.values() for lon, lat in cell.exterior.coords}
    assert len(tiles) > 1
    merged: dict[int, dict[str, Any]] = {}
    for tile in sorted(tiles):
        for cell, properties in (await heat_features(api, token, heat_url(tile, **query))).items():
            assert merged.setdefault(cell, properties) == properties
    return merged


async def test_the_heat_tile_counts_per_cell(api: Api, city: HeatCity) -> None:
    found = await heat_everywhere(api, city, admin(api, city))
    expected = expected_buckets(city.rows_in(), lambda r: r.grid_cell_id)
    assert {cell: p["count"] for cell, p in found.items()} == {c: b["total"] for c, b in expected.items()}
    assert {cell: p["overdue"] for cell, p in found.items()} == {c: b["overdue"] for c, b in expected.items()}
    # A category filter, given twice over.
    found = await heat_everywhere(api, city, admin(api, city), category="parking,safety")
    rows = [r for r in city.rows_in() if r.category in ("parking", "safety")]
    assert {cell: p["count"] for cell, p in found.items()} == {
        c: b["total"] for c, b in expected_buckets(rows, lambda r: r.grid_cell_id).items()
    }


async def test_a_district_token_gets_only_its_cells_in_the_heat_tile(api: Api, city: HeatCity) -> None:
    found = await heat_everywhere(api, city, district_token(api, city))
    mine = city.rows_in(scope=city.districts[0][2])
    assert {cell: p["count"] for cell, p in found.items()} == dict(Counter(r.grid_cell_id for r in mine))
    other = {r.grid_cell_id for r in city.rows_in(scope=city.districts[1][2])}
    assert other and not other & set(found)


async def test_heat_tile_refusals_and_caching(api: Api, city: HeatCity) -> None:
    url = heat_url(CITY_TILE)
    assert (await api.client.get(url)).status_code == 401
    resident = api.token(city.tenant, ["resident"], sub="user:77")
    response = await api.client.get(url, headers={"Authorization": f"Bearer {resident}"})
    assert response.status_code == 403
    headers = {"Authorization": f"Bearer {admin(api, city)}"}
    for bad in (
        heat_url(CITY_TILE, to=(START + timedelta(days=400)).isoformat()),
        heat_url(CITY_TILE, **{"from": "yesterday"}),
        heat_url(CITY_TILE, state="lost"),
        "/tiles/heat/11/99999/1.mvt",
    ):
        response = await api.client.get(bad, headers=headers)
        assert response.status_code == 400, bad
        assert response.text
    response = await api.client.get(url, headers=headers)
    assert response.headers["cache-control"].startswith("private")
    etag = response.headers["etag"]
    again = await api.client.get(url, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    tilejson = await api.client.get("/tiles/heat.json?from=" + quote(START.isoformat()), headers=headers)
    document = tilejson.json()
    assert document["vector_layers"][0]["id"] == "heat"
    assert document["tiles"][0].endswith("/tiles/heat/{z}/{x}/{y}.mvt?from=" + quote(START.isoformat()))
