"""Chinese map coordinate systems: WGS84 (also CGCS2000), GCJ-02 (AMap, Tencent) and BD-09 (Baidu).

Library: `coordtransform` (MIT, released 2026, vectorised C batch path) supplies the published GCJ-02 and
BD-09 forward formulas and their "outside China" box; its own inverse is the one-step approximation (measured
up to ~4 m off across China), so the inverse here iterates the library's forward transform to a fixed point
(Caijun 2014 method, error < 1 mm). Not chosen: prcoords-typed (requires Python >= 3.14), prcoords (precise
inverse, but scalar-only, last release 2019, and it warns on every point outside China, an error under our
test settings), eviltransform (2018, WGS84 semi-major axis where GCJ-02 uses Krasovsky's), coord-convert
(2019, no license).

Outside China's rough bounding box (the library's: 73.66-135.05 E, 3.86-53.55 N) no system is shifted:
GCJ-02 only applies inside it, and Baidu serves WGS84 coordinates abroad.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

import coordTransform  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

FloatArray = npt.NDArray[np.float64]
GeometryT = TypeVar("GeometryT", bound=BaseGeometry)

# coordTransform.out_of_china: a point is shifted only strictly inside this box.
CHINA_MIN_LON = 73.66
CHINA_MAX_LON = 135.05
CHINA_MIN_LAT = 3.86
CHINA_MAX_LAT = 53.55

_MAX_ITERATIONS = 30
_TOLERANCE_DEGREES = 1e-11  # about a micrometre


class CRS(StrEnum):
    """The coordinate system an input point or shape is expressed in."""

    WGS84 = "WGS84"  # GPS, and CGCS2000 (within centimetres of it)
    GCJ02 = "GCJ02"  # "Mars coordinates": AMap (Gaode), Tencent, Google China
    BD09 = "BD09"  # Baidu


_ALIASES = {
    "WGS84": CRS.WGS84,
    "EPSG4326": CRS.WGS84,
    "CGCS2000": CRS.WGS84,
    "EPSG4490": CRS.WGS84,
    "GCJ02": CRS.GCJ02,
    "AMAP": CRS.GCJ02,
    "GAODE": CRS.GCJ02,
    "TENCENT": CRS.GCJ02,
    "BD09": CRS.BD09,
    "BD09LL": CRS.BD09,
    "BAIDU": CRS.BD09,
}


def parse_crs(name: str | CRS) -> CRS:
    """`CRS` from a user's spelling: "wgs84", "GCJ-02", "bd09ll", "CGCS2000", "EPSG:4326", "amap", ..."""
    if isinstance(name, CRS):
        return name
    key = "".join(character for character in name.upper() if character.isalnum())
    try:
        return _ALIASES[key]
    except KeyError:
        known = ", ".join(member.value for member in CRS)
        raise ValueError(f"Unknown coordinate system {name!r}: expected one of {known}.") from None


