from __future__ import annotations

import json
from typing import Any

import pytest
import shapely
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from geo.crs import CRS, to_wgs84
from geo.validation import (
    GeometryRefused,
    ValidatedGeometry,
    geojson_srid,
    orient_rfc7946,
    to_geojson,
    validate_polygonal,
)

# A block in Dongcheng, Beijing, counter-clockwise.
SQUARE = [[116.40, 39.90], [116.41, 39.90], [116.41, 39.91], [116.40, 39.91], [116.40, 39.90]]
HOLE = [[116.402, 39.902], [116.402, 39.904], [116.404, 39.904], [116.404, 39.902], [116.402, 39.902]]
BOWTIE = [[116.4, 39.9], [116.5, 40.0], [116.5, 39.9], [116.4, 40.0], [116.4, 39.9]]


def polygon(*rings: list[list[Any]], **extra: Any) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [list(ring) for ring in rings], **extra}


def refusal(value: Any, **options: Any) -> GeometryRefused:
    with pytest.raises(GeometryRefused) as caught:
        validate_polygonal(value, **options)
    assert str(caught.value) == caught.value.reason
    return caught.value


# --- accepted input ----------------------------------------------------------------------------------------


def test_a_valid_polygon_is_promoted_to_a_multipolygon() -> None:
    result = validate_polygonal(polygon(SQUARE, HOLE))
    assert isinstance(result, ValidatedGeometry)
    assert isinstance(result.geometry, MultiPolygon)
    assert len(result.geometry.geoms) == 1
    assert result.geometry.geoms[0].equals(Polygon(SQUARE, [HOLE]))
    assert result.repairs == [] and not result.repaired


@pytest.mark.parametrize(
    "value",
    [
        {"type": "MultiPolygon", "coordinates": [[SQUARE], [[[x + 0.02, y] for x, y in SQUARE]]]},
        {"type": "Feature", "properties": {"code": "110101"}, "geometry": polygon(SQUARE)},
        json.dumps(polygon(SQUARE)),
        Polygon(SQUARE),
        MultiPolygon([Polygon(SQUARE)]),
        polygon([[*position, 44.5] for position in SQUARE]),  # an altitude is allowed, and dropped
        polygon(SQUARE, crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}),
        polygon(SQUARE, crs={"type": "name", "properties": {"name": "EPSG:4326"}}),
    ],
)
def test_accepted_inputs(value: Any) -> None:
    result = validate_polygonal(value)
    assert isinstance(result.geometry, MultiPolygon)
    assert result.geometry.is_valid and not result.geometry.has_z
    assert result.geometry.geoms[0].equals(Polygon(SQUARE))


def test_a_declared_srid_of_4326_is_accepted() -> None:
    assert validate_polygonal(polygon(SQUARE), srid=4326).geometry.is_valid
    assert validate_polygonal(shapely.set_srid(Polygon(SQUARE), 4326)).geometry.is_valid


def test_gcj02_input_is_converted_to_wgs84_after_the_checks() -> None:
    result = validate_polygonal(polygon(SQUARE), crs=CRS.GCJ02)
    first = result.geometry.geoms[0].exterior.coords[0]
    assert first == pytest.approx(to_wgs84(116.40, 39.90, CRS.GCJ02), abs=1e-12)
    assert result.geometry.is_valid


# --- refusals, each with its own message -------------------------------------------------------------------


def test_self_intersection_is_refused_with_the_point() -> None:
    refused = refusal(polygon(BOWTIE))
    assert refused.code == "self_intersection"
    assert refused.reason == "Self-intersection at or near point 116.45 39.95"
    assert refused.repairable


def test_overlapping_parts_of_a_multipolygon_are_refused() -> None:
    refused = refusal(MultiPolygon([box(116.40, 39.90, 116.42, 39.92), box(116.41, 39.91, 116.43, 39.93)]))
    assert refused.code == "self_intersection"
    assert refused.reason.startswith("Self-intersection at or near point 116.4")


