from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import Enum
from typing import Any

import strawberry
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession

from schema.context import Info
from schema.hierarchy.types import Station, station_of
from schema.loaders import children
from schema.relay import BadGlobalId, Node, decode_id, encode_id
from services.deputies import models, repository
from services.hierarchy.repository import Level


@strawberry.enum
class DeputyLevel(Enum):
    NATIONAL = "national"
    MUNICIPAL = "municipal"
    DISTRICT = "district"


@strawberry.type(description="A word of the city's skills vocabulary and the request categories it serves.")
class DeputySkill:
    code: str
    name: str
    categories: list[str]


@strawberry.type
class DeputyVolunteer(Node):
    name: str
    phone: str | None
    skills: list[str]


def volunteer_of(row: models.DeputyVolunteer) -> DeputyVolunteer:
    return DeputyVolunteer(
        id=encode_id("DeputyVolunteer", row.id), name=row.name, phone=row.phone, skills=list(row.skills)
    )


@strawberry.type(description="A people's-congress deputy (人大代表) and the stations they are linked to.")
class Deputy(Node):
    key: strawberry.Private[int]
    tenant_id: strawberry.Private[int]
    name: str
    level: DeputyLevel
    term_start: date
    term_end: date | None
    constituency: str
    phone: str | None
    email: str | None
    skills: list[str]
    monthly_capacity: int
    principal: str | None
    synthetic: bool
    routing_suspended_at: datetime | None

    @strawberry.field(description="The stations the deputy is linked to, as far as you may see them.")
    async def stations(self, info: Info) -> list[Station]:
        tenant_id = self.tenant_id

        async def load_many(session: AsyncSession, ids: list[int]) -> Sequence[Any]:
            links = await repository.links_of(session, tenant_id, ids)
            return [(deputy, station) for deputy, found in links.items() for station in found]

        loader = children(info, "deputy:stations", load_many, lambda pair: int(pair[0]))
        station_ids = [station for _, station in await loader.load(self.key)]
        rows = await info.context.loaders.nodes(Level.STATION).load_many(station_ids)
        return [station_of(row) for row in rows if row is not None]

    @strawberry.field(description="The volunteer team (一名代表+3-5名志愿者).")
    async def volunteers(self, info: Info) -> list[DeputyVolunteer]:
        tenant_id = self.tenant_id

        async def load_many(session: AsyncSession, ids: list[int]) -> Sequence[Any]:
            found = await repository.volunteers_of(session, tenant_id, ids)
            return [row for rows in found.values() for row in rows]

        loader = children(info, "deputy:volunteers", load_many, lambda row: int(row.deputy_id))
        return [volunteer_of(row) for row in await loader.load(self.key)]


def deputy_of(row: models.Deputy) -> Deputy:
    return Deputy(
        id=encode_id("Deputy", row.id),
        key=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        level=DeputyLevel(row.level),
        term_start=row.term_start,
        term_end=row.term_end,
        constituency=row.constituency,
        phone=row.phone,
        email=row.email,
        skills=list(row.skills),
        monthly_capacity=row.monthly_capacity,
        principal=row.principal,
        synthetic=row.synthetic,
        routing_suspended_at=row.routing_suspended_at,
    )


def deputy_key(deputy_id: str, field: str = "deputyId") -> int:
    """The key of a Deputy id argument of a query (INVALID_INPUT for anything else)."""
    try:
        return decode_id(deputy_id, "Deputy")[1]
    except BadGlobalId as error:
        raise GraphQLError(str(error), extensions={"code": "INVALID_INPUT", "field": field}) from None


async def load_deputy(info: Info, key: int) -> Deputy | None:
    tenant_id = info.context.require_principal().tenant_id
    async with info.context.db() as session:
        row = await repository.get(session, tenant_id, key)
    return deputy_of(row) if row is not None else None


@strawberry.type(description="A station and how many deputies are linked to it.")
class StationCoverage:
    station: Station
    deputies: int


@strawberry.type(description="Which stations of a scope no deputy serves (every station needs one).")
class Coverage:
    stations: int
    covered: int
    share: float
    uncovered: list[Station]


@strawberry.type(description="A deputy whose volunteer team is smaller or larger than 3-5.")
class TeamSizeIssue:
    deputy: Deputy
    volunteers: int
