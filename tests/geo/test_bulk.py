"""Bulk (re)assignment of points to grid cells on real PostGIS, under row-level security.

Each test builds its points in a TEMP table inside one tenant-scoped transaction (ON COMMIT DROP, or the
transaction is rolled back), assigns them with geo.bulk.assign_points and compares with geo.assignment.locate,
the single-point answer, in the same transaction.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from shapely import MultiPolygon, box
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from geo.assignment import locate
from geo.boundaries import BoundaryLevel, set_boundary
from geo.bulk import AssignReport, BadPointsTable, assign_points, batch_statements, points_table
from tenants.context import TenantContext
from tenants.db import Database
from tests.geo.conftest import GIST_INDEX, Grid
from tests.helpers import TenantInfo

POINTS_DDL = (
    "CREATE TEMP TABLE pts (id bigint PRIMARY KEY, geom geometry(Point,4326), grid_cell_id bigint) "
    "ON COMMIT DROP"
)
TENANT_POINTS_DDL = (
    "CREATE TEMP TABLE tpts (tenant_id bigint, id bigint, geom geometry(Point,4326), grid_cell_id bigint, "
    "PRIMARY KEY (tenant_id, id)) ON COMMIT DROP"
)

# The border cases of tests/geo/test_assignment.py, and points outside every cell.
BORDERS = [
    (116.40, 39.895),  # the edge A|B
    (116.405, 39.90),  # the edge B|D
    (116.40, 39.90),  # the corner where all four meet
    (116.40, 39.905),  # the edge C|D
    (116.39, 39.89),  # an outer corner of A
    (116.41, 39.91),  # an outer corner of D
    (116.405, 39.905),  # inside D
    (116.395, 39.895),  # inside A
]
OUTSIDE = [(116.45, 39.895), (0.0, 0.0), (-73.98, 40.75), (116.38, 39.90)]


def block_points(count: int, seed: int) -> list[tuple[float, float]]:
    """Points of the 20 x 20 block of 0.001-degree cells: on its grid lines, its corners, and anywhere."""
    rng = random.Random(seed)
    points: list[tuple[float, float]] = []
    for _ in range(count):
        i, j = rng.randrange(21), rng.randrange(21)
        on_x, on_y = 117 + i * 0.001, 40 + j * 0.001  # the same doubles as the cells' corners
        anywhere = (rng.uniform(116.999, 117.021), rng.uniform(39.999, 40.021))
        points.append(rng.choice([(on_x, on_y), (on_x, anywhere[1]), (anywhere[0], on_y), anywhere]))
    return points


@asynccontextmanager
async def rolled_back(database: Database, context: TenantContext) -> AsyncIterator[AsyncSession]:
    """One tenant-scoped transaction that is always rolled back."""
    async with database.open() as session:
        await session.begin()
        await database.apply(session, context)
        try:
            yield session
        finally:
            await session.rollback()


async def load(session: AsyncSession, points: list[tuple[float, float]], table: str = "pts") -> None:
    await session.execute(
        text(f"INSERT INTO {table} (id, geom) VALUES (:id, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))"),
        [{"id": i, "lon": lon, "lat": lat} for i, (lon, lat) in enumerate(points, start=1)],
    )


async def cells(session: AsyncSession, table: str = "pts") -> dict[int, int | None]:
    rows = await session.execute(text(f"SELECT id, grid_cell_id FROM {table} ORDER BY id"))
    return {int(row[0]): row[1] for row in rows}


async def located(
    session: AsyncSession, tenant_id: int, points: list[tuple[float, float]], as_of: datetime
) -> dict[int, int | None]:
    answers: dict[int, int | None] = {}
    for i, (lon, lat) in enumerate(points, start=1):
        found = await locate(session, tenant_id, lon, lat, as_of)
        answers[i] = found.placement.grid_cell_id if found.placement is not None else None
    return answers


def whole(grid: Grid) -> TenantContext:
    return TenantContext.whole_tenant(grid.tenant.tenant_id, "system:test")


async def test_points_go_to_the_cell_locate_gives_and_outside_ones_stay_null(
    database: Database, grid: Grid
) -> None:
    points = BORDERS + OUTSIDE + block_points(300, seed=5)
    now = datetime.now(UTC)
    async with rolled_back(database, whole(grid)) as session:
        await session.execute(text(POINTS_DDL))
        await load(session, points)
        report = await assign_points(session, grid.tenant.tenant_id, "pts", as_of=now)
        assigned = await cells(session)
        expected = await located(session, grid.tenant.tenant_id, points, now)
    assert assigned == expected
    # The fixed cases by name: a border point goes to one cell, the lowest id among those covering it.
    a, b, c, d = (grid.cells[name] for name in "ABCD")
    assert [assigned[i] for i in range(1, len(BORDERS) + 1)] == [a, b, a, c, a, d, d, a]
    outside = range(len(BORDERS) + 1, len(BORDERS) + len(OUTSIDE) + 1)
    assert all(assigned[i] is None for i in outside)
    assert report.points == len(points)
    assert report.assigned == sum(cell is not None for cell in expected.values())
    assert report.unassigned >= len(OUTSIDE)
    assert report.changed == report.assigned  # every row started NULL; the NULL ones were not written


async def test_batches_report_progress_and_a_second_run_writes_nothing(
    database: Database, grid: Grid
) -> None:
    points = BORDERS + OUTSIDE + block_points(40, seed=9)
    calls: list[int] = []
    async with rolled_back(database, whole(grid)) as session:
        await session.execute(text(POINTS_DDL))
        await load(session, points)
        first = await assign_points(
            session, grid.tenant.tenant_id, "pts", batch_size=7, progress=calls.append
        )
        after_first = await cells(session)
        again = await assign_points(session, grid.tenant.tenant_id, "pts", batch_size=7)
        assert await cells(session) == after_first
        jit = await session.scalar(text("SELECT current_setting('jit')"))
        assert jit == await session.scalar(text("SELECT reset_val FROM pg_settings WHERE name = 'jit'"))
    batches = -(-len(points) // 7)
    assert calls == [7] * (batches - 1) + [len(points) - 7 * (batches - 1)]
    assert first.batches == again.batches == batches
    assert first.points == again.points == sum(calls)
    assert again.changed == 0
    assert again.assigned == first.assigned


async def test_an_empty_table_is_no_work(database: Database, grid: Grid) -> None:
    calls: list[int] = []
    async with rolled_back(database, whole(grid)) as session:
        await session.execute(text(POINTS_DDL))
        report = await assign_points(session, grid.tenant.tenant_id, "pts", progress=calls.append)
    assert report == AssignReport()
    assert calls == []


async def test_ids_anywhere_in_bigint_are_visited(database: Database, grid: Grid) -> None:
    async with rolled_back(database, whole(grid)) as session:
        await session.execute(text(POINTS_DDL))
        await session.execute(
            text("INSERT INTO pts (id, geom) VALUES (:id, ST_SetSRID(ST_MakePoint(116.405, 39.905), 4326))"),
            [{"id": key} for key in (-(2**63), -1, 0, 1, 2**63 - 1)],
        )
        report = await assign_points(session, grid.tenant.tenant_id, "pts", batch_size=2)
        assert set((await cells(session)).values()) == {grid.cells["D"]}
    assert (report.points, report.assigned, report.batches) == (5, 5, 3)


async def test_only_the_tenants_rows_of_a_shared_table_are_touched(
    database: Database, grid: Grid, alpha: TenantInfo
) -> None:
    tenant_id = grid.tenant.tenant_id
    async with rolled_back(database, whole(grid)) as session:
        await session.execute(text(TENANT_POINTS_DDL))
        await session.execute(
            text(
                "INSERT INTO tpts (tenant_id, id, geom, grid_cell_id) "
                "VALUES (:tenant_id, :id, ST_SetSRID(ST_MakePoint(116.405, 39.905), 4326), :cell)"
            ),
            [
                {"tenant_id": tenant_id, "id": 1, "cell": None},
                {"tenant_id": tenant_id, "id": 2, "cell": 999},  # a stale cell, corrected
                {"tenant_id": alpha.tenant_id, "id": 1, "cell": 999},  # another tenant's row: untouched
            ],
        )
        report = await assign_points(session, tenant_id, "tpts")
        rows = await session.execute(text("SELECT tenant_id, id, grid_cell_id FROM tpts"))
        found = {(int(row[0]), int(row[1])): row[2] for row in rows}
    assert found == {
        (tenant_id, 1): grid.cells["D"],
        (tenant_id, 2): grid.cells["D"],
        (alpha.tenant_id, 1): 999,
    }
    assert (report.points, report.changed) == (2, 2)


async def test_another_tenants_cells_are_invisible(database: Database, grid: Grid, alpha: TenantInfo) -> None:
    """Alpha has no cells: under RLS its assignment finds none, even when asked for geoville's tenant id."""
    async with rolled_back(database, TenantContext.whole_tenant(alpha.tenant_id, "system:test")) as session:
        await session.execute(text(POINTS_DDL))
        await load(session, BORDERS)
        report = await assign_points(session, grid.tenant.tenant_id, "pts")
        assert set((await cells(session)).values()) == {None}
    assert report.assigned == 0


