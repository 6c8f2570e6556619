"""Boundaries over GraphQL: setting one node's shape, reading GeoJSON, grid cells under a station."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from deploy.seed import seed_synthetic
from geo.crs import CRS, from_wgs84
from tests.geo.conftest import Grid
from tests.helpers import Api, TenantInfo

SET = """mutation($input: SetBoundaryInput!) { setBoundary(input: $input) { __typename
  ... on BoundaryPayload { nodeCode replacedPrevious repairs outsideParentSquareMeters
                           overlaps { code squareMeters } }
  ... on InvalidGeometryError { code message field reason repairable }
  ... on Error { code message field } } }"""
TREE = """{ districts { edges { node { id code boundary
  streets { edges { node { id code boundary(simplify: 0.001)
  stations { edges { node { id code } } } } } } } } } }"""


def square(lon: float, lat: float, size: float) -> dict[str, Any]:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {"type": "Polygon", "coordinates": [ring]}


@pytest.fixture(scope="module")
async def shapes(api: Api) -> TenantInfo:
    result = await seed_synthetic(api.config.database, "shapes", districts=1, streets=2, stations=1, seed=5)
    return TenantInfo("shapes", result.tenant_id)


async def ids(api: Api, token: str) -> dict[str, str]:
    tree = await api.gql(TREE, token=token)
    found: dict[str, str] = {}
    for district in tree["districts"]["edges"]:
        found[district["node"]["code"]] = district["node"]["id"]
        for street in district["node"]["streets"]["edges"]:
            found[street["node"]["code"]] = street["node"]["id"]
            for station in street["node"]["stations"]["edges"]:
                found[station["node"]["code"]] = station["node"]["id"]
    return found


async def set_shape(api: Api, token: str, **input: Any) -> dict[str, Any]:
    result: dict[str, Any] = (await api.gql(SET, {"input": input}, token=token))["setBoundary"]
    return result


async def test_set_read_redraw_and_report(api: Api, shapes: TenantInfo) -> None:
    admin = api.token(shapes, ["city_admin"])
    node = await ids(api, admin)
    district = await set_shape(api, admin, id=node["D001"], geometry=square(116.0, 39.0, 0.1))
    assert district["__typename"] == "BoundaryPayload" and district["replacedPrevious"] is False
    # A street sticking out of its district, and two overlapping siblings, are reported, not refused.
    first = await set_shape(api, admin, id=node["D001S001"], geometry=square(116.05, 39.0, 0.1))
    assert 40e6 < first["outsideParentSquareMeters"] < 55e6  # half of a 0.1-degree square: ~47.5 km²
    second = await set_shape(api, admin, id=node["D001S002"], geometry=square(116.0, 39.0, 0.06))
    assert second["overlaps"] and second["overlaps"][0]["code"] == "D001S001"
    redrawn = await set_shape(api, admin, id=node["D001"], geometry=square(116.0, 39.0, 0.2))
    assert redrawn["replacedPrevious"] is True

    outline = await api.gql("{ city { boundary(simplify: 0.0001) } }", token=admin)
    assert outline["city"]["boundary"]["type"] == "MultiPolygon"
    tree = await api.gql(TREE, token=admin)
    geometry = tree["districts"]["edges"][0]["node"]["boundary"]
    assert geometry["type"] == "MultiPolygon"
    ring = geometry["coordinates"][0][0]
    signed = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in itertools.pairwise(ring))
    assert signed > 0  # counter-clockwise exterior (RFC 7946)
    assert all(len(str(value).split(".")[-1]) <= 7 for point in ring for value in point)


async def test_a_gcj02_shape_is_stored_in_wgs84(api: Api, shapes: TenantInfo) -> None:
    admin = api.token(shapes, ["city_admin"])
    node = await ids(api, admin)
    corners = [(116.40, 39.90), (116.41, 39.90), (116.41, 39.91), (116.40, 39.91), (116.40, 39.90)]
    shifted = [list(from_wgs84(lon, lat, CRS.GCJ02)) for lon, lat in corners]
    result = await set_shape(
        api,
        admin,
        id=node["D001S001T001"],
        geometry={"type": "Polygon", "coordinates": [shifted]},
        crs="GCJ02",
    )
    assert result["__typename"] == "BoundaryPayload"
    found = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on Station { boundary } } }",
        {"id": node["D001S001T001"]},
        token=admin,
    )
    stored = found["node"]["boundary"]["coordinates"][0][0]
    assert min(abs(lon - 116.40) + abs(lat - 39.90) for lon, lat in stored) < 1e-6


@pytest.mark.parametrize(
    ("geometry", "reason"),
    [
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "Self-intersection"),
        ({"type": "Point", "coordinates": [116.4, 39.9]}, "Point"),
        ({"type": "Polygon", "coordinates": [[[116.4, 39.9], [116.5, 39.9], [116.5, 40.0]]]}, "ring"),
        (
            {"type": "Polygon", "coordinates": [[[39.9, 116.4], [39.9, 116.5], [40, 116.5], [39.9, 116.4]]]},
            "swapped",
        ),
        ("not geojson", "GeoJSON object"),
    ],
)
async def test_bad_shapes_are_refused_with_the_reason(
    api: Api, shapes: TenantInfo, geometry: Any, reason: str
) -> None:
    admin = api.token(shapes, ["city_admin"])
    node = await ids(api, admin)
    result = await set_shape(api, admin, id=node["D001S002"], geometry=geometry)
    assert result["__typename"] == "InvalidGeometryError", result
    assert reason.lower() in result["reason"].lower() and result["field"] == "geometry"


async def test_repair_is_opt_in_and_reported(api: Api, shapes: TenantInfo) -> None:
    admin = api.token(shapes, ["city_admin"])
    node = await ids(api, admin)
    bowtie = {
        "type": "Polygon",
        "coordinates": [[[116, 39], [116.1, 39.1], [116.1, 39], [116, 39.1], [116, 39]]],
    }
    refused = await set_shape(api, admin, id=node["D001S002"], geometry=bowtie)
    assert refused["__typename"] == "InvalidGeometryError" and refused["repairable"] is True
    repaired = await set_shape(api, admin, id=node["D001S002"], geometry=bowtie, repair=True)
    assert repaired["__typename"] == "BoundaryPayload" and "structure" in repaired["repairs"][0]


async def test_who_may_set_a_boundary(api: Api, shapes: TenantInfo, beta: TenantInfo) -> None:
    admin = api.token(shapes, ["city_admin"])
    node = await ids(api, admin)
    staff = api.token(shapes, ["district_staff"])
    assert (await set_shape(api, staff, id=node["D001"], geometry=square(116, 39, 0.1)))[
        "code"
    ] == "FORBIDDEN"
    intruder = api.token(beta, ["city_admin"])
    assert (await set_shape(api, intruder, id=node["D001"], geometry=square(116, 39, 0.1)))[
        "code"
    ] == "NOT_FOUND"
    too_coarse = await api.post("{ city { boundary(simplify: 5) } }", token=admin)
    assert too_coarse.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    bad = await set_shape(api, admin, id="garbage", geometry=square(116, 39, 0.1))
    assert bad["code"] == "INVALID_INPUT" and bad["field"] == "id"


async def test_grid_cells_under_a_station_and_by_id(api: Api, grid: Grid) -> None:
    admin = api.token(grid.tenant, ["city_admin"])
    query = """{ stations { edges { node { code gridCells { id code scope station { code }
        boundary(simplify: 0.0001) } } } } }"""
    with api.count_statements() as statements:
        data = await api.gql(query, token=admin)
    stations = [edge["node"] for edge in data["stations"]["edges"]]
    first, second = stations[0]["gridCells"], stations[1]["gridCells"]
    assert [cell["code"] for cell in first] == ["G-A", "G-B"]
    assert [cell["code"] for cell in second] == ["G-C", "G-D"]
    assert all(cell["boundary"]["type"] == "MultiPolygon" for cell in first + second)
    business = [s for s in statements if not s.startswith(("SET LOCAL", "SELECT liaison_tenant_id"))]
    assert len(business) == 3, [s[:60] for s in business]  # stations, cells, shapes: no N+1
    found = await api.gql(
        "query($id: ID!) { node(id: $id) { ... on GridCell { code } } }", {"id": first[0]["id"]}, token=admin
    )
    assert found["node"] == {"code": "G-A"}
    outsider = api.token(grid.tenant, ["station_liaison"], [grid.stations[1][1]])
    hidden = await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": first[0]["id"]}, token=outsider)
    assert hidden == {"node": None}
