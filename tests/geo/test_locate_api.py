"""locate over GraphQL: coordinate systems, outside points, scope, bad input."""

from __future__ import annotations

import pytest

from geo.crs import CRS, from_wgs84
from tests.geo.conftest import Grid
from tests.helpers import Api, TenantInfo

LOCATE = """query($lon: Float!, $lat: Float!, $crs: CRS) { locate(lon: $lon, lat: $lat, crs: $crs) {
  gridCell { code } station { code } street { code } district { code }
  unassigned outsideScope nearestGridCell { code } distanceMeters } }"""


@pytest.mark.parametrize("crs", [CRS.WGS84, CRS.GCJ02, CRS.BD09])
async def test_a_point_in_any_coordinate_system_finds_its_cell(api: Api, grid: Grid, crs: CRS) -> None:
    lon, lat = from_wgs84(116.405, 39.905, crs)  # inside cell D
    token = api.token(grid.tenant, ["city_admin"])
    found = (await api.gql(LOCATE, {"lon": lon, "lat": lat, "crs": crs.value}, token=token))["locate"]
    assert found["gridCell"] == {"code": "G-D"}
    assert found["station"]["code"].endswith("T002")
    assert found["street"]["code"] == "D001S001" and found["district"]["code"] == "D001"
    assert (found["unassigned"], found["outsideScope"], found["nearestGridCell"]) == (False, False, None)


async def test_outside_every_cell_gives_the_nearest(api: Api, grid: Grid) -> None:
    token = api.token(grid.tenant, ["city_admin"])
    found = (await api.gql(LOCATE, {"lon": 116.45, "lat": 39.895}, token=token))["locate"]
    assert found["unassigned"] is True and found["gridCell"] is None and found["station"] is None
    assert found["nearestGridCell"] == {"code": "G-B"}
    assert 3_300 < found["distanceMeters"] < 3_500


async def test_outside_the_callers_scope_says_only_that(api: Api, grid: Grid) -> None:
    station_one = grid.stations[0][1]
    token = api.token(grid.tenant, ["station_liaison"], [station_one])
    found = (await api.gql(LOCATE, {"lon": 116.405, "lat": 39.905}, token=token))["locate"]
    assert found == {
        "gridCell": None,
        "station": None,
        "street": None,
        "district": None,
        "unassigned": False,
        "outsideScope": True,
        "nearestGridCell": None,
        "distanceMeters": None,
    }
    own = (await api.gql(LOCATE, {"lon": 116.395, "lat": 39.895}, token=token))["locate"]
    assert own["gridCell"] == {"code": "G-A"}


@pytest.mark.parametrize(
    ("lon", "lat", "says"),
    [(39.9, 116.4, "swapped"), (200.0, 10.0, "must lie in"), (100.0, -95.0, "must lie in")],
)
async def test_bad_points_are_refused_with_a_reason(
    api: Api, grid: Grid, lon: float, lat: float, says: str
) -> None:
    response = await api.post(LOCATE, {"lon": lon, "lat": lat}, token=api.token(grid.tenant, ["city_admin"]))
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "INVALID_INPUT" and says in error["message"]


async def test_locate_needs_a_token(api: Api) -> None:
    response = await api.post(LOCATE, {"lon": 116.4, "lat": 39.9})
    assert response.status_code == 401


async def test_locate_costs_two_statements(api: Api, grid: Grid) -> None:
    """The cell lookup reads the station, street and district too; the API asks for nothing more."""
    token = api.token(grid.tenant, ["city_admin"])
    await api.gql(LOCATE, {"lon": 116.405, "lat": 39.905}, token=token)  # the tenant lookup is cached now
    with api.count_statements() as statements:
        found = (await api.gql(LOCATE, {"lon": 116.405, "lat": 39.905}, token=token))["locate"]
    assert found["district"]["code"] == "D001"
    assert len(statements) == 2, statements  # SET LOCAL and the lookup


async def test_a_resident_locates_inside_their_home_and_learns_no_more_elsewhere(
    api: Api, grid: Grid, alpha: TenantInfo
) -> None:
    """A resident (their token's scope: their home station) is told the placement of a point in their home,
    as staff of that station are; elsewhere in the city only outsideScope; outside every cell, the nearest
    cell of their home. Anonymous callers are told nothing (401, above)."""
    home = grid.stations[0][1]
    resident = api.token(grid.tenant, ["resident"], [home], sub="user:9701")
    own = (await api.gql(LOCATE, {"lon": 116.395, "lat": 39.895}, token=resident))["locate"]
    assert own["gridCell"] == {"code": "G-A"} and own["outsideScope"] is False
    assert (
        own["station"]["code"] and own["street"]["code"] == "D001S001" and own["district"]["code"] == "D001"
    )
    elsewhere = (await api.gql(LOCATE, {"lon": 116.405, "lat": 39.905}, token=resident))["locate"]
    assert (elsewhere["outsideScope"], elsewhere["gridCell"], elsewhere["station"]) == (True, None, None)
    nowhere = (await api.gql(LOCATE, {"lon": 116.45, "lat": 39.895}, token=resident))["locate"]
    assert nowhere["unassigned"] is True and nowhere["nearestGridCell"] == {"code": "G-B"}
    # Nothing of another tenant's grid: its cells neither place the point nor hide it.
    stranger = api.token(alpha, ["resident"], sub="user:9702")
    foreign = (await api.post(LOCATE, {"lon": 116.395, "lat": 39.895}, token=stranger)).json()
    assert (
        foreign["data"]["locate"]["outsideScope"] is False and foreign["data"]["locate"]["gridCell"] is None
    )
