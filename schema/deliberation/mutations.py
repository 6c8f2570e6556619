from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension

from schema.context import Info
from schema.deliberation.types import (
    AgeBand,
    ApprovalBase,
    Deliberation,
    Registration,
    Residency,
    Tenure,
    VoteChoice,
    deliberation_of,
    registration_of,
)
from schema.errors import (
    ConflictError,
    Error,
    ForbiddenError,
    IllegalTransitionError,
    InvalidInputError,
    NotFoundError,
    OutOfScopeError,
)
from schema.mutations import as_payload, parse_id, run_service
from schema.permissions import RequireRoles
from services.deliberation import service
from services.deliberation.models import Deliberation as DeliberationRow
from services.errors import NotFound
from services.hierarchy import repository as hierarchy
from services.hierarchy.repository import Level
from tenants.context import TenantContext
from tenants.roles import Role

T = TypeVar("T")
STAFF_ONLY: list[FieldExtension] = [RequireRoles(*service.STAFF)]
RESIDENTS_ONLY: list[FieldExtension] = [RequireRoles(Role.RESIDENT)]


@strawberry.input
class ProposeDeliberationInput:
    node_id: strawberry.ID = strawberry.field(
        description="The Station or Street whose residents it is put to."
    )
    topic: str
    meeting_at: datetime
    registration_deadline: datetime
    voting_closes_at: datetime
    capacity: int
    quorum: int = strawberry.field(description="Attendees needed for the vote to count.")
    description: str = ""
    place: str | None = None
    approval_numerator: int = 2
    approval_denominator: int = 3
    approval_base: ApprovalBase = ApprovalBase.ATTENDEES
    capture_percent: int = 60


@strawberry.input(name="RegisterForDeliberationInput")
class RegisterInput:
    deliberation_id: strawberry.ID
    display_name: str
    age_band: AgeBand
    tenure: Tenure
    residency: Residency
    retired_cadre: bool = False


@strawberry.type
class DeliberationPayload:
    deliberation: Deliberation


@strawberry.type(name="DeliberationRegistrationPayload")
class RegistrationPayload:
    registration: Registration


@strawberry.type(name="DeliberationVotePayload")
class VotePayload:
    choice: VoteChoice


_Errors = (
    NotFoundError
    | OutOfScopeError
    | InvalidInputError
    | ConflictError
    | ForbiddenError
    | IllegalTransitionError
)
DeliberationResult = Annotated[DeliberationPayload | _Errors, strawberry.union("DeliberationResult")]
RegistrationResult = Annotated[
    RegistrationPayload | _Errors, strawberry.union("DeliberationRegistrationResult")
]
VoteResult = Annotated[VotePayload | _Errors, strawberry.union("DeliberationVoteResult")]

StaffStep = Callable[[AsyncSession, int, str, frozenset[str], int], Awaitable[DeliberationRow]]


def _kinds(info: Info) -> frozenset[str]:
    return frozenset(role.value for role in info.context.require_principal().roles)


async def _staff_step(info: Info, id: strawberry.ID, step: StaffStep) -> DeliberationPayload | Error:
    kinds = _kinds(info)

    async def work(session: AsyncSession, actor: TenantContext) -> DeliberationPayload:
        _, key = parse_id(id, "id", "Deliberation")
        row = await step(session, actor.tenant_id, actor.principal, kinds, key)
        return DeliberationPayload(deliberation=deliberation_of(row))

    return await run_service(info, work)


async def _as_resident(
    info: Info, deliberation_id: strawberry.ID, work: Callable[[AsyncSession, int, str, int], Awaitable[T]]
) -> T | Error:
    principal = info.context.require_principal()

    async def run() -> T:
        _, key = parse_id(deliberation_id, "deliberationId", "Deliberation")
        return await service.as_resident(
            info.context.config.database,
            principal.tenant_id,
            principal.scopes,
            principal.sub,
            key,
            lambda session: work(session, principal.tenant_id, principal.sub, key),
        )

    return await as_payload(run)


async def _scope_of_node(session: AsyncSession, tenant_id: int, node_id: str) -> str:
    type_name, key = parse_id(node_id, "nodeId", "Station", "Street")
    level = Level.STATION if type_name == "Station" else Level.STREET
    node = (await hierarchy.by_ids(session, level, tenant_id, [key])).get(key)
    if node is None:
        raise NotFound(f"no {type_name.lower()} {node_id} in your scope", field="nodeId")
    return str(node.scope)


