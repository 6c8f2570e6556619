"""A small city for request tests: 2 districts x 1 street x 2 stations, one 0.01° grid cell per station,
a deputy linked to each station. Station k's cell is the box with its lower-left corner at
(116.40 + 0.01 k, 39.90); `point(k)` is its centre."""

from __future__ import annotations

from dataclasses import dataclass

from shapely import MultiPolygon, box
from sqlalchemy import select

from deploy.seed import seed_synthetic
from geo.boundaries import add_grid_cell
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tenants.identity import Assignment, create_user
from tenants.models import Station, Street
from tenants.roles import Role
from tests.helpers import TenantInfo

ORIGIN_LON, ORIGIN_LAT, SIZE = 116.40, 39.90, 0.01


@dataclass(frozen=True)
class StationInfo:
    id: int
    code: str
    scope: str
    street_scope: str
    district_scope: str
    district_id: int
    grid_cell_id: int
    deputy: str  # principal of its deputy


@dataclass(frozen=True)
class City:
    tenant: TenantInfo
    stations: list[StationInfo]

    def point(self, k: int) -> tuple[float, float]:
        return ORIGIN_LON + SIZE * k + SIZE / 2, ORIGIN_LAT + SIZE / 2

    @property
    def outside(self) -> tuple[float, float]:
        return 100.0, 30.0


async def build_city(database: Database, code: str) -> City:
    result = await seed_synthetic(database, code, districts=2, streets=1, stations=2, seed=3)
    tenant = TenantInfo(code, result.tenant_id)
    context = TenantContext.whole_tenant(tenant.tenant_id, "system:test")
    stations: list[StationInfo] = []
    async with unit_of_work(database, context) as session:
        rows = (
            await session.execute(
                select(
                    Station.id,
                    Station.code,
                    Station.scope,
                    Street.scope.label("street_scope"),
                    Street.district_id,
                )
                .join(Street, (Street.tenant_id == Station.tenant_id) & (Street.id == Station.street_id))
                .where(Station.tenant_id == tenant.tenant_id)
                .order_by(Station.code)
            )
        ).all()
        for k, row in enumerate(rows):
            square = box(ORIGIN_LON + SIZE * k, ORIGIN_LAT, ORIGIN_LON + SIZE * (k + 1), ORIGIN_LAT + SIZE)
            cell = await add_grid_cell(
                session,
                tenant_id=tenant.tenant_id,
                station_id=row.id,
                station_scope=row.scope,
                code=f"G{k}",
                name=f"网格{k}",
                geometry=MultiPolygon([square]),
            )
            deputy = await create_user(
                session,
                tenant.tenant_id,
                username=f"deputy{k}",
                password="deputy-password",
                display_name=f"代表{k}",
                home_scope=row.scope,
                assignments=[Assignment(Role.DEPUTY, row.scope)],
            )
            stations.append(
                StationInfo(
                    id=row.id,
                    code=row.code,
                    scope=row.scope,
                    street_scope=row.street_scope,
                    district_scope=row.street_scope.rsplit(".", 1)[0],
                    district_id=row.district_id,
                    grid_cell_id=cell,
                    deputy=f"user:{deputy.id}",
                )
            )
    return City(tenant, stations)
