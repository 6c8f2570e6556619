"""A small grid on real PostGIS shared by the geography tests."""

from __future__ import annotations

import re

import pytest
from shapely import box

from deploy.seed import seed_synthetic
from services.hierarchy import repository
from services.hierarchy.repository import Level
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tests.helpers import TenantInfo, add_square_cell

# Either spatial index on boundaries: all levels, or grid cells alone (migration 0003).
GIST_INDEX = re.compile(r"ix_boundaries_(grid_)?geom")

# Four 0.01-degree cells meeting at (116.40, 39.90):  C D  (station 2)
#                                                     A B  (station 1)
SQUARES = {
    "A": box(116.39, 39.89, 116.40, 39.90),
    "B": box(116.40, 39.89, 116.41, 39.90),
    "C": box(116.39, 39.90, 116.40, 39.91),
    "D": box(116.40, 39.90, 116.41, 39.91),
}


class Grid:
    def __init__(self, tenant: TenantInfo, cells: dict[str, int], stations: list[tuple[int, str]]) -> None:
        self.tenant = tenant
        self.cells = cells
        self.stations = stations


@pytest.fixture(scope="package")
async def grid(database: Database) -> Grid:
    result = await seed_synthetic(database, "geoville", districts=1, streets=1, stations=3, seed=11)
    tenant = TenantInfo("geoville", result.tenant_id)
    context = TenantContext.whole_tenant(tenant.tenant_id, "system:test")
    cells: dict[str, int] = {}
    async with unit_of_work(database, context) as session:
        page = await repository.page_of_all(
            session, Level.STATION, tenant.tenant_id, repository.PageArgs(first=10)
        )
        stations = [(row.id, row.scope) for row in page.rows]
        for name, square in SQUARES.items():
            station = stations[0] if name in "AB" else stations[1]
            cells[name] = await add_square_cell(
                session, tenant.tenant_id, station, f"G-{name}", f"网格{name}", square
            )
        # A denser block elsewhere, so the planner has a reason to use the index.
        for i in range(20):
            for j in range(20):
                square = box(117 + i * 0.001, 40 + j * 0.001, 117 + (i + 1) * 0.001, 40 + (j + 1) * 0.001)
                await add_square_cell(
                    session, tenant.tenant_id, stations[2], f"G-{i}-{j}", f"网格{i}-{j}", square
                )
    return Grid(tenant, cells, stations)
