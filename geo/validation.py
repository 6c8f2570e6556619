"""Polygons on the way in: refused with a clear reason, or repaired on request; RFC 7946 GeoJSON out.

`validate_polygonal` takes a Shapely geometry, a GeoJSON geometry or Feature (dict or JSON text) and returns
a WGS84 `MultiPolygon` (a Polygon is promoted, rings oriented as RFC 7946 wants) plus the repairs made, or
raises `GeometryRefused` whose `reason` is one sentence. Raw GeoJSON is read here rather than by
`shapely.geometry.shape`, which would silently close an open ring or fail on a short one without saying where.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import shapely
from pyproj import Geod
from shapely.geometry import GeometryCollection, MultiPolygon, Polygon, mapping
from shapely.geometry.base import BaseGeometry

from geo.crs import (
    CHINA_MAX_LAT,
    CHINA_MAX_LON,
    CHINA_MIN_LAT,
    CHINA_MIN_LON,
    CRS,
    geometry_to_wgs84,
)

WGS84_SRID = 4326
# CGCS2000 geographic (China's national datum) is within centimetres of WGS84, like the CRS enum treats it.
ACCEPTED_SRIDS = frozenset({WGS84_SRID, 4490})
MAX_GEOJSON_PRECISION = 7

# Beyond this, a "degree" is certainly a metre (or foot) of some projected system.
_PROJECTED_THRESHOLD = 1000.0
_GEOD = Geod(ellps="WGS84")
_NON_POLYGONAL = {"Point", "MultiPoint", "LineString", "MultiLineString", "LinearRing"}
_VALIDITY_REASON = re.compile(r"^(?P<kind>[^\[]+?)\s*\[(?P<x>\S+)\s+(?P<y>\S+)(?:\s+\S+)?\]\s*$")
_EPSG_NAME = re.compile(r"EPSG:{1,2}(?:[\d.]*:)?(?P<code>\d+)$", re.IGNORECASE)

GeometryT = TypeVar("GeometryT", bound=BaseGeometry)


class GeometryRefused(ValueError):
    """A geometry that cannot be stored: `reason` is a sentence for people, `code` a slug for programs."""

    def __init__(self, reason: str, *, code: str, repairable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        # True when `repair=True` would have fixed it (invalid polygon structure, not bad input data).
        self.repairable = repairable


@dataclass(frozen=True)
class Repair:
    """One repair made with `repair=True`: what was wrong, and what it did to the area."""

    problem: str
    action: str
    area_before_m2: float
    area_after_m2: float
    dropped_parts: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = (
            f"{self.problem}: {self.action}; area {self.area_before_m2:,.0f} m² before, "
            f"{self.area_after_m2:,.0f} m² after"
        )
        if self.dropped_parts:
            counts = Counter(self.dropped_parts)
            parts = ", ".join(f"{count} {kind}{'s' if count > 1 else ''}" for kind, count in counts.items())
            text += f"; dropped collapsed parts that had no area: {parts}"
        return text


@dataclass(frozen=True)
class ValidatedGeometry:
    """A valid WGS84 MultiPolygon, ready to store with SRID 4326, and the repairs made to get it."""

    geometry: MultiPolygon
    repairs: list[Repair] = field(default_factory=list)

    @property
    def repaired(self) -> bool:
        return bool(self.repairs)


def validate_polygonal(
    value: BaseGeometry | Mapping[str, Any] | str,
    *,
    repair: bool = False,
    srid: int | None = None,
    crs: CRS = CRS.WGS84,
) -> ValidatedGeometry:
    """Check a polygonal input and return it as a valid WGS84 MultiPolygon, or raise `GeometryRefused`.

    `srid` is the SRID the caller declares for the input (a GeoJSON `crs` member or a Shapely SRID is read
    too); `crs` the Chinese map system its lon/lat are in (converted to WGS84 after the checks). With
    `repair`, invalid polygons are fixed with `make_valid(method="structure")` keeping the polygonal parts,
    and each repair is reported; bad input data (open or short rings, swapped or out-of-range coordinates, a
    wrong SRID, a non-polygonal type) is never repaired.
    """
    geometry = (
        _from_geojson(_load(value), srid)
        if not isinstance(value, BaseGeometry)
        else _from_shapely(value, srid)
    )
    _check_coordinates(geometry)
    repairs: list[Repair] = []
    geometry = _valid_or_repaired(geometry, repair, repairs, problem_prefix="")
    if crs is not CRS.WGS84:
        geometry = geometry_to_wgs84(geometry, crs)
        # The shift is smooth and a few hundred metres, but it moves each vertex a little differently.
        geometry = _valid_or_repaired(
            geometry, repair, repairs, problem_prefix=f"After conversion from {crs.value} to WGS84: "
        )
    return ValidatedGeometry(geometry=orient_rfc7946(_as_multipolygon(geometry)), repairs=repairs)


def orient_rfc7946(geometry: GeometryT) -> GeometryT:
    """Exterior rings counter-clockwise, holes clockwise (RFC 7946 §3.1.6); other geometry is unchanged."""
    return shapely.orient_polygons(geometry, exterior_cw=False)


def to_geojson(
    geometry: BaseGeometry, *, precision: int = MAX_GEOJSON_PRECISION, simplify_tolerance: float | None = None
) -> dict[str, Any]:
    """RFC 7946 GeoJSON geometry: [lon, lat], at most `precision` (≤ 7) decimals, CCW exterior rings.

    `simplify_tolerance` (degrees) simplifies each geometry preserving its own topology (rings stay valid and
    holes inside); neighbouring polygons simplified separately may no longer share their border exactly.
    """
    if not 0 <= precision <= MAX_GEOJSON_PRECISION:
        raise ValueError(f"precision must be between 0 and {MAX_GEOJSON_PRECISION} decimals, not {precision}")
    if simplify_tolerance is not None:
        if simplify_tolerance < 0 or not math.isfinite(simplify_tolerance):
            raise ValueError(f"simplify_tolerance must be a non-negative number, not {simplify_tolerance}")
        if simplify_tolerance > 0:
            geometry = shapely.simplify(geometry, simplify_tolerance, preserve_topology=True)
    document: dict[str, Any] = _rounded(dict(mapping(orient_rfc7946(geometry))), precision)
    return document


# ----------------------------------------------------------------------------------------------------------
# Parsing GeoJSON


def _load(value: Mapping[str, Any] | str) -> Mapping[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise GeometryRefused(
                f"The input is not valid JSON: {error.msg} at line {error.lineno}.", code="invalid_geojson"
            ) from None
    if not isinstance(value, Mapping):
        raise GeometryRefused(
            f"Expected a GeoJSON object, got {type(value).__name__}.", code="invalid_geojson"
        )
    return value


def _from_geojson(document: Mapping[str, Any], srid: int | None) -> BaseGeometry:
    _check_srid(srid, "the input is declared as")
    _check_srid(geojson_srid(document), "the GeoJSON crs member names")
    kind = document.get("type")
    if kind == "FeatureCollection":
        count = len(document.get("features") or [])
        raise GeometryRefused(
            f"Expected one geometry, got a FeatureCollection of {count} features: validate each feature.",
            code="invalid_geojson",
        )
    if kind == "Feature":
        inner = document.get("geometry")
        if inner is None:
            raise GeometryRefused("The geometry is empty: the feature's geometry is null.", code="empty")
        if not isinstance(inner, Mapping):
            raise GeometryRefused("The feature's geometry is not a GeoJSON object.", code="invalid_geojson")
        _check_srid(geojson_srid(inner), "the GeoJSON crs member names")
        document, kind = inner, inner.get("type")
    _check_type(kind if isinstance(kind, str) else repr(kind))
    coordinates = document.get("coordinates")
    if coordinates is None or (
        isinstance(coordinates, Sequence) and not isinstance(coordinates, str) and not coordinates
    ):
        raise GeometryRefused("The geometry is empty: it has no coordinates.", code="empty")
    polygons = (
        [coordinates] if kind == "Polygon" else _sequence(coordinates, "The MultiPolygon's coordinates")
    )
    multi = kind == "MultiPolygon"
    built: list[Polygon] = []
    for polygon_index, rings in enumerate(polygons):
        where = f" of polygon {polygon_index + 1}" if multi else ""
        rings = _sequence(rings, f"Polygon {polygon_index + 1}" if multi else "The Polygon's coordinates")
        if not rings:
            raise GeometryRefused(
                f"The geometry is empty: polygon {polygon_index + 1} has no rings.", code="empty"
            )
        parsed = [_ring(ring, _ring_name(ring_index) + where) for ring_index, ring in enumerate(rings)]
        built.append(Polygon(parsed[0], parsed[1:]))
    return MultiPolygon(built) if multi else built[0]


def geojson_srid(document: Mapping[str, Any]) -> int | None:
    """The SRID named by a (pre-RFC 7946) GeoJSON `crs` member, if any (e.g. on a FeatureCollection)."""
    member = document.get("crs")
    if member is None:
        return None
    properties = member.get("properties") if isinstance(member, Mapping) else None
    if isinstance(properties, Mapping):
        code = properties.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
        name = properties.get("name")
        if isinstance(name, str):
            if name.upper().replace("::", ":").endswith(("CRS84", "CRS:84")):
                return WGS84_SRID  # OGC CRS84: WGS84 in lon/lat order, RFC 7946's own
            found = _EPSG_NAME.search(name.strip())
            if found:
                return int(found.group("code"))
    raise GeometryRefused(
        f"Wrong SRID: the GeoJSON crs member {json.dumps(member)[:200]} names no known system; only WGS84 "
        "longitude/latitude (EPSG:4326) is accepted.",
        code="wrong_srid",
    )


def _check_srid(srid: int | None, source: str) -> None:
    if srid is None or srid in ACCEPTED_SRIDS:
        return
    hint = " (Web Mercator, in metres)" if srid in (3857, 900913) else ""
    raise GeometryRefused(
        f"Wrong SRID: {source} EPSG:{srid}{hint}; only WGS84 longitude/latitude (EPSG:4326) is "
        "accepted, so reproject it first.",
        code="wrong_srid",
    )


def _check_type(kind: str) -> None:
    if kind in ("Polygon", "MultiPolygon"):
        return
    if kind == "GeometryCollection":
        raise GeometryRefused(
            "A GeometryCollection is not accepted: a boundary must be one Polygon or MultiPolygon.",
            code="geometry_collection",
        )
    if kind in _NON_POLYGONAL:
        raise GeometryRefused(
            f"A {kind} where a polygon belongs: a boundary must be a Polygon or MultiPolygon.",
            code="not_polygonal",
        )
    raise GeometryRefused(
        f"Unknown GeoJSON geometry type {kind}: expected Polygon or MultiPolygon.", code="invalid_geojson"
    )


def _sequence(value: Any, what: str) -> Sequence[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return value
    raise GeometryRefused(f"{what} should be an array, not {json.dumps(value)[:80]}.", code="invalid_geojson")


def _ring_name(index: int) -> str:
    return "the exterior ring" if index == 0 else f"hole {index}"


def _ring(ring: Any, name: str) -> list[tuple[float, float]]:
    positions = [
        _position(position, index, name) for index, position in enumerate(_sequence(ring, name.capitalize()))
    ]
    if len(positions) >= 2 and positions[0] != positions[-1]:
        raise GeometryRefused(
            f"{name.capitalize()} is not closed: it starts at {_point(positions[0])} but ends at "
            f"{_point(positions[-1])}; its last position must repeat its first.",
            code="unclosed_ring",
        )
    if len(positions) < 4:
        raise GeometryRefused(
            f"{name.capitalize()} has too few points: {len(positions)} "
            f"position{'s' if len(positions) != 1 else ''}, where a ring needs at least 4 (three corners "
            "and the first repeated to close it).",
            code="too_few_points",
        )
    return positions


def _position(position: Any, index: int, ring_name: str) -> tuple[float, float]:
    if (
        isinstance(position, Sequence)
        and not isinstance(position, str)
        and 2 <= len(position) <= 3
        and all(isinstance(number, int | float) and not isinstance(number, bool) for number in position)
    ):
        lon, lat = float(position[0]), float(position[1])
        if math.isfinite(lon) and math.isfinite(lat):
            return lon, lat
        raise GeometryRefused(
            f"Position {index + 1} of {ring_name} is not a finite number: {position}.",
            code="invalid_coordinate",
        )
    raise GeometryRefused(
        f"Position {index + 1} of {ring_name} should be [longitude, latitude], "
        f"not {json.dumps(position)[:80]}.",
        code="invalid_geojson",
    )


# ----------------------------------------------------------------------------------------------------------
# Shapely input and the checks shared by both


def _from_shapely(geometry: BaseGeometry, srid: int | None) -> BaseGeometry:
    _check_srid(srid, "the input is declared as")
    declared = int(shapely.get_srid(geometry))
    _check_srid(declared or None, "the geometry carries SRID")
    _check_type(geometry.geom_type)
    if geometry.is_empty:
        raise GeometryRefused("The geometry is empty: it has no coordinates.", code="empty")
    coordinates = shapely.get_coordinates(geometry)
    if not np.isfinite(coordinates).all():
        raise GeometryRefused(
            "The geometry has a coordinate that is not a finite number.", code="invalid_coordinate"
        )
    return shapely.force_2d(geometry)


def _check_coordinates(geometry: BaseGeometry) -> None:
    """Metres where degrees belong, swapped latitude/longitude, and values out of range."""
    coordinates = shapely.get_coordinates(geometry)
    lon, lat = coordinates[:, 0], coordinates[:, 1]
    projected = (np.abs(lon) > _PROJECTED_THRESHOLD) | (np.abs(lat) > _PROJECTED_THRESHOLD)
    if projected.any():
        index = int(np.argmax(projected))
        raise GeometryRefused(
            f"Wrong SRID: coordinates such as {_point((lon[index], lat[index]))} look like metres in a "
            "projected system (EPSG:3857 for instance), not degrees; only WGS84 longitude/latitude "
            "(EPSG:4326) is accepted, so reproject it first.",
            code="wrong_srid",
        )
    lat_out = np.abs(lat) > 90
    swapped_fits = bool((np.abs(lon) <= 90).all() and (np.abs(lat) <= 180).all())
    # Chinese lon/lat given as lat/lon lands in the Arctic (lat 73-90) even where it stays in range.
    looks_like_china_swapped = bool(
        ((lon > CHINA_MIN_LAT) & (lon < CHINA_MAX_LAT) & (lat > CHINA_MIN_LON) & (lat < CHINA_MAX_LON)).all()
    )
    if (lat_out.any() and swapped_fits) or (looks_like_china_swapped and not lat_out.any()):
        index = int(np.argmax(lat_out)) if lat_out.any() else 0
        raise GeometryRefused(
            "Latitude and longitude look swapped: a position reads "
            f"{_point((lon[index], lat[index]))}, which as [longitude, latitude] would be "
            f"{_point((lat[index], lon[index]))}; GeoJSON positions are [longitude, latitude].",
            code="swapped_coordinates",
        )
    if lat_out.any():
        index = int(np.argmax(lat_out))
        raise GeometryRefused(
            f"Coordinates out of range: latitude {_number(lat[index])} at "
            f"{_point((lon[index], lat[index]))} is beyond ±90.",
            code="out_of_range",
        )
    lon_out = np.abs(lon) > 180
    if lon_out.any():
        index = int(np.argmax(lon_out))
        raise GeometryRefused(
            f"Coordinates out of range: longitude {_number(lon[index])} at "
            f"{_point((lon[index], lat[index]))} is beyond ±180.",
            code="out_of_range",
        )


def _valid_or_repaired(
    geometry: BaseGeometry, repair: bool, repairs: list[Repair], *, problem_prefix: str
) -> BaseGeometry:
    reason = shapely.is_valid_reason(geometry)
    if reason == "Valid Geometry":
        return geometry
    problem, code = _explain(reason)
    problem = problem_prefix + problem
    if not repair:
        raise GeometryRefused(problem, code=code, repairable=True)
    fixed = shapely.make_valid(geometry, method="structure", keep_collapsed=True)
    polygonal, dropped = _polygonal_parts(fixed)
    if polygonal.is_empty or not polygonal.is_valid:
        raise GeometryRefused(f"{problem}, and repairing it left no valid area.", code=code)
    repairs.append(
        Repair(
            problem=problem,
            action='repaired with make_valid(method="structure")',
            area_before_m2=_area_m2(geometry),
            area_after_m2=_area_m2(polygonal),
            dropped_parts=dropped,
        )
    )
    return polygonal


def _explain(reason: str) -> tuple[str, str]:
    """GEOS's "Self-intersection[116.4 39.9]" as "Self-intersection at or near point 116.4 39.9", a code."""
    found = _VALIDITY_REASON.match(reason)
    kind = found.group("kind").strip() if found else reason.strip()
    code = re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_") or "invalid"
    if not found:
        return kind, code
    return (
        f"{kind} at or near point {_number(float(found.group('x')))} {_number(float(found.group('y')))}",
        code,
    )