async def test_a_scoped_session_assigns_only_to_its_cells(database: Database, grid: Grid) -> None:
    station_one = grid.stations[0][1]  # cells A and B
    context = TenantContext(grid.tenant.tenant_id, (station_one,), "user:1")
    now = datetime.now(UTC)
    async with rolled_back(database, context) as session:
        await session.execute(text(POINTS_DDL))
        await load(session, BORDERS)
        await assign_points(session, grid.tenant.tenant_id, "pts", as_of=now)
        assigned = await cells(session)
        assert assigned == await located(session, grid.tenant.tenant_id, BORDERS, now)
    a, b = grid.cells["A"], grid.cells["B"]
    # C|D's edge and the inside of D belong to station 2's cells: not visible, so NULL here.
    assert [assigned[i] for i in range(1, len(BORDERS) + 1)] == [a, b, a, None, a, None, None, a]


async def test_reassignment_after_a_boundary_change_follows_as_of(database: Database, grid: Grid) -> None:
    """Redraw cell A smaller (rolled back afterwards): points of its cut-off strip lose their cell for an
    `as_of` after the change, keep it before, and only the rows whose cell changed are written."""
    tenant_id = grid.tenant.tenant_id
    points = [(116.392, 39.895), (116.398, 39.895), (116.392, 39.899), (116.405, 39.905)]
    async with rolled_back(database, whole(grid)) as session:
        await session.execute(text(POINTS_DDL))
        await load(session, points)
        before = await session.scalar(text("SELECT now() - interval '1 microsecond'"))
        await assign_points(session, tenant_id, "pts")
        await set_boundary(
            session,
            tenant_id=tenant_id,
            level=BoundaryLevel.GRID,
            node_id=grid.cells["A"],
            scope=f"{grid.stations[0][1]}.g{grid.cells['A']}",
            geometry=MultiPolygon([box(116.395, 39.89, 116.40, 39.90)]),
        )
        later = datetime.now(UTC) + timedelta(seconds=1)
        moved = await assign_points(session, tenant_id, "pts", as_of=later)
        assert await cells(session) == await located(session, tenant_id, points, later)
        assert list((await cells(session)).values()) == [None, grid.cells["A"], None, grid.cells["D"]]
        back = await assign_points(session, tenant_id, "pts", as_of=before)
        assert list((await cells(session)).values()) == [grid.cells["A"]] * 3 + [grid.cells["D"]]
    assert (moved.changed, back.changed) == (2, 2)