@strawberry.type
class DeliberationMutation:
    @strawberry.mutation(
        extensions=STAFF_ONLY, description="Put a topic to the residents of a station or street."
    )
    async def propose_deliberation(self, info: Info, input: ProposeDeliberationInput) -> DeliberationResult:
        kinds = _kinds(info)

        async def work(session: AsyncSession, actor: TenantContext) -> DeliberationPayload:
            scope = await _scope_of_node(session, actor.tenant_id, input.node_id)
            proposal = service.Proposal(
                scope=scope,
                topic=input.topic,
                meeting_at=input.meeting_at,
                registration_deadline=input.registration_deadline,
                voting_closes_at=input.voting_closes_at,
                capacity=input.capacity,
                quorum=input.quorum,
                description=input.description,
                place=input.place,
                approval_numerator=input.approval_numerator,
                approval_denominator=input.approval_denominator,
                approval_base=input.approval_base.value,
                capture_percent=input.capture_percent,
            )
            row = await service.propose(session, actor, kinds, proposal)
            return DeliberationPayload(deliberation=deliberation_of(row))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=STAFF_ONLY, description="Close registration before its deadline.")
    async def close_deliberation_registration(self, info: Info, id: strawberry.ID) -> DeliberationResult:
        return await _staff_step(info, id, service.close_registration)  # type: ignore[return-value]

    @strawberry.mutation(extensions=STAFF_ONLY, description="Record who attended (registration ids).")
    async def mark_deliberation_attendance(
        self, info: Info, id: strawberry.ID, registration_ids: list[strawberry.ID]
    ) -> DeliberationResult:
        async def step(
            session: AsyncSession, tenant_id: int, actor: str, kinds: frozenset[str], key: int
        ) -> DeliberationRow:
            keys = [parse_id(r, "registrationIds", "DeliberationRegistration")[1] for r in registration_ids]
            return await service.mark_attendance(session, tenant_id, actor, kinds, key, keys)

        return await _staff_step(info, id, step)  # type: ignore[return-value]

    @strawberry.mutation(extensions=STAFF_ONLY, description="Open the vote to the attendees.")
    async def open_deliberation_voting(self, info: Info, id: strawberry.ID) -> DeliberationResult:
        return await _staff_step(info, id, service.open_voting)  # type: ignore[return-value]

    @strawberry.mutation(extensions=STAFF_ONLY, description="Close the vote now and tally it.")
    async def close_deliberation_voting(self, info: Info, id: strawberry.ID) -> DeliberationResult:
        return await _staff_step(info, id, service.close_voting)  # type: ignore[return-value]

    @strawberry.mutation(extensions=STAFF_ONLY, description="Publish the result to the residents.")
    async def publish_deliberation(self, info: Info, id: strawberry.ID) -> DeliberationResult:
        return await _staff_step(info, id, service.publish)  # type: ignore[return-value]

    @strawberry.mutation(extensions=STAFF_ONLY, description="Cancel a deliberation, with a reason.")
    async def cancel_deliberation(self, info: Info, id: strawberry.ID, reason: str) -> DeliberationResult:
        async def step(
            session: AsyncSession, tenant_id: int, actor: str, kinds: frozenset[str], key: int
        ) -> DeliberationRow:
            return await service.cancel(session, tenant_id, actor, kinds, key, reason)

        return await _staff_step(info, id, step)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=RESIDENTS_ONLY, description="Register (or join the waitlist when the meeting is full)."
    )
    async def register_for_deliberation(self, info: Info, input: RegisterInput) -> RegistrationResult:
        participant = service.Participant(
            display_name=input.display_name,
            age_band=input.age_band.value,
            tenure=input.tenure.value,
            residency=input.residency.value,
            retired_cadre=input.retired_cadre,
        )

        async def work(
            session: AsyncSession, tenant_id: int, principal: str, key: int
        ) -> RegistrationPayload:
            row = await service.register(session, tenant_id, principal, key, participant)
            return RegistrationPayload(registration=registration_of(row))

        return await _as_resident(info, input.deliberation_id, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=RESIDENTS_ONLY,
        description="Cancel your registration; the first waitlisted takes the seat.",
    )
    async def withdraw_from_deliberation(
        self, info: Info, deliberation_id: strawberry.ID
    ) -> RegistrationResult:
        async def work(
            session: AsyncSession, tenant_id: int, principal: str, key: int
        ) -> RegistrationPayload:
            row = await service.withdraw(session, tenant_id, principal, key)
            return RegistrationPayload(registration=registration_of(row))

        return await _as_resident(info, deliberation_id, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=RESIDENTS_ONLY, description="Vote, once, if you attended.")
    async def cast_deliberation_vote(
        self, info: Info, deliberation_id: strawberry.ID, choice: VoteChoice
    ) -> VoteResult:
        async def work(session: AsyncSession, tenant_id: int, principal: str, key: int) -> VotePayload:
            ballot = await service.vote(session, tenant_id, principal, key, choice.value)
            return VotePayload(choice=VoteChoice(ballot.choice))

        return await _as_resident(info, deliberation_id, work)  # type: ignore[return-value]