def test_a_hole_outside_its_shell_is_refused() -> None:
    outside = [[x + 1, y] for x, y in HOLE]
    refused = refusal(polygon(SQUARE, outside))
    assert refused.code == "hole_lies_outside_shell"
    assert refused.reason == "Hole lies outside shell at or near point 117.402 39.902"


def test_an_unclosed_ring_is_refused() -> None:
    refused = refusal(polygon(SQUARE[:-1]))
    assert refused.code == "unclosed_ring"
    assert refused.reason == (
        "The exterior ring is not closed: it starts at 116.4 39.9 but ends at 116.4 39.91; "
        "its last position must repeat its first."
    )


def test_an_unclosed_hole_in_a_multipolygon_names_the_polygon() -> None:
    value = {"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE, HOLE[:-1]]]}
    refused = refusal(value)
    assert refused.code == "unclosed_ring"
    assert refused.reason.startswith("Hole 1 of polygon 2 is not closed: it starts at 116.402 39.902")


def test_an_unclosed_ring_is_never_repaired() -> None:
    assert refusal(polygon(SQUARE[:-1]), repair=True).code == "unclosed_ring"


@pytest.mark.parametrize(
    ("ring", "count"),
    [([SQUARE[0], SQUARE[1], SQUARE[0]], "3 positions"), ([SQUARE[0]], "1 position"), ([], "0 positions")],
)
def test_a_ring_with_too_few_points_is_refused(ring: list[list[float]], count: str) -> None:
    refused = refusal(polygon(ring), repair=True)
    assert refused.code == "too_few_points"
    assert refused.reason == (
        f"The exterior ring has too few points: {count}, where a ring needs at least 4 "
        "(three corners and the first repeated to close it)."
    )


@pytest.mark.parametrize(
    "value",
    [
        {"type": "Polygon", "coordinates": []},
        {"type": "MultiPolygon", "coordinates": []},
        {"type": "Feature", "properties": {}, "geometry": None},
        Polygon(),
        MultiPolygon(),
    ],
)
def test_an_empty_geometry_is_refused(value: Any) -> None:
    refused = refusal(value)
    assert refused.code == "empty"
    assert refused.reason.startswith("The geometry is empty")


@pytest.mark.parametrize(
    "value",
    [
        {"type": "GeometryCollection", "geometries": [polygon(SQUARE)]},
        shapely.GeometryCollection([Polygon(SQUARE)]),
    ],
)
def test_a_geometry_collection_is_refused(value: Any) -> None:
    refused = refusal(value, repair=True)
    assert refused.code == "geometry_collection"
    assert refused.reason == (
        "A GeometryCollection is not accepted: a boundary must be one Polygon or MultiPolygon."
    )


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ({"type": "Point", "coordinates": [116.4, 39.9]}, "Point"),
        ({"type": "MultiPoint", "coordinates": [[116.4, 39.9]]}, "MultiPoint"),
        ({"type": "LineString", "coordinates": SQUARE}, "LineString"),
        ({"type": "MultiLineString", "coordinates": [SQUARE]}, "MultiLineString"),
        (Point(116.4, 39.9), "Point"),
        (LineString(SQUARE), "LineString"),
    ],
)
def test_a_point_or_line_where_a_polygon_belongs_is_refused(value: Any, kind: str) -> None:
    refused = refusal(value)
    assert refused.code == "not_polygonal"
    assert (
        refused.reason == f"A {kind} where a polygon belongs: a boundary must be a Polygon or MultiPolygon."
    )


@pytest.mark.parametrize(
    "ring",
    [
        [[y, x] for x, y in SQUARE],  # Beijing as (lat, lon): latitude 116 is out of range
        [
            [43.8, 87.6],
            [43.8, 87.7],
            [43.9, 87.7],
            [43.9, 87.6],
            [43.8, 87.6],
        ],  # Urumqi: in range, but Arctic
    ],
)
def test_swapped_latitude_and_longitude_are_refused(ring: list[list[float]]) -> None:
    refused = refusal(polygon(ring), repair=True)
    assert refused.code == "swapped_coordinates"
    assert "latitude and longitude look swapped" in refused.reason.lower()
    first = ring[0]
    assert f"would be {first[1]:g} {first[0]:g}" in refused.reason


