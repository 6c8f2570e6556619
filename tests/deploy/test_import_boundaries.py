"""`liaison import boundaries` on files with good and broken features: nothing dropped silently."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deploy.seed import seed_synthetic
from geo.crs import CRS, from_wgs84
from tenants.db import Database
from tests.deploy.conftest import liaison
from tests.helpers import select_rows


def feature(code: str | None, geometry: dict[str, Any], **extra: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {"code": code, **extra} if code is not None else {**extra}
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def polygon(*ring: tuple[float, float]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[list(point) for point in ring]]}


def square(lon: float, lat: float, size: float) -> dict[str, Any]:
    return polygon((lon, lat), (lon + size, lat), (lon + size, lat + size), (lon, lat + size), (lon, lat))


def write(tmp_path: Path, name: str, features: list[dict[str, Any]], **members: Any) -> Path:
    path = tmp_path / name
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": features, **members}), encoding="utf-8"
    )
    return path


@pytest.fixture(scope="module")
async def tenant(database: Database) -> str:
    await seed_synthetic(database, "importville", districts=1, streets=3, stations=1, seed=2)
    return "importville"


def boundaries(owner_dsn: str, level: str) -> dict[str, int]:
    rows = select_rows(
        owner_dsn,
        "SELECT b.level, count(*) FROM boundaries b JOIN cities c USING (tenant_id) "
        "WHERE c.code = 'importville' AND b.level = %s GROUP BY 1",
        level,
    )
    return dict(rows)


def test_each_bad_feature_is_reported_and_the_good_ones_kept(
    cli_env: dict[str, str],
    tenant: str,
    tmp_path: Path,
    owner_dsn: str,
) -> None:
    path = write(
        tmp_path,
        "streets.geojson",
        [
            feature("D001S001", square(116.0, 39.0, 0.05)),
            feature(
                "D001S002", polygon((116, 39), (116.1, 39.1), (116.1, 39), (116, 39.1), (116, 39))
            ),  # bowtie
            feature("NOPE", square(116.2, 39.0, 0.05)),  # no such street
            feature(None, square(116.3, 39.0, 0.05)),  # no code
            feature("D001S003", {"type": "Point", "coordinates": [116.0, 39.0]}),
            feature("D001S003", polygon((116, 39), (116.1, 39), (116.1, 39.1))),  # unclosed, too short
            feature("D001S003", square(39.0, 116.0, 0.05)),  # swapped
            {
                "type": "Feature",
                "properties": {"code": "D001S003"},
                "geometry": {"type": "GeometryCollection", "geometries": []},
            },
        ],
    )
    done = liaison(cli_env, "import", "boundaries", str(path), "--tenant", tenant, "--level", "street")
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "8 features: 1 stored (0 repaired), 7 refused" in out
    for expected in (
        "refused feature 2 (D001S002): Self-intersection",
        "(--repair would fix it)",
        "refused feature 3 (NOPE): no street with code NOPE",
        "refused feature 4: it has no 'code' property",
        "refused feature 5 (D001S003): A Point where a polygon belongs",
        "refused feature 6 (D001S003):",
        "refused feature 7 (D001S003):",
        "swapped",
        "refused feature 8 (D001S003):",
    ):
        assert expected in out, (expected, out)
    assert boundaries(owner_dsn, "street") == {"street": 1}

    repaired = liaison(
        cli_env, "import", "boundaries", str(path), "--tenant", tenant, "--level", "street", "--repair"
    )
    assert "repaired feature 2 (D001S002)" in repaired.stdout and 'method="structure"' in repaired.stdout
    assert repaired.returncode == 1  # the rest are still refused: bad data is never repaired


def test_gcj02_files_grid_cells_and_reports(
    cli_env: dict[str, str],
    tenant: str,
    tmp_path: Path,
    owner_dsn: str,
) -> None:
    district = write(tmp_path, "district.geojson", [feature("D001", square(116.0, 39.0, 0.1))])
    assert (
        liaison(
            cli_env, "import", "boundaries", str(district), "--tenant", tenant, "--level", "district"
        ).returncode
        == 0
    )
    # A street half outside the district and overlapping its sibling, given in GCJ-02.
    shifted = [
        [*from_wgs84(lon, lat, CRS.GCJ02)]
        for lon, lat in [(116.05, 39.0), (116.15, 39.0), (116.15, 39.05), (116.05, 39.05), (116.05, 39.0)]
    ]
    streets = write(
        tmp_path,
        "streets.geojson",
        [
            feature("D001S002", {"type": "Polygon", "coordinates": [shifted]}),
            feature("D001S003", square(116.04, 39.0, 0.03)),
        ],
    )
    done = liaison(
        cli_env,
        "import",
        "boundaries",
        str(streets),
        "--tenant",
        tenant,
        "--level",
        "street",
        "--crs",
        "GCJ02",
    )
    assert "sticks out of its parent" in done.stdout
    assert "overlaps" in done.stdout
    cells = write(
        tmp_path,
        "grid.geojson",
        [
            feature("CELL-1", square(116.0, 39.0, 0.01), station="D001S001T001", name="一号网格"),
            feature("CELL-2", square(116.01, 39.0, 0.01)),  # new cell without a station to put it under
        ],
    )
    done = liaison(cli_env, "import", "boundaries", str(cells), "--tenant", tenant, "--level", "grid")
    assert "1 stored" in done.stdout and "names no 'station'" in done.stdout
    assert boundaries(owner_dsn, "grid") == {"grid": 1}


@pytest.mark.parametrize(
    ("content", "args", "says"),
    [
        ("not json", [], "is not GeoJSON text"),
        ('{"type": "Point", "coordinates": [1, 2]}', [], "not a GeoJSON FeatureCollection"),
        (
            '{"type": "FeatureCollection", "features": [], "crs": {"type": "name", "properties": '
            '{"name": "urn:ogc:def:crs:EPSG::3857"}}}',
            [],
            "EPSG:3857",
        ),
        ('{"type": "FeatureCollection", "features": []}', ["--crs", "mars"], "Unknown coordinate system"),
        ('{"type": "FeatureCollection", "features": []}', ["--level", "county"], "is not one of"),
    ],
)
def test_bad_files_and_options_exit_2_with_one_sentence(
    cli_env: dict[str, str],
    tenant: str,
    tmp_path: Path,
    content: str,
    args: list[str],
    says: str,
) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text(content, encoding="utf-8")
    level = [] if "--level" in args else ["--level", "street"]
    done = liaison(cli_env, "import", "boundaries", str(path), "--tenant", tenant, *level, *args)
    assert done.returncode == 2
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