async def test_before_any_boundary_existed_nothing_is_covered(database: Database, grid: Grid) -> None:
    async with rolled_back(database, whole(grid)) as session:
        await session.execute(text(POINTS_DDL))
        await load(session, BORDERS)
        report = await assign_points(
            session, grid.tenant.tenant_id, "pts", as_of=datetime(2000, 1, 1, tzinfo=UTC)
        )
        assert set((await cells(session)).values()) == {None}
    assert report.assigned == 0


def temp_table(columns: str) -> str:
    return f"CREATE TEMP TABLE bad ({columns}) ON COMMIT DROP"


@pytest.mark.parametrize(
    ("ddl", "table", "reason"),
    [
        (None, "pts; DROP TABLE boundaries", "not a plain lower-case table name"),
        (None, "Pts", "not a plain lower-case table name"),
        (None, "no_such_points", "no table"),
        (
            temp_table("id bigint PRIMARY KEY, geom geometry, grid_cell_id bigint"),
            "bad",
            "bad.geom must be geometry(Point,4326), not geometry",
        ),
        (
            temp_table("id bigint PRIMARY KEY, geom geometry(Point,4326)"),
            "bad",
            "bad.grid_cell_id must be bigint, not missing",
        ),
        (
            temp_table("id bigint, geom geometry(Point,4326), grid_cell_id bigint"),
            "bad",
            "needs a primary key or unique index on (id)",
        ),
        (
            "CREATE TEMP VIEW bad AS SELECT 1::bigint AS id, NULL::geometry(Point,4326) AS geom, "
            "NULL::bigint AS grid_cell_id",
            "bad",
            "no table",
        ),
    ],
)
async def test_a_table_that_is_not_a_points_table_is_refused(
    database: Database, grid: Grid, ddl: str | None, table: str, reason: str
) -> None:
    async with rolled_back(database, whole(grid)) as session:
        if ddl is not None:
            await session.execute(text(ddl))
        with pytest.raises(BadPointsTable, match=reason.replace("(", r"\(").replace(")", r"\)")):
            await assign_points(session, grid.tenant.tenant_id, table)