def test_swapped_message_in_full() -> None:
    refused = refusal(polygon([[y, x] for x, y in SQUARE]))
    assert refused.reason == (
        "Latitude and longitude look swapped: a position reads 39.9 116.4, which as [longitude, latitude] "
        "would be 116.4 39.9; GeoJSON positions are [longitude, latitude]."
    )


@pytest.mark.parametrize(
    ("ring", "reason"),
    [
        (
            [[x + 70, y] for x, y in SQUARE],
            "Coordinates out of range: longitude 186.4 at 186.4 39.9 is beyond ±180.",
        ),
        (
            [[x + 60, y + 51] for x, y in SQUARE],  # latitude out, and swapping would not fit either
            "Coordinates out of range: latitude 90.9 at 176.4 90.9 is beyond ±90.",
        ),
    ],
)
def test_coordinates_out_of_range_are_refused(ring: list[list[float]], reason: str) -> None:
    refused = refusal(polygon(ring), repair=True)
    assert refused.code == "out_of_range"
    assert refused.reason == reason


@pytest.mark.parametrize(
    ("value", "options", "declared"),
    [
        (
            polygon(SQUARE, crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}),
            {},
            "the GeoJSON crs member names EPSG:3857 (Web Mercator, in metres)",
        ),
        (
            polygon(SQUARE, crs={"type": "name", "properties": {"name": "EPSG:4547"}}),
            {},
            "the GeoJSON crs member names EPSG:4547",
        ),
        (
            {
                "type": "Feature",
                "properties": {},
                "geometry": polygon(SQUARE, crs={"type": "EPSG", "properties": {"code": 2385}}),
            },
            {},
            "the GeoJSON crs member names EPSG:2385",
        ),
        (polygon(SQUARE), {"srid": 3857}, "the input is declared as EPSG:3857 (Web Mercator, in metres)"),
        (shapely.set_srid(Polygon(SQUARE), 32650), {}, "the geometry carries SRID EPSG:32650"),
    ],
)
def test_a_declared_srid_other_than_4326_is_refused(
    value: Any, options: dict[str, Any], declared: str
) -> None:
    refused = refusal(value, repair=True, **options)
    assert refused.code == "wrong_srid"
    assert refused.reason == (
        f"Wrong SRID: {declared}; only WGS84 longitude/latitude (EPSG:4326) is accepted, "
        "so reproject it first."
    )


def test_coordinates_in_metres_are_refused_as_a_wrong_srid() -> None:
    web_mercator = [
        [12957400.0, 4852350.0],
        [12958500.0, 4852350.0],
        [12958500.0, 4853800.0],
        [12957400.0, 4852350.0],
    ]
    refused = refusal(polygon(web_mercator))
    assert refused.code == "wrong_srid"
    assert refused.reason == (
        "Wrong SRID: coordinates such as 12957400 4852350 look like metres in a projected system "
        "(EPSG:3857 for instance), not degrees; only WGS84 longitude/latitude (EPSG:4326) is accepted, "
        "so reproject it first."
    )


def test_an_unknown_crs_member_is_refused() -> None:
    refused = refusal(polygon(SQUARE, crs={"type": "link", "properties": {"href": "http://example.com/crs"}}))
    assert refused.code == "wrong_srid"
    assert "names no known system" in refused.reason