def _polygonal_parts(geometry: BaseGeometry) -> tuple[BaseGeometry, tuple[str, ...]]:
    if isinstance(geometry, Polygon | MultiPolygon):
        return geometry, ()
    if isinstance(geometry, GeometryCollection):
        polygons: list[Polygon] = []
        dropped: list[str] = []
        for part in geometry.geoms:
            kept, lost = _polygonal_parts(part)
            polygons.extend(_as_multipolygon(kept).geoms if not kept.is_empty else [])
            dropped.extend(lost)
        return MultiPolygon(polygons), tuple(dropped)
    return Polygon(), (geometry.geom_type,)


def _as_multipolygon(geometry: BaseGeometry) -> MultiPolygon:
    if isinstance(geometry, MultiPolygon):
        return geometry
    if isinstance(geometry, Polygon):
        return MultiPolygon([geometry]) if not geometry.is_empty else MultiPolygon()
    raise TypeError(f"expected a polygonal geometry, got {geometry.geom_type}")


def _area_m2(geometry: BaseGeometry) -> float:
    """Geodesic area on the WGS84 ellipsoid (for an invalid polygon, its rings' signed areas added up)."""
    area, _perimeter = _GEOD.geometry_area_perimeter(orient_rfc7946(geometry))
    return abs(float(area))


# ----------------------------------------------------------------------------------------------------------
# Formatting


def _number(value: float) -> str:
    text = f"{float(value):.7f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _point(position: tuple[float, float] | Sequence[float]) -> str:
    return f"{_number(position[0])} {_number(position[1])}"


def _rounded(value: Any, precision: int) -> Any:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return round(float(value), precision) + 0.0  # + 0.0 turns -0.0 into 0.0
    if isinstance(value, Mapping):
        return {key: _rounded(item, precision) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item, precision) for item in value]
    return value
