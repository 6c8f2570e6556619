from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import Enum
from typing import Any, cast

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.scalars import JSON

from schema.context import Info
from schema.hierarchy.types import Station, station_of
from schema.loaders import children
from schema.relay import Node, encode_id
from services.hierarchy.repository import Level
from services.matching import models, repository


@strawberry.enum
class DemandKind(Enum):
    BASIC = "basic"
    PERSONALISED = "personalised"


@strawberry.enum
class Urgency(Enum):
    NORMAL = "normal"
    URGENT = "urgent"
    CRITICAL = "critical"


@strawberry.enum
class DemandSource(Enum):
    REQUEST = "request"
    SURVEY = "survey"
    FORUM = "forum"
    VISIT = "visit"


@strawberry.enum
class DemandState(Enum):
    OPEN = "open"
    MATCHED = "matched"
    CLOSED = "closed"


@strawberry.enum
class OwnerKind(Enum):
    DEPUTY = "deputy"
    DEPARTMENT = "department"
    ORGANISATION = "organisation"
    ENTERPRISE = "enterprise"


@strawberry.enum
class Offer(Enum):
    SKILL = "skill"
    SERVICE = "service"
    FUNDING = "funding"
    VENUE = "venue"


@strawberry.enum
class MatchState(Enum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    CLOSED = "closed"


def _station_loader(info: Info) -> Any:
    return info.context.loaders.nodes(Level.STATION)


@strawberry.type(description="An item of a station's demand list (需求清单).")
class Demand(Node):
    key: strawberry.Private[int]
    tenant_id: strawberry.Private[int]
    station_key: strawberry.Private[int]
    category: str
    kind: DemandKind
    title: str
    detail: str
    households: int
    urgency: Urgency
    source: DemandSource
    request_id: strawberry.ID | None
    state: DemandState
    created_at: datetime

    @strawberry.field
    async def station(self, info: Info) -> Station | None:
        row = await _station_loader(info).load(self.station_key)
        return station_of(row) if row is not None else None

    @strawberry.field(description="The matches proposed for this demand, newest last.")
    async def matches(self, info: Info) -> list[Match]:
        tenant_id = self.tenant_id

        async def load_many(session: AsyncSession, ids: list[int]) -> Sequence[Any]:
            return await repository.matches_of_demands(session, tenant_id, ids)

        loader = children(info, "demand:matches", load_many, lambda row: int(row.demand_id))
        return [match_of(row) for row in await loader.load(self.key)]


def demand_of(row: models.Demand, category: str) -> Demand:
    return Demand(
        id=encode_id("Demand", row.id),
        key=row.id,
        tenant_id=row.tenant_id,
        station_key=row.station_id,
        category=category,
        kind=DemandKind(row.kind),
        title=row.title,
        detail=row.detail,
        households=row.households,
        urgency=Urgency(row.urgency),
        source=DemandSource(row.source),
        request_id=encode_id("Request", row.request_id) if row.request_id is not None else None,
        state=DemandState(row.state),
        created_at=row.created_at,
    )


@strawberry.type(description="An item of the resource list (资源清单).")
class Resource(Node):
    key: strawberry.Private[int]
    tenant_id: strawberry.Private[int]
    name: str
    owner_kind: OwnerKind
    offer: Offer
    skills: list[str]
    monthly_capacity: int
    description: str
    owner_principal: str | None
    deputy_id: strawberry.ID | None

    @strawberry.field(description="The stations the resource serves, as far as you may see them.")
    async def stations(self, info: Info) -> list[Station]:
        tenant_id = self.tenant_id

        async def load_many(session: AsyncSession, ids: list[int]) -> Sequence[Any]:
            return await repository.stations_of(session, tenant_id, ids)

        loader = children(info, "resource:stations", load_many, lambda pair: int(pair[0]))
        station_ids = [station for _, station in await loader.load(self.key)]
        rows = await _station_loader(info).load_many(station_ids)
        return [station_of(row) for row in rows if row is not None]


def resource_of(row: models.Resource) -> Resource:
    return Resource(
        id=encode_id("Resource", row.id),
        key=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        owner_kind=OwnerKind(row.owner_kind),
        offer=Offer(row.offer),
        skills=list(row.skills),
        monthly_capacity=row.monthly_capacity,
        description=row.description,
        owner_principal=row.owner_principal,
        deputy_id=encode_id("Deputy", row.deputy_id) if row.deputy_id is not None else None,
    )


@strawberry.type(
    description="A demand matched to a resource, with the terms of its score; once accepted, a project "
    "(需求-资源-项目-责任) with its owner, responsible unit and deadline."
)
class Match(Node):
    demand_key: strawberry.Private[int]
    resource_key: strawberry.Private[int]
    demand_id: strawberry.ID
    resource_id: strawberry.ID
    score: float
    terms: JSON
    state: MatchState
    owner_principal: str | None
    reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    project_owner: str | None
    responsible_unit: str | None
    deadline: date | None
    outcome: str | None
    rating: int | None
    closed_at: datetime | None
    created_at: datetime


def match_of(row: models.Match) -> Match:
    return Match(
        id=encode_id("Match", row.id),
        demand_key=row.demand_id,
        resource_key=row.resource_id,
        demand_id=encode_id("Demand", row.demand_id),
        resource_id=encode_id("Resource", row.resource_id),
        score=row.score,
        terms=cast(JSON, dict(row.terms)),
        state=MatchState(row.state),
        owner_principal=row.owner_principal,
        reason=row.reason,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        project_owner=row.project_owner,
        responsible_unit=row.responsible_unit,
        deadline=row.deadline,
        outcome=row.outcome,
        rating=row.rating,
        closed_at=row.closed_at,
        created_at=row.created_at,
    )


@strawberry.type(description="One batch match over a territory, against greedy on the same candidates.")
class MatchRun(Node):
    demands: int
    resources: int
    candidates: int
    matched: int
    total_score: float
    greedy_score: float
    seconds: float
    created_at: datetime


def run_of(row: models.MatchRun) -> MatchRun:
    return MatchRun(
        id=encode_id("MatchRun", row.id),
        demands=row.demands,
        resources=row.resources,
        candidates=row.candidates,
        matched=row.matched,
        total_score=row.total_score,
        greedy_score=row.greedy_score,
        seconds=row.seconds,
        created_at=row.created_at,
    )


@strawberry.type(
    description="Match accuracy over a period: accepted-and-satisfied matches (closed, rated at least "
    "80) over proposed matches."
)
class MatchAccuracy:
    proposed: int
    accepted: int
    satisfied: int
    accuracy: float | None


@strawberry.type(description="A CSV line the import refused, and why.")
class RefusedLine:
    line: int
    reason: str


@strawberry.type
class DemandImport:
    encoding: str
    dry_run: bool
    created: int
    refused: list[RefusedLine]