@pytest.mark.parametrize(
    ("value", "code", "reason"),
    [
        ("{not json", "invalid_geojson", "The input is not valid JSON"),
        ([1, 2], "invalid_geojson", "Expected a GeoJSON object, got list."),
        (
            {"type": "FeatureCollection", "features": [{}, {}]},
            "invalid_geojson",
            "Expected one geometry, got a FeatureCollection of 2 features",
        ),
        (
            {"type": "Circle", "coordinates": [1, 2]},
            "invalid_geojson",
            "Unknown GeoJSON geometry type Circle",
        ),
        (
            polygon([[116.4, 39.9], [116.41], [116.41, 39.91], [116.4, 39.9]]),
            "invalid_geojson",
            "Position 2 of the exterior ring should be [longitude, latitude], not [116.41].",
        ),
        (
            polygon([[116.4, 39.9], ["116.41", 39.9], [116.41, 39.91], [116.4, 39.9]]),
            "invalid_geojson",
            "Position 2 of the exterior ring should be",
        ),
        (
            polygon([[116.4, 39.9], [float("nan"), 39.9], [116.41, 39.91], [116.4, 39.9]]),
            "invalid_coordinate",
            "Position 2 of the exterior ring is not a finite number",
        ),
        (
            {"type": "Polygon", "coordinates": 5},
            "invalid_geojson",
            "The Polygon's coordinates should be an array, not 5.",
        ),
    ],
)
def test_malformed_geojson_is_refused(value: Any, code: str, reason: str) -> None:
    refused = refusal(value)
    assert refused.code == code
    assert refused.reason.startswith(reason)


def test_geojson_srid_reads_a_feature_collection_crs() -> None:
    assert geojson_srid({"type": "FeatureCollection", "features": []}) is None
    named = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4490"}},
    }
    assert geojson_srid(named) == 4490


# --- repair ------------------------------------------------------------------------------------------------


def test_a_bowtie_is_repaired_with_the_structure_method_and_reported() -> None:
    result = validate_polygonal(polygon(BOWTIE), repair=True)
    assert result.repaired
    assert result.geometry.is_valid
    assert len(result.geometry.geoms) == 2  # the two triangles
    assert result.geometry.area == pytest.approx(0.005)
    (repair,) = result.repairs
    assert repair.problem == "Self-intersection at or near point 116.45 39.95"
    assert repair.action == 'repaired with make_valid(method="structure")'
    assert repair.area_before_m2 == pytest.approx(0, abs=1)  # the two lobes' signed areas cancel out
    assert repair.area_after_m2 == pytest.approx(47.44e6, rel=1e-2)
    assert str(repair).startswith(
        'Self-intersection at or near point 116.45 39.95: repaired with make_valid(method="structure"); '
        "area 0 m² before, 47,"
    )


def test_repair_unions_overlapping_parts_as_the_structure_method_does() -> None:
    # "linework" would keep the overlap as a hole (area 6); "structure" unions the shells (area 7).
    overlapping = MultiPolygon([box(116.0, 39.0, 116.2, 39.2), box(116.1, 39.1, 116.3, 39.3)])
    result = validate_polygonal(overlapping, repair=True)
    assert result.geometry.area == pytest.approx(0.07)
    assert len(result.geometry.geoms) == 1
    assert result.repairs[0].area_after_m2 < result.repairs[0].area_before_m2  # the overlap counted once


