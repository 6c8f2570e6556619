from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon

from geo.crs import (
    CRS,
    from_wgs84,
    from_wgs84_arrays,
    geometry_from_wgs84,
    geometry_to_wgs84,
    in_china,
    parse_crs,
    to_wgs84,
    to_wgs84_arrays,
)

GEOD = Geod(ellps="WGS84")

# The published vector (Wangjing, Beijing): WGS84 -> GCJ-02 -> BD-09.
WGS = (116.481499, 39.990475)
GCJ = (116.487586, 39.991754)
BD = (116.49412, 39.997716)

CITIES = {
    "Beijing": (116.397128, 39.916527),
    "Shanghai": (121.473701, 31.230416),
    "Urumqi": (87.616848, 43.825592),
    "Harbin": (126.534967, 45.803775),
    "Sanya": (109.511909, 18.252847),
    "Lhasa": (91.117212, 29.646923),
    "Kashgar": (75.989755, 39.470400),
    "Guangzhou": (113.264385, 23.129112),
    "Mohe": (122.538, 52.972),
}
ABROAD = {
    "Tokyo": (139.691706, 35.689487),
    "London": (-0.127758, 51.507351),
    "New York": (-74.005941, 40.712784),
    "Sydney": (151.209296, -33.868820),
}


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    _forward, _back, distance = GEOD.inv(a[0], a[1], b[0], b[1])
    return float(distance)


def test_published_vector_wgs84_to_gcj02_to_bd09() -> None:
    gcj = from_wgs84(*WGS, CRS.GCJ02)
    bd = from_wgs84(*WGS, CRS.BD09)
    assert gcj == pytest.approx(GCJ, abs=1e-5)
    assert bd == pytest.approx(BD, abs=1e-5)


def test_published_vector_back_to_wgs84() -> None:
    assert to_wgs84(*GCJ, CRS.GCJ02) == pytest.approx(WGS, abs=1e-5)
    assert to_wgs84(*BD, CRS.BD09) == pytest.approx(WGS, abs=1e-5)
    assert metres(to_wgs84(*GCJ, CRS.GCJ02), WGS) < 1
    assert metres(to_wgs84(*BD, CRS.BD09), WGS) < 1


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
@pytest.mark.parametrize("city", sorted(CITIES))
def test_inverse_round_trips_within_a_metre(city: str, crs: CRS) -> None:
    wgs = CITIES[city]
    shifted = from_wgs84(*wgs, crs)
    assert metres(shifted, wgs) > 50  # the systems really are offset inside China
    back = to_wgs84(*shifted, crs)
    assert metres(back, wgs) < 1
    # ... and the other way round: a point read off the Chinese map comes back to itself.
    assert metres(from_wgs84(*to_wgs84(*wgs, crs), crs), wgs) < 1


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
def test_inverse_round_trips_within_a_metre_on_a_grid_across_china(crs: CRS) -> None:
    lon, lat = np.meshgrid(np.arange(74.0, 135.0, 0.37), np.arange(18.0, 53.5, 0.29))
    lon, lat = lon.ravel(), lat.ravel()
    shifted_lon, shifted_lat = from_wgs84_arrays(lon, lat, crs)
    back_lon, back_lat = to_wgs84_arrays(shifted_lon, shifted_lat, crs)
    _forward, _back, distance = GEOD.inv(lon, lat, back_lon, back_lat)
    assert lon.size > 20_000
    assert float(np.max(distance)) < 1


@pytest.mark.parametrize("crs", list(CRS))
@pytest.mark.parametrize("place", sorted(ABROAD))
def test_points_outside_china_are_not_shifted(place: str, crs: CRS) -> None:
    point = ABROAD[place]
    assert not in_china(*point)
    assert from_wgs84(*point, crs) == point
    assert to_wgs84(*point, crs) == point


def test_wgs84_is_the_identity_and_arrays_are_not_modified_in_place() -> None:
    lon = np.array([116.4, 139.7])
    lat = np.array([39.9, 35.7])
    assert to_wgs84(116.4, 39.9, CRS.WGS84) == (116.4, 39.9)
    out_lon, out_lat = to_wgs84_arrays(lon, lat, CRS.GCJ02)
    assert lon.tolist() == [116.4, 139.7] and lat.tolist() == [39.9, 35.7]
    assert out_lon[1] == 139.7 and out_lat[1] == 35.7  # Tokyo untouched
    assert out_lon[0] != 116.4  # Beijing shifted
    empty_lon, empty_lat = to_wgs84_arrays([], [], CRS.BD09)
    assert empty_lon.size == 0 and empty_lat.size == 0


@pytest.mark.parametrize("crs", [CRS.GCJ02, CRS.BD09])
def test_a_polygon_is_converted_vertex_by_vertex_and_stays_valid(crs: CRS) -> None:
    # A community-sized polygon with a hole, in the Chinese map's coordinates.
    shell = [(116.30, 39.90), (116.32, 39.90), (116.32, 39.92), (116.31, 39.925), (116.30, 39.92)]
    hole = [(116.305, 39.905), (116.31, 39.905), (116.31, 39.91), (116.305, 39.91)]
    polygon = Polygon(shell, [hole])
    converted = geometry_to_wgs84(polygon, crs)
    assert isinstance(converted, Polygon)
    assert converted.is_valid
    assert len(converted.exterior.coords) == len(polygon.exterior.coords)
    for before, after in zip(polygon.exterior.coords, converted.exterior.coords, strict=True):
        assert after == pytest.approx(to_wgs84(before[0], before[1], crs), abs=1e-12)
    assert converted.interiors[0].coords[0] == pytest.approx(to_wgs84(*hole[0], crs), abs=1e-12)
    # The area barely changes (a smooth shift of a few hundred metres).
    assert converted.area == pytest.approx(polygon.area, rel=2e-2)
    assert converted.exterior.coords[0] == converted.exterior.coords[-1]
    back = geometry_from_wgs84(converted, crs)
    assert shapely.equals_exact(back, polygon, tolerance=1e-8)


def test_multipolygons_points_and_z_values_keep_their_type() -> None:
    multi = MultiPolygon(
        [
            Polygon([(116.3, 39.9), (116.4, 39.9), (116.4, 40.0)]),
            Polygon([(121.4, 31.2), (121.5, 31.2), (121.5, 31.3)]),
        ]
    )
    converted = geometry_to_wgs84(multi, CRS.BD09)
    assert isinstance(converted, MultiPolygon) and len(converted.geoms) == 2 and converted.is_valid
    point = geometry_to_wgs84(Point(*GCJ, 45.0), CRS.GCJ02)
    assert point.has_z and point.z == 45.0
    assert (point.x, point.y) == pytest.approx(WGS, abs=1e-5)
    assert geometry_to_wgs84(multi, CRS.WGS84) is multi


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("wgs84", CRS.WGS84),
        ("WGS-84", CRS.WGS84),
        ("CGCS2000", CRS.WGS84),
        ("EPSG:4326", CRS.WGS84),
        ("GCJ-02", CRS.GCJ02),
        ("gcj02", CRS.GCJ02),
        ("amap", CRS.GCJ02),
        ("BD-09", CRS.BD09),
        ("bd09ll", CRS.BD09),
        (CRS.BD09, CRS.BD09),
    ],
)
def test_parse_crs(name: str | CRS, expected: CRS) -> None:
    assert parse_crs(name) is expected


def test_parse_crs_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="Unknown coordinate system 'EPSG:3857'"):
        parse_crs("EPSG:3857")
