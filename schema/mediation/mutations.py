from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension

from schema.context import Info
from schema.errors import (
    ConflictError,
    Error,
    ForbiddenError,
    IllegalTransitionError,
    InvalidInputError,
    NotFoundError,
    OutOfScopeError,
)
from schema.mediation.types import CaseType, MediationCase, PartyRole, case_of
from schema.mutations import parse_id, run_service
from schema.permissions import RequireRoles
from services.hierarchy import repository as hierarchy
from services.hierarchy.repository import Level
from services.mediation import repository, service
from services.mediation.models import MediationCase as CaseRow
from services.reach import not_found
from tenants.context import TenantContext
from tenants.roles import Role

STAFF_ONLY: list[FieldExtension] = [RequireRoles(*service.STAFF)]
MEDIATORS: list[FieldExtension] = [RequireRoles(*service.STAFF, Role.DEPUTY)]


@strawberry.input(name="MediationPartyInput")
class PartyInput:
    name: str
    role: PartyRole
    principal: str | None = strawberry.field(
        default=None, description="The party's account (user:<id>), if any."
    )


@strawberry.input(name="MediationDeadlineInput")
class LevelDeadlineInput:
    level: int
    hours: int | None = None
    working_days: int | None = None


@strawberry.input
class OpenMediationCaseInput:
    station_id: strawberry.ID
    case_type: CaseType
    description: str
    parties: list[PartyInput]
    request_id: strawberry.ID | None = None
    mediator: str | None = strawberry.field(
        default=None, description="Level 1 mediator; default: the caller."
    )
    departments: list[str] = strawberry.field(
        default_factory=list, description="For level 3, if it comes to that."
    )
    deadlines: list[LevelDeadlineInput] = strawberry.field(default_factory=list)


@strawberry.input
class MediationSessionInput:
    case_id: strawberry.ID
    held_on: date
    participants: list[str] = strawberry.field(default_factory=list)
    notes: str = ""


@strawberry.input
class MediationOutcomeInput:
    case_id: strawberry.ID
    agreed: bool
    agreement: str | None = None
    note: str | None = None
    deputy: str | None = strawberry.field(default=None, description="Level 2 deputy; default: the station's.")
    departments: list[str] = strawberry.field(default_factory=list, description="Level 3 departments.")


@strawberry.type
class MediationCasePayload:
    case: MediationCase


@strawberry.type
class MediationSessionPayload:
    case: MediationCase
    session_id: strawberry.ID


_Errors = (
    NotFoundError
    | OutOfScopeError
    | InvalidInputError
    | ConflictError
    | ForbiddenError
    | IllegalTransitionError
)
MediationCaseResult = Annotated[MediationCasePayload | _Errors, strawberry.union("MediationCaseResult")]
MediationSessionResult = Annotated[
    MediationSessionPayload | _Errors, strawberry.union("MediationSessionResult")
]


def _kinds(info: Info) -> frozenset[str]:
    return frozenset(role.value for role in info.context.require_principal().roles)


async def _case_step(
    info: Info,
    case_id: strawberry.ID,
    step: Callable[[AsyncSession, int, str, frozenset[str], int], Awaitable[CaseRow]],
) -> MediationCasePayload | Error:
    kinds = _kinds(info)

    async def work(session: AsyncSession, actor: TenantContext) -> MediationCasePayload:
        _, key = parse_id(case_id, "caseId", "MediationCase")
        row = await step(session, actor.tenant_id, actor.principal, kinds, key)
        return MediationCasePayload(case=case_of(row))

    return await run_service(info, work)


@strawberry.type
class MediationMutation:
    @strawberry.mutation(
        extensions=STAFF_ONLY, description="Open a dispute case at level 1 (community mediation)."
    )
    async def open_mediation_case(self, info: Info, input: OpenMediationCaseInput) -> MediationCaseResult:
        kinds = _kinds(info)

        async def work(session: AsyncSession, actor: TenantContext) -> MediationCasePayload:
            _, station_key = parse_id(input.station_id, "stationId", "Station")
            station = (await hierarchy.by_ids(session, Level.STATION, actor.tenant_id, [station_key])).get(
                station_key
            )
            if station is None:
                raise not_found(f"station {station_key}", field="stationId")
            request_key = parse_id(input.request_id, "requestId", "Request")[1] if input.request_id else None
            opening = service.Opening(
                scope=str(station.scope),
                case_type=input.case_type.value,
                description=input.description,
                parties=[service.Party(p.name, p.role.value, p.principal) for p in input.parties],
                request_id=request_key,
                mediator=input.mediator,
                departments=input.departments,
                deadlines=[service.Deadline(d.level, d.hours, d.working_days) for d in input.deadlines],
            )
            row = await service.open_case(session, actor, kinds, opening)
            return MediationCasePayload(case=case_of(row))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=MEDIATORS, description="Record a session held at the running level.")
    async def record_mediation_session(
        self, info: Info, input: MediationSessionInput
    ) -> MediationSessionResult:
        kinds = _kinds(info)

        async def work(session: AsyncSession, actor: TenantContext) -> MediationSessionPayload:
            _, key = parse_id(input.case_id, "caseId", "MediationCase")
            sitting = await service.record_session(
                session,
                actor.tenant_id,
                actor.principal,
                kinds,
                key,
                held_on=input.held_on,
                participants=input.participants,
                notes=input.notes,
            )
            row = await repository.get(session, actor.tenant_id, key)
            if row is None:
                raise not_found(f"mediation case {key}", field="caseId")
            return MediationSessionPayload(case=case_of(row), session_id=strawberry.ID(str(sitting.id)))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=MEDIATORS,
        description="The running level's outcome: an agreement resolves the case, a failure moves it up.",
    )
    async def record_mediation_outcome(self, info: Info, input: MediationOutcomeInput) -> MediationCaseResult:
        async def step(
            session: AsyncSession, tenant_id: int, actor: str, kinds: frozenset[str], key: int
        ) -> CaseRow:
            return await service.record_outcome(
                session,
                tenant_id,
                actor,
                kinds,
                key,
                agreed=input.agreed,
                agreement=input.agreement,
                note=input.note,
                deputy=input.deputy,
                departments=input.departments,
            )

        return await _case_step(info, input.case_id, step)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=STAFF_ONLY, description="Name the mediator of the running level (1 or 2)."
    )
    async def assign_mediator(self, info: Info, case_id: strawberry.ID, mediator: str) -> MediationCaseResult:
        async def step(
            session: AsyncSession, tenant_id: int, actor: str, kinds: frozenset[str], key: int
        ) -> CaseRow:
            return await service.assign_mediator(session, tenant_id, actor, kinds, key, mediator)

        return await _case_step(info, case_id, step)  # type: ignore[return-value]

    @strawberry.mutation(extensions=STAFF_ONLY, description="Withdraw a case, with a reason.")
    async def withdraw_mediation_case(
        self, info: Info, case_id: strawberry.ID, reason: str
    ) -> MediationCaseResult:
        async def step(
            session: AsyncSession, tenant_id: int, actor: str, kinds: frozenset[str], key: int
        ) -> CaseRow:
            return await service.withdraw(session, tenant_id, actor, kinds, key, reason)

        return await _case_step(info, case_id, step)  # type: ignore[return-value]