def test_repair_merges_duplicate_polygons() -> None:
    duplicated = {"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE]]}
    assert refusal(duplicated).code == "self_intersection"
    result = validate_polygonal(duplicated, repair=True)
    assert result.geometry.equals(MultiPolygon([Polygon(SQUARE)]))
    assert result.repairs[0].area_after_m2 == pytest.approx(result.repairs[0].area_before_m2 / 2, rel=1e-6)


def test_repair_keeps_only_the_polygonal_parts() -> None:
    # A spike sticking out of the square is cut off.
    spike = [*SQUARE[:3], [116.42, 39.92], *SQUARE[2:]]
    assert refusal(polygon(spike)).code == "self_intersection"
    result = validate_polygonal(polygon(spike), repair=True)
    assert result.geometry.equals(MultiPolygon([Polygon(SQUARE)]))
    # A part collapsed to a line is dropped, and the report says so.
    flat = [[116.50, 39.90], [116.51, 39.90], [116.52, 39.90], [116.50, 39.90]]
    result = validate_polygonal({"type": "MultiPolygon", "coordinates": [[SQUARE], [flat]]}, repair=True)
    assert result.geometry.equals(MultiPolygon([Polygon(SQUARE)]))
    (repair,) = result.repairs
    assert repair.dropped_parts == ("LineString", "LineString")
    assert str(repair).endswith("; dropped collapsed parts that had no area: 2 LineStrings")


def test_a_repair_that_leaves_no_area_is_refused() -> None:
    refused = refusal(polygon(SQUARE, SQUARE), repair=True)
    assert refused.code == "self_intersection"
    assert refused.reason.endswith("and repairing it left no valid area.")


def test_a_valid_polygon_is_not_repaired() -> None:
    assert validate_polygonal(polygon(SQUARE), repair=True).repairs == []


# --- orientation and GeoJSON output ------------------------------------------------------------------------


def test_orient_rfc7946_makes_exteriors_counter_clockwise_and_holes_clockwise() -> None:
    clockwise = Polygon(SQUARE[::-1], [HOLE[::-1]])
    assert not clockwise.exterior.is_ccw and clockwise.interiors[0].is_ccw
    oriented = orient_rfc7946(MultiPolygon([clockwise]))
    assert oriented.geoms[0].exterior.is_ccw
    assert not oriented.geoms[0].interiors[0].is_ccw
    assert oriented.equals(MultiPolygon([clockwise]))


def test_validated_geometry_is_oriented() -> None:
    result = validate_polygonal(polygon(SQUARE[::-1], HOLE[::-1]))
    assert result.geometry.geoms[0].exterior.is_ccw
    assert not result.geometry.geoms[0].interiors[0].is_ccw


def test_to_geojson_is_rfc7946() -> None:
    clockwise = Polygon(
        [(116.123456789, 39.987654321), (116.123456789, 39.99), (116.2, 39.99), (116.2, 39.987654321)],
        [[(116.15, 39.988), (116.16, 39.988), (116.16, 39.989), (116.15, 39.989)]],
    )
    document = to_geojson(MultiPolygon([clockwise]))
    assert document["type"] == "MultiPolygon"
    exterior, hole = document["coordinates"][0]
    assert exterior[0] == [116.1234568, 39.9876543]  # [lon, lat], 7 decimals
    assert exterior[0] == exterior[-1]
    assert Polygon(exterior).exterior.is_ccw
    assert not Polygon(hole).exterior.is_ccw
    assert json.loads(json.dumps(document)) == document  # plain lists and floats


@pytest.mark.parametrize("precision", [0, 3, 6, 7])
def test_to_geojson_rounds_to_the_precision(precision: int) -> None:
    document = to_geojson(
        Polygon([(116.123456789, 39.987654321), (116.2, 39.9), (116.2, 40.0)]), precision=precision
    )
    for lon, lat in document["coordinates"][0]:
        assert round(lon, precision) == lon and round(lat, precision) == lat
    assert document["coordinates"][0][0] == [round(116.123456789, precision), round(39.987654321, precision)]


def test_to_geojson_refuses_more_than_seven_decimals() -> None:
    with pytest.raises(ValueError, match="precision must be between 0 and 7"):
        to_geojson(Polygon(SQUARE), precision=8)


def test_to_geojson_simplifies_preserving_topology() -> None:
    # A wiggly square with a hole: simplification drops the wiggles but keeps the hole inside and rings valid.
    wiggly = [(116.4 + i * 0.001, 39.9 + (0.00001 if i % 2 else 0.0)) for i in range(11)]
    shell = [*wiggly, (116.41, 39.91), (116.4, 39.91)]
    original = Polygon(shell, [[tuple(p) for p in HOLE]])
    document = to_geojson(original, simplify_tolerance=0.0001)
    simplified = shapely.geometry.shape(document)
    assert isinstance(simplified, Polygon)
    assert simplified.is_valid
    assert len(simplified.exterior.coords) < len(original.exterior.coords)
    assert len(simplified.interiors) == 1
    assert simplified.exterior.is_ccw
    assert to_geojson(original, simplify_tolerance=0)["coordinates"] == to_geojson(original)["coordinates"]
    with pytest.raises(ValueError, match="simplify_tolerance"):
        to_geojson(original, simplify_tolerance=-1)
