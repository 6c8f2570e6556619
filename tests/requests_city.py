"""A small city for request tests: 2 districts x 1 street x 2 stations, one 0.01° grid cell per station,
a deputy linked to each station. Station k's cell is the box with its lower-left corner at
(116.40 + 0.01 k, 39.90); `point(k)` is its centre. The districts' boundaries are the boxes 116.38-116.42
and 116.42-116.46 by 39.88-39.98, so the city has an outline: `uncovered` lies in it outside every cell,
`outside` is far from it (Tianjin's GCJ-02 point)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shapely import MultiPolygon, Polygon, box
from sqlalchemy import select

from deploy.seed import seed_synthetic
from geo.boundaries import BoundaryLevel, set_boundary
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tenants.models import District, Station, Street
from tests.helpers import Api, TenantInfo, add_square_cell, create_station_user

ORIGIN_LON, ORIGIN_LAT, SIZE = 116.40, 39.90, 0.01
DISTRICT_WEST, DISTRICT_WIDTH = 116.38, 0.04


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
    def uncovered(self) -> tuple[float, float]:
        """In district 1, outside every grid cell."""
        return 116.39, 39.95

    @property
    def outside(self) -> tuple[float, float]:
        """Tianjin (GCJ-02 117.2, 39.1 is about there in WGS84): far outside the city."""
        return 117.19, 39.10


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
        districts = (
            await session.execute(
                select(District.id, District.scope)
                .where(District.tenant_id == tenant.tenant_id)
                .order_by(District.code)
            )
        ).all()
        for d, district in enumerate(districts):
            west = DISTRICT_WEST + DISTRICT_WIDTH * d
            await set_boundary(
                session,
                tenant_id=tenant.tenant_id,
                level=BoundaryLevel.DISTRICT,
                node_id=district.id,
                scope=district.scope,
                geometry=MultiPolygon([box(west, 39.88, west + DISTRICT_WIDTH, 39.98)]),
            )
        for k, row in enumerate(rows):
            square = box(ORIGIN_LON + SIZE * k, ORIGIN_LAT, ORIGIN_LON + SIZE * (k + 1), ORIGIN_LAT + SIZE)
            cell = await add_square_cell(
                session, tenant.tenant_id, (row.id, row.scope), f"G{k}", f"网格{k}", square
            )
            deputy = await create_station_user(
                session, tenant.tenant_id, row.scope, f"deputy{k}", f"代表{k}", password="deputy-password"
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


async def add_cell(database: Database, city: City, k: int, code: str, name: str, square: Polygon) -> int:
    """A further grid cell of station k covering `square`, added by the system; its id."""
    station = city.stations[k]
    async with unit_of_work(
        database, TenantContext.whole_tenant(city.tenant.tenant_id, "system:test")
    ) as session:
        return await add_square_cell(
            session, city.tenant.tenant_id, (station.id, station.scope), code, name, square
        )


# Through /graphql: the requests API as its clients use it.

SUBMIT = """
mutation($input: SubmitRequestInput!) {
  submitRequest(input: $input) {
    __typename
    ... on SubmitRequestPayload {
      ticket checkCode ratingCode routed created possibleDuplicates { ticket }
      progress { stationName agencyResponsible responseDueAt resolutionDueAt steps { step state note } }
    }
    ... on Error { code message field }
  }
}"""
PROGRESS = """
query($c: String!, $t: String!, $k: String!) { requestProgress(tenant: $c, ticket: $t, checkCode: $k) {
  ticket state closed stationName agencyResponsible responseDueAt resolutionDueAt steps { step state note }
  mergedInto { ticket state closed steps { step state note } } } }"""
RATE = """
mutation($id: ID!, $score: Int!, $solved: Boolean!) { rateRequest(id: $id, score: $score, solved: $solved) {
  __typename ... on RequestPayload { request { ticket state rating level escalations supervision overdue } }
  ... on Error { code message field } } }"""


def location(city: City, k: int) -> dict[str, float]:
    lon, lat = city.point(k)
    return {"longitude": lon, "latitude": lat}


async def submit(api: Api, city: City, k: int, token: str | None = None, **extra: Any) -> dict[str, Any]:
    """submitRequest at station k's cell; anonymous (naming the city) without a token."""
    values: dict[str, Any] = {
        "category": "environment",
        "description": "路灯不亮",
        "location": location(city, k),
    }
    values.update(extra)
    if token is None:
        values.setdefault("tenant", city.tenant.code)
    result: dict[str, Any] = (await api.gql(SUBMIT, {"input": values}, token))["submitRequest"]
    return result


async def request_id(api: Api, city: City, ticket: str) -> str:
    admin = api.token(city.tenant, ["city_admin"])
    found = await api.gql("query($t: String!) { request(ticket: $t) { id } }", {"t": ticket}, admin)
    return str(found["request"]["id"])


async def take(api: Api, token: str, mutation: str, request: str, **arguments: Any) -> dict[str, Any]:
    """One step (`acceptRequest`, ...) with literal GraphQL arguments, answering the payload or the error."""
    spelled = "".join(f", {name}: {value}" for name, value in arguments.items())
    query = (
        f"mutation($id: ID!) {{ {mutation}(id: $id{spelled}) {{ __typename "
        "... on RequestPayload { request { state assignee level escalations supervision overdue "
        "availableSteps } } ... on Error { code message field } } }"
    )
    answer: dict[str, Any] = (await api.gql(query, {"id": request}, token))[mutation]
    return answer


async def resolved(api: Api, city: City, k: int, ticket: str, note: str = '"已处理"') -> str:
    """Accept, assign and resolve a request at station k as its liaison; its id."""
    liaison = api.token(city.tenant, ["station_liaison"], [city.stations[k].scope], sub="user:9501")
    key = await request_id(api, city, ticket)
    assert (await take(api, liaison, "acceptRequest", key))["__typename"] == "RequestPayload"
    assert (await take(api, liaison, "assignRequest", key, assignee='"user:9501"'))[
        "__typename"
    ] == "RequestPayload"
    done = await take(api, liaison, "resolveRequest", key, note=note)
    assert done["request"]["state"] == "RESOLVED", done
    return key
