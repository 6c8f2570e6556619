"""Point-to-grid assignment on real PostGIS: borders, corners, outside points, history, scope, index use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from shapely import MultiPolygon, box

from geo.assignment import locate
from geo.boundaries import BoundaryLevel, set_boundary
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tests.geo.conftest import GIST_INDEX, Grid
from tests.helpers import TenantInfo


async def where(
    database: Database,
    grid: Grid,
    lon: float,
    lat: float,
    *,
    scopes: tuple[str, ...] | None = None,
    as_of: datetime | None = None,
) -> object:
    context = (
        TenantContext(grid.tenant.tenant_id, scopes, "user:1")
        if scopes
        else TenantContext.whole_tenant(grid.tenant.tenant_id, "user:1")
    )
    async with database.scoped(context) as session:
        return await locate(session, grid.tenant.tenant_id, lon, lat, as_of or datetime.now(UTC))


async def test_inside_a_cell(database: Database, grid: Grid) -> None:
    found = await where(database, grid, 116.405, 39.905)
    assert found.placement is not None  # type: ignore[attr-defined]
    assert found.placement.grid_cell_id == grid.cells["D"]  # type: ignore[attr-defined]
    assert found.placement.station_id == grid.stations[1][0]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("lon", "lat", "expected"),
    [
        (116.40, 39.895, "A"),  # the edge A|B
        (116.405, 39.90, "B"),  # the edge B|D
        (116.40, 39.90, "A"),  # the corner where all four meet
        (116.40, 39.905, "C"),  # the edge C|D
        (116.39, 39.89, "A"),  # an outer corner
    ],
)
async def test_shared_edges_and_corners_go_to_one_cell(
    database: Database, grid: Grid, lon: float, lat: float, expected: str
) -> None:
    for _ in range(3):  # and always the same one
        found = await where(database, grid, lon, lat)
        assert found.placement is not None  # type: ignore[attr-defined]
        assert found.placement.grid_cell_code == f"G-{expected}"  # type: ignore[attr-defined]


async def test_outside_every_cell_is_unassigned_with_the_nearest(database: Database, grid: Grid) -> None:
    found = await where(database, grid, 116.45, 39.895)
    assert found.unassigned  # type: ignore[attr-defined]
    nearest = found.nearest  # type: ignore[attr-defined]
    assert nearest.grid_cell_code == "G-B"
    assert 3_300 < nearest.distance_meters < 3_500  # 0.04 degrees of longitude at 39.9 N


async def test_as_of_uses_the_boundary_valid_then(database: Database, grid: Grid) -> None:
    before = datetime.now(UTC)
    context = TenantContext.whole_tenant(grid.tenant.tenant_id, "system:test")
    # Redraw cell C smaller: its west half is no longer in any cell.
    async with unit_of_work(database, context) as session:
        stored = await set_boundary(
            session,
            tenant_id=grid.tenant.tenant_id,
            level=BoundaryLevel.GRID,
            node_id=grid.cells["C"],
            scope=f"{grid.stations[1][1]}.g{grid.cells['C']}",
            geometry=MultiPolygon([box(116.395, 39.90, 116.40, 39.91)]),
            valid_from=before + timedelta(seconds=1),
        )
    assert stored.closed_previous
    point = (116.392, 39.905)
    old = await where(database, grid, *point, as_of=before)
    new = await where(database, grid, *point, as_of=before + timedelta(seconds=2))
    assert old.placement.grid_cell_code == "G-C"  # type: ignore[attr-defined]
    assert new.unassigned  # type: ignore[attr-defined]


async def test_a_scoped_session_sees_only_its_cells(database: Database, grid: Grid) -> None:
    station_one = grid.stations[0][1]
    inside = await where(database, grid, 116.395, 39.895, scopes=(station_one,))
    assert inside.placement.grid_cell_code == "G-A"  # type: ignore[attr-defined]
    outside = await where(database, grid, 116.405, 39.905, scopes=(station_one,))
    assert outside.unassigned  # type: ignore[attr-defined]
    assert outside.nearest.grid_cell_code in {"G-A", "G-B"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("whole_tenant", [True, False], ids=["tenant role", "scoped app role"])
async def test_the_locate_query_uses_the_gist_index_under_rls(
    database: Database, owner_dsn: str, grid: Grid, whole_tenant: bool
) -> None:
    """As the app runs it: row-level security on, the tenant role or a scoped app role."""
    from sqlalchemy import text

    from geo.assignment import COVERING_CELL

    with psycopg.connect(owner_dsn) as conn:
        for table in ("boundaries", "grid_cells", "stations", "streets", "districts"):
            conn.execute(f"ANALYZE {table}")
    scopes = (grid.tenant.scope,) if whole_tenant else (grid.stations[2][1],)
    async with database.scoped(TenantContext(grid.tenant.tenant_id, scopes, "user:1")) as session:
        values = {
            "tenant_id": grid.tenant.tenant_id,
            "lon": 117.0105,
            "lat": 40.0105,
            "as_of": datetime.now(UTC),
        }
        plan = "\n".join(row[0] for row in await session.execute(text("EXPLAIN " + COVERING_CELL), values))
    assert GIST_INDEX.search(plan), plan


async def test_covered_elsewhere_answers_yes_or_no_within_the_tenant(
    database: Database, grid: Grid, alpha: TenantInfo
) -> None:
    from geo.assignment import covered_elsewhere

    now = datetime.now(UTC)
    station_one = grid.stations[0][1]
    async with database.scoped(TenantContext(grid.tenant.tenant_id, (station_one,), "user:1")) as session:
        assert await covered_elsewhere(session, 116.405, 39.905, now)  # cell D, not visible here
        assert not await covered_elsewhere(session, 116.45, 39.895, now)  # no cell at all
    async with database.scoped(TenantContext.whole_tenant(alpha.tenant_id, "user:1")) as session:
        assert not await covered_elsewhere(session, 116.405, 39.905, now)  # another tenant's cell