def in_china(lon: npt.ArrayLike, lat: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Whether each point lies in the box where Chinese map systems are shifted (NaN is never inside)."""
    lon_array = np.asarray(lon, dtype=np.float64)
    lat_array = np.asarray(lat, dtype=np.float64)
    return (
        (lon_array > CHINA_MIN_LON)
        & (lon_array < CHINA_MAX_LON)
        & (lat_array > CHINA_MIN_LAT)
        & (lat_array < CHINA_MAX_LAT)
    )


def _library_forward(lon: FloatArray, lat: FloatArray, crs: CRS) -> tuple[FloatArray, FloatArray]:
    """WGS84 -> `crs` through coordtransform's batch functions (C when compiled)."""
    if lon.size == 0:
        return lon.copy(), lat.copy()
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    if crs is CRS.GCJ02:
        out_lon, out_lat = coordTransform.wgs84_to_gcj02(lon, lat)
    elif crs is CRS.BD09:
        out_lon, out_lat = coordTransform.wgs84_to_bd09(lon, lat)
    else:
        return lon.copy(), lat.copy()
    return np.asarray(out_lon, dtype=np.float64), np.asarray(out_lat, dtype=np.float64)


def from_wgs84_arrays(lon: npt.ArrayLike, lat: npt.ArrayLike, crs: CRS) -> tuple[FloatArray, FloatArray]:
    """WGS84 -> `crs` for arrays of longitudes and latitudes (new arrays; points outside China unchanged)."""
    out_lon = np.array(lon, dtype=np.float64, copy=True)
    out_lat = np.array(lat, dtype=np.float64, copy=True)
    if crs is CRS.WGS84:
        return out_lon, out_lat
    inside = in_china(out_lon, out_lat)
    if inside.any():
        out_lon[inside], out_lat[inside] = _library_forward(out_lon[inside], out_lat[inside], crs)
    return out_lon, out_lat


def to_wgs84_arrays(lon: npt.ArrayLike, lat: npt.ArrayLike, crs: CRS) -> tuple[FloatArray, FloatArray]:
    """`crs` -> WGS84 for arrays: the precise inverse, by fixed-point iteration of the forward transform.

    Whether a point is shifted is decided on the input coordinates, as the libraries do.
    """
    out_lon = np.array(lon, dtype=np.float64, copy=True)
    out_lat = np.array(lat, dtype=np.float64, copy=True)
    if crs is CRS.WGS84:
        return out_lon, out_lat
    inside = in_china(out_lon, out_lat)
    if not inside.any():
        return out_lon, out_lat
    target_lon, target_lat = out_lon[inside], out_lat[inside]
    # First guess: subtract the shift measured at the input point (the libraries' "rough" inverse).
    shifted_lon, shifted_lat = _library_forward(target_lon, target_lat, crs)
    guess_lon = 2 * target_lon - shifted_lon
    guess_lat = 2 * target_lat - shifted_lat
    for _ in range(_MAX_ITERATIONS):
        shifted_lon, shifted_lat = _library_forward(guess_lon, guess_lat, crs)
        error_lon = shifted_lon - target_lon
        error_lat = shifted_lat - target_lat
        guess_lon -= error_lon
        guess_lat -= error_lat
        if max(float(np.abs(error_lon).max()), float(np.abs(error_lat).max())) < _TOLERANCE_DEGREES:
            break
    out_lon[inside], out_lat[inside] = guess_lon, guess_lat
    return out_lon, out_lat


def to_wgs84(lon: float, lat: float, crs: CRS) -> tuple[float, float]:
    """One point from `crs` to WGS84, as (lon, lat)."""
    out_lon, out_lat = to_wgs84_arrays([lon], [lat], crs)
    return float(out_lon[0]), float(out_lat[0])


def from_wgs84(lon: float, lat: float, crs: CRS) -> tuple[float, float]:
    """One WGS84 point to `crs`, as (lon, lat)."""
    out_lon, out_lat = from_wgs84_arrays([lon], [lat], crs)
    return float(out_lon[0]), float(out_lat[0])


def _transform_vertices(geometry: GeometryT, crs: CRS, *, inverse: bool) -> GeometryT:
    if crs is CRS.WGS84:
        return geometry
    convert = to_wgs84_arrays if inverse else from_wgs84_arrays

    def transformation(coordinates: FloatArray) -> FloatArray:
        result = coordinates.copy()
        result[:, 0], result[:, 1] = convert(coordinates[:, 0], coordinates[:, 1], crs)
        return result

    # Every vertex of every part in one vectorised call; Z values (if any) are kept as they are.
    return shapely.transform(geometry, transformation, include_z=bool(shapely.has_z(geometry)))


def geometry_to_wgs84(geometry: GeometryT, crs: CRS) -> GeometryT:
    """A Shapely geometry in `crs` converted vertex by vertex to WGS84 (same type)."""
    return _transform_vertices(geometry, crs, inverse=True)


def geometry_from_wgs84(geometry: GeometryT, crs: CRS) -> GeometryT:
    """A WGS84 Shapely geometry converted vertex by vertex to `crs` (same type), e.g. for an AMap client."""
    return _transform_vertices(geometry, crs, inverse=False)
