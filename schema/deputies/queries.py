from __future__ import annotations

import strawberry
from graphql import GraphQLError

from schema.context import Info
from schema.deputies.types import (
    Coverage,
    Deputy,
    DeputySkill,
    StationCoverage,
    TeamSizeIssue,
    deputy_of,
    load_deputy,
)
from schema.hierarchy.types import station_of
from schema.permissions import SIGNED_IN
from schema.relay import BadGlobalId, Connection, connection, decode_id, id_page
from schema.territory import territory
from services.deputies import repository, service
from services.errors import DomainError
from services.hierarchy.repository import Level


def _invalid(message: str, field: str | None = None) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "INVALID_INPUT", "field": field})


async def territory_of(info: Info, node_id: strawberry.ID | None) -> str:
    """The scope of the territory `node_id` names, if the caller may see it; the whole city (as far as
    the caller sees it) when omitted."""
    principal = info.context.require_principal()
    if node_id is None:
        return f"c{principal.tenant_id}"
    async with info.context.db() as session:
        try:
            return await territory(session, principal.context, node_id)
        except DomainError as error:
            raise GraphQLError(error.message, extensions={"code": error.code, "field": error.field}) from None


@strawberry.type
class DeputiesQuery:
    @strawberry.field(permission_classes=SIGNED_IN, description="The city's skills vocabulary.")
    async def deputy_skills(self, info: Info) -> list[DeputySkill]:
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows = await repository.skills(session, tenant_id)
        return [DeputySkill(code=r.code, name=r.name, categories=list(r.categories)) for r in rows]

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Deputies kept in or above your scope, by id; `skill` keeps those who have it.",
    )
    async def deputies(
        self, info: Info, first: int = 50, after: str | None = None, skill: str | None = None
    ) -> Connection[Deputy]:
        size, after_id = id_page(first, after)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows = await repository.listing(session, tenant_id, after=after_id, limit=size + 1, skill=skill)
            total = await repository.count(session, tenant_id, skill)
        return connection(
            rows[:size],
            deputy_of,
            total=total,
            has_next=len(rows) > size,
            has_previous=after_id is not None,
            cursor_of=lambda row: str(row.id),
        )

    @strawberry.field(permission_classes=SIGNED_IN, description="A deputy by id, if you may see them.")
    async def deputy(self, info: Info, id: strawberry.ID) -> Deputy | None:
        try:
            _, key = decode_id(id, "Deputy")
        except BadGlobalId as error:
            raise _invalid(str(error), "id") from None
        return await load_deputy(info, key)

    @strawberry.field(permission_classes=SIGNED_IN, description="Your own deputy record (for a deputy).")
    async def my_deputy_record(self, info: Info) -> Deputy | None:
        principal = info.context.require_principal()
        async with info.context.db() as session:
            row = await repository.by_principal(session, principal.tenant_id, principal.sub)
        return deputy_of(row) if row is not None else None

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Which stations of a territory (your whole scope when omitted) have no deputy linked.",
    )
    async def deputy_coverage(self, info: Info, node_id: strawberry.ID | None = None) -> Coverage:
        scope = await territory_of(info, node_id)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows = await repository.coverage(session, tenant_id, scope)
        stations = await info.context.loaders.nodes(Level.STATION).load_many(
            [r.station_id for r in rows if r.deputies == 0]
        )
        covered = sum(1 for r in rows if r.deputies > 0)
        return Coverage(
            stations=len(rows),
            covered=covered,
            share=covered / len(rows) if rows else 1.0,
            uncovered=[station_of(s) for s in stations if s is not None],
        )

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Stations of a territory with the number of deputies linked to each.",
    )
    async def station_deputy_counts(
        self, info: Info, node_id: strawberry.ID | None = None
    ) -> list[StationCoverage]:
        scope = await territory_of(info, node_id)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows = await repository.coverage(session, tenant_id, scope)
        stations = await info.context.loaders.nodes(Level.STATION).load_many([r.station_id for r in rows])
        return [
            StationCoverage(station=station_of(s), deputies=r.deputies)
            for r, s in zip(rows, stations, strict=True)
            if s is not None
        ]

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Deputies kept in a territory whose volunteer team is not 3-5 people.",
    )
    async def deputy_team_sizes(
        self, info: Info, node_id: strawberry.ID | None = None
    ) -> list[TeamSizeIssue]:
        scope = await territory_of(info, node_id)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            found = await repository.teams_out_of_size(
                session, tenant_id, scope, service.TEAM_SMALLEST, service.TEAM_LARGEST
            )
            deputies = await repository.by_ids(session, tenant_id, [key for key, _ in found])
        return [
            TeamSizeIssue(deputy=deputy_of(deputies[key]), volunteers=size)
            for key, size in found
            if key in deputies
        ]