@pytest.mark.parametrize("batch_size", [0, -1, 10**7, True])
async def test_a_bad_batch_size_is_refused(database: Database, grid: Grid, batch_size: int) -> None:
    async with rolled_back(database, whole(grid)) as session:
        await session.execute(text(POINTS_DDL))
        with pytest.raises(ValueError, match="batch_size"):
            await assign_points(session, grid.tenant.tenant_id, "pts", batch_size=batch_size)


async def test_a_naive_as_of_is_refused(database: Database, grid: Grid) -> None:
    async with rolled_back(database, whole(grid)) as session:
        await session.execute(text(POINTS_DDL))
        with pytest.raises(ValueError, match="time zone"):
            await assign_points(session, grid.tenant.tenant_id, "pts", as_of=datetime(2030, 1, 1))


@pytest.mark.parametrize("whole_tenant", [True, False], ids=["tenant role", "scoped app role"])
async def test_the_batch_update_uses_the_gist_index_under_rls(
    database: Database, owner_dsn: str, grid: Grid, whole_tenant: bool
) -> None:
    with psycopg.connect(owner_dsn) as conn:
        conn.execute("ANALYZE boundaries")
    scopes = (grid.tenant.scope,) if whole_tenant else (grid.stations[2][1],)
    context = TenantContext(grid.tenant.tenant_id, scopes, "user:1")
    async with rolled_back(database, context) as session:
        await session.execute(text(POINTS_DDL))
        await load(session, block_points(200, seed=3))
        await session.execute(text("ANALYZE pts"))
        _, update = batch_statements(await points_table(session, "pts"))
        values = {
            "tenant_id": grid.tenant.tenant_id,
            "as_of": datetime.now(UTC),
            "lower": 1,
            "upper": 200,
        }
        plan = "\n".join(row[0] for row in await session.execute(text("EXPLAIN " + update), values))
    assert GIST_INDEX.search(plan), plan
