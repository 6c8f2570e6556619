from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension

from schema.context import Info
from schema.deputies.types import Deputy, DeputyLevel, DeputySkill, DeputyVolunteer, deputy_of, volunteer_of
from schema.errors import (
    ConflictError,
    Error,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    OutOfScopeError,
)
from schema.mutations import parse_id, run_service
from schema.permissions import RequireRoles, RequireWholeCity
from schema.territory import territory
from services.deputies import service, skills
from services.deputies.models import Deputy as DeputyRow
from tenants.context import TenantContext
from tenants.roles import Role

MANAGERS_ONLY: list[FieldExtension] = [RequireRoles(*(Role(kind) for kind in sorted(service.MANAGERS)))]
CITY_ADMIN_ONLY: list[FieldExtension] = [RequireRoles(Role.CITY_ADMIN), RequireWholeCity()]
LIFTERS_ONLY: list[FieldExtension] = [RequireRoles(*(Role(kind) for kind in sorted(service.LIFTERS)))]


@strawberry.input
class CreateDeputyInput:
    name: str
    level: DeputyLevel
    term_start: date
    node_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="The District or Street that keeps the record (its staff manage it); else the city.",
    )
    term_end: date | None = None
    constituency: str = ""
    phone: str | None = None
    email: str | None = None
    skills: list[str] = strawberry.field(default_factory=list, description="Codes from deputySkills.")
    monthly_capacity: int = 10
    principal: str | None = strawberry.field(
        default=None, description="The user account the deputy signs in with, as user:<id>."
    )


@strawberry.input
class UpdateDeputyInput:
    name: str | None = None
    level: DeputyLevel | None = None
    term_start: date | None = None
    term_end: date | None = None
    constituency: str | None = None
    phone: str | None = None
    email: str | None = None
    skills: list[str] | None = None
    monthly_capacity: int | None = None
    principal: str | None = None


@strawberry.input
class AddVolunteerInput:
    deputy_id: strawberry.ID
    name: str
    phone: str | None = None
    skills: list[str] = strawberry.field(default_factory=list)


@strawberry.input
class SaveDeputySkillInput:
    code: str
    name: str
    categories: list[str] = strawberry.field(
        default_factory=list, description="Request category codes this skill serves."
    )


@strawberry.type
class DeputyPayload:
    deputy: Deputy


@strawberry.type
class DeputyVolunteerPayload:
    volunteer: DeputyVolunteer
    deputy: Deputy


@strawberry.type
class DeputySkillPayload:
    skill: DeputySkill


_Errors = NotFoundError | OutOfScopeError | InvalidInputError | ConflictError | ForbiddenError
DeputyResult = Annotated[DeputyPayload | _Errors, strawberry.union("DeputyResult")]
VolunteerResult = Annotated[DeputyVolunteerPayload | _Errors, strawberry.union("DeputyVolunteerResult")]
SkillResult = Annotated[DeputySkillPayload | _Errors, strawberry.union("DeputySkillResult")]

Step = Callable[[AsyncSession, TenantContext, frozenset[str]], Awaitable[DeputyRow]]


def _kinds(info: Info) -> frozenset[str]:
    return frozenset(role.value for role in info.context.require_principal().roles)


async def _deputy_step(info: Info, step: Step) -> DeputyPayload | Error:
    kinds = _kinds(info)

    async def work(session: AsyncSession, actor: TenantContext) -> DeputyPayload:
        return DeputyPayload(deputy=deputy_of(await step(session, actor, kinds)))

    return await run_service(info, work)


def _deputy_key(global_id: str, field: str = "deputyId") -> int:
    return parse_id(global_id, field, "Deputy")[1]


def _station_key(global_id: str) -> int:
    return parse_id(global_id, "stationId", "Station")[1]


