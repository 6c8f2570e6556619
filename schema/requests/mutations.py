"""Submitting a request (residents, anonymous or signed in; staff on a caller's behalf) and the steps of
its lifecycle, each returning a payload union."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension

from schema.context import Info
from schema.errors import (
    ConflictError,
    ErrorCode,
    ForbiddenError,
    IllegalTransitionError,
    InvalidInputError,
    NotFoundError,
    from_domain,
)
from schema.geo.types import CRS
from schema.mutations import parse_id, run_service
from schema.permissions import RequireRoles
from schema.requests.types import Channel, DuplicateHint, Responsible, WorkOrder, work_order
from services.errors import DomainError
from services.requests import service
from services.requests.intake import Submission, intake_context, submit
from services.requests.models import Request as RequestRow
from services.requests.service import Actor
from services.unit_of_work import atomic, unit_of_work
from tenants.context import TenantContext, scope_is_within
from tenants.roles import Role

# Everyone but residents may take work-order steps; the lifecycle decides which step whom.
WORKERS: list[FieldExtension] = [RequireRoles(*(role for role in Role if role is not Role.RESIDENT))]
RATERS: list[FieldExtension] = [RequireRoles(*Role)]


@strawberry.input
class PointInput:
    longitude: float
    latitude: float
    crs: CRS = CRS.WGS84


@strawberry.input(
    description="A resident's request. Signed-in residents own it; without a token, name the city."
)
class SubmitRequestInput:
    category: str = strawberry.field(description="A category code (requestCategories).")
    description: str = strawberry.field(description="At most 4,000 characters.")
    location: PointInput | None = None
    address: str | None = None
    photo_urls: list[str] | None = None
    channel: Channel = Channel.APP
    contact_name: str | None = None
    contact_phone: str | None = strawberry.field(default=None, description="For follow-up by SMS or phone.")
    contact_email: str | None = None
    tenant: str | None = strawberry.field(default=None, description="The city's code, when not signed in.")


@strawberry.type
class SubmitRequestSuccess:
    ticket: str = strawberry.field(description="Keep it: progress is public by ticket code.")
    routed: bool = strawberry.field(description="False: outside every grid cell, queued for manual routing.")
    possible_duplicates: list[DuplicateHint]


@strawberry.type
class RequestResult:
    request: WorkOrder


SubmitRequestPayload = Annotated[
    SubmitRequestSuccess | InvalidInputError | NotFoundError, strawberry.union("SubmitRequestPayload")
]
RequestPayload = Annotated[
    RequestResult
    | NotFoundError
    | IllegalTransitionError
    | ForbiddenError
    | InvalidInputError
    | ConflictError,
    strawberry.union("RequestPayload"),
]


def _actor(info: Info) -> Actor:
    principal = info.context.require_principal()
    return Actor(principal.sub, frozenset(role.value for role in principal.roles))


async def _act(
    info: Info,
    request_id: strawberry.ID,
    work: Callable[[AsyncSession, Actor, int, int], Awaitable[RequestRow]],
) -> RequestPayload:
    actor = _actor(info)

    async def run(session: AsyncSession, context: TenantContext) -> RequestResult:
        _, key = parse_id(request_id, "id", "Request")
        return RequestResult(request=work_order(await work(session, actor, context.tenant_id, key)))

    outcome = await run_service(info, run)
    return outcome  # type: ignore[return-value]


async def _in_own_transaction(
    context: TenantContext, info: Info, work: Callable[[AsyncSession], Awaitable[Any]]
) -> Any:
    """Work that must not run in the caller's own transaction (intake, a resident's rating): its own unit
    of work, committed (and its notices sent) before the response."""
    try:
        async with unit_of_work(info.context.config.database, context) as session, atomic(session):
            return await work(session)
    except DomainError as error:
        return from_domain(error)


@strawberry.type
class RequestsMutation:
    @strawberry.mutation(description="Submit a request (诉求): anonymously, as a resident, or for a caller.")
    async def submit_request(self, info: Info, input: SubmitRequestInput) -> SubmitRequestPayload:
        principal = info.context.principal
        if principal is not None:
            tenant_id: int | None = principal.tenant_id
        elif input.tenant is None:
            return InvalidInputError(
                code=ErrorCode.INVALID_INPUT, message="name the city (tenant) or sign in", field="tenant"
            )
        else:
            tenant_id = await info.context.config.directory.tenant_id(input.tenant)
        if tenant_id is None:
            return NotFoundError(
                code=ErrorCode.NOT_FOUND, message=f"there is no city {input.tenant!r}", field="tenant"
            )
        # A resident owns what they submit; staff submitting for a caller (hotline, visit) do not.
        owner = principal.sub if principal is not None and Role.RESIDENT in principal.roles else None
        point = input.location
        submission = Submission(
            category=input.category,
            description=input.description,
            channel=input.channel.value,
            lon=point.longitude if point else None,
            lat=point.latitude if point else None,
            crs=point.crs.value if point else "WGS84",
            address=input.address,
            photo_urls=tuple(input.photo_urls or ()),
            contact_name=input.contact_name,
            contact_phone=input.contact_phone,
            contact_email=input.contact_email,
            owner_principal=owner,
        )

        # Staff submitting for a caller see only the hints inside their own scopes; a resident sees the
        # public part (ticket, state, distance) of any nearby request, as on a public map.
        staff_scopes = principal.scopes if principal is not None and owner is None else None

        async def work(session: AsyncSession) -> SubmitRequestSuccess:
            receipt = await submit(session, tenant_id, submission)
            return SubmitRequestSuccess(
                ticket=receipt.ticket,
                routed=receipt.routed,
                possible_duplicates=[
                    DuplicateHint(
                        ticket=d.ticket,
                        state=d.state,
                        distance_meters=round(d.distance_meters, 1),
                        submitted_at=d.submitted_at,
                    )
                    for d in receipt.duplicates
                    if staff_scopes is None or any(scope_is_within(d.scope, own) for own in staff_scopes)
                ],
            )

        result: SubmitRequestPayload = await _in_own_transaction(intake_context(tenant_id), info, work)
        return result

    @strawberry.mutation(extensions=WORKERS)
    async def accept_request(self, info: Info, id: strawberry.ID, note: str | None = None) -> RequestPayload:
        return await _act(info, id, lambda s, a, t, k: service.accept(s, a, t, k, note))

    @strawberry.mutation(extensions=WORKERS, description="Assign, or reassign (then a note is required).")
    async def assign_request(
        self,
        info: Info,
        id: strawberry.ID,
        assignee: Annotated[str | None, strawberry.argument(description="A principal, e.g. user:42.")] = None,
        responsible: Responsible | None = None,
        department: str | None = None,
        note: str | None = None,
    ) -> RequestPayload:
        level = responsible.value if responsible else None
        return await _act(
            info,
            id,
            lambda s, a, t, k: service.assign(
                s, a, t, k, assignee=assignee, responsible=level, department=department, note=note
            ),
        )

    @strawberry.mutation(extensions=WORKERS)
    async def start_request(self, info: Info, id: strawberry.ID, note: str | None = None) -> RequestPayload:
        return await _act(info, id, lambda s, a, t, k: service.start(s, a, t, k, note))

    @strawberry.mutation(extensions=WORKERS)
    async def resolve_request(self, info: Info, id: strawberry.ID, note: str) -> RequestPayload:
        return await _act(info, id, lambda s, a, t, k: service.resolve(s, a, t, k, note))

    @strawberry.mutation(extensions=WORKERS, description="Send back to be routed again, with the reason.")
    async def return_request(self, info: Info, id: strawberry.ID, note: str) -> RequestPayload:
        return await _act(info, id, lambda s, a, t, k: service.return_(s, a, t, k, note))

    @strawberry.mutation(extensions=WORKERS, description="Route by hand to a station inside your scope.")
    async def reroute_request(
        self, info: Info, id: strawberry.ID, station_id: strawberry.ID, note: str | None = None
    ) -> RequestPayload:
        async def work(s: AsyncSession, a: Actor, t: int, k: int) -> RequestRow:
            _, station = parse_id(station_id, "stationId", "Station")
            return await service.reroute(s, a, t, k, station, note)

        return await _act(info, id, work)

    @strawberry.mutation(extensions=WORKERS, description="Merge a duplicate into an open request.")
    async def merge_request(
        self, info: Info, id: strawberry.ID, into_id: strawberry.ID, note: str
    ) -> RequestPayload:
        async def work(s: AsyncSession, a: Actor, t: int, k: int) -> RequestRow:
            _, into = parse_id(into_id, "intoId", "Request")
            return await service.merge(s, a, t, k, into, note)

        return await _act(info, id, work)

    @strawberry.mutation(extensions=WORKERS)
    async def reject_request(self, info: Info, id: strawberry.ID, note: str) -> RequestPayload:
        return await _act(info, id, lambda s, a, t, k: service.reject(s, a, t, k, note))

    @strawberry.mutation(extensions=WORKERS, description="Escalate one level by hand (dispatchers).")
    async def escalate_request(self, info: Info, id: strawberry.ID, note: str) -> RequestPayload:
        return await _act(info, id, lambda s, a, t, k: service.escalate_by_hand(s, a, t, k, note))

    @strawberry.mutation(
        extensions=RATERS,
        description="The submitter's verdict on the resolution; a hotline operator may give a caller's.",
    )
    async def rate_request(
        self, info: Info, id: strawberry.ID, score: int, solved: bool, comment: str | None = None
    ) -> RequestPayload:
        actor = _actor(info)
        tenant_id = info.context.require_principal().tenant_id

        async def work(session: AsyncSession) -> RequestResult:
            _, key = parse_id(id, "id", "Request")
            row = await service.rate(
                session, actor, tenant_id, key, score=score, solved=solved, comment=comment
            )
            return RequestResult(request=work_order(row))

        # The service checks the request is the caller's (or a hotline caller's) before it writes.
        context = TenantContext.whole_tenant(tenant_id, "system:feedback")
        result: RequestPayload = await _in_own_transaction(context, info, work)
        return result