@strawberry.type
class DeputiesMutation:
    @strawberry.mutation(extensions=MANAGERS_ONLY, description="Keep a new deputy record.")
    async def create_deputy(self, info: Info, input: CreateDeputyInput) -> DeputyResult:
        async def step(session: AsyncSession, actor: TenantContext, kinds: frozenset[str]) -> DeputyRow:
            scope = await territory(
                session, actor, input.node_id, levels=("District", "Street"), whole_city="the city"
            )
            data = service.DeputyInput(
                name=input.name,
                level=input.level.value,
                term_start=input.term_start,
                term_end=input.term_end,
                constituency=input.constituency,
                phone=input.phone,
                email=input.email,
                skills=tuple(input.skills),
                monthly_capacity=input.monthly_capacity,
                principal=input.principal,
            )
            return await service.create(session, actor, kinds, scope, data)

        return await _deputy_step(info, step)  # type: ignore[return-value]

    @strawberry.mutation(extensions=MANAGERS_ONLY, description="Change a deputy record (fields given).")
    async def update_deputy(self, info: Info, id: strawberry.ID, input: UpdateDeputyInput) -> DeputyResult:
        changes: dict[str, object] = {name: value for name, value in vars(input).items() if value is not None}
        if input.level is not None:
            changes["level"] = input.level.value
        if input.skills is not None:
            changes["skills"] = tuple(input.skills)

        async def step(session: AsyncSession, actor: TenantContext, kinds: frozenset[str]) -> DeputyRow:
            return await service.update(session, actor, kinds, _deputy_key(id, "id"), changes)

        return await _deputy_step(info, step)  # type: ignore[return-value]

    @strawberry.mutation(extensions=MANAGERS_ONLY, description="Link a deputy to a station (代表联系社区).")
    async def link_deputy_to_station(
        self, info: Info, deputy_id: strawberry.ID, station_id: strawberry.ID
    ) -> DeputyResult:
        async def step(session: AsyncSession, actor: TenantContext, kinds: frozenset[str]) -> DeputyRow:
            return await service.link(session, actor, kinds, _deputy_key(deputy_id), _station_key(station_id))

        return await _deputy_step(info, step)  # type: ignore[return-value]

    @strawberry.mutation(extensions=MANAGERS_ONLY, description="Remove a deputy's link to a station.")
    async def unlink_deputy_from_station(
        self, info: Info, deputy_id: strawberry.ID, station_id: strawberry.ID
    ) -> DeputyResult:
        async def step(session: AsyncSession, actor: TenantContext, kinds: frozenset[str]) -> DeputyRow:
            return await service.unlink(
                session, actor, kinds, _deputy_key(deputy_id), _station_key(station_id)
            )

        return await _deputy_step(info, step)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=LIFTERS_ONLY,
        description="Suspend or resume automatic routing of requests to a deputy (district staff).",
    )
    async def set_deputy_routing_suspended(
        self, info: Info, deputy_id: strawberry.ID, suspended: bool
    ) -> DeputyResult:
        async def step(session: AsyncSession, actor: TenantContext, kinds: frozenset[str]) -> DeputyRow:
            return await service.set_routing_suspended(
                session, actor, kinds, _deputy_key(deputy_id), suspended
            )

        return await _deputy_step(info, step)  # type: ignore[return-value]

    @strawberry.mutation(extensions=MANAGERS_ONLY, description="Add a volunteer to a deputy's team.")
    async def add_deputy_volunteer(self, info: Info, input: AddVolunteerInput) -> VolunteerResult:
        kinds = _kinds(info)

        async def work(session: AsyncSession, actor: TenantContext) -> DeputyVolunteerPayload:
            data = service.VolunteerInput(name=input.name, phone=input.phone, skills=tuple(input.skills))
            key = _deputy_key(input.deputy_id)
            row = await service.add_volunteer(session, actor, kinds, key, data)
            deputy = await service.kept(session, actor, key)
            return DeputyVolunteerPayload(volunteer=volunteer_of(row), deputy=deputy_of(deputy))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=MANAGERS_ONLY, description="Remove a volunteer from a deputy's team.")
    async def remove_deputy_volunteer(self, info: Info, volunteer_id: strawberry.ID) -> DeputyResult:
        async def step(session: AsyncSession, actor: TenantContext, kinds: frozenset[str]) -> DeputyRow:
            key = parse_id(volunteer_id, "volunteerId", "DeputyVolunteer")[1]
            return await service.remove_volunteer(session, actor, kinds, key)

        return await _deputy_step(info, step)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=CITY_ADMIN_ONLY,
        description="Add a skill to the city's vocabulary, or rename one and change its categories.",
    )
    async def save_deputy_skill(self, info: Info, input: SaveDeputySkillInput) -> SkillResult:
        async def work(session: AsyncSession, actor: TenantContext) -> DeputySkillPayload:
            row = await skills.save(session, actor, input.code, input.name, tuple(input.categories))
            return DeputySkillPayload(
                skill=DeputySkill(code=row.code, name=row.name, categories=list(row.categories))
            )

        return await run_service(info, work)  # type: ignore[return-value]
