"""Submitting a request (residents, anonymous or signed in; staff on a caller's behalf) and the steps of
its lifecycle, each returning a payload union (`XPayload` the success, `XResult` the union)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension

from schema.context import Info
from schema.errors import (
    ConflictError,
    Error,
    ErrorCode,
    ForbiddenError,
    IllegalTransitionError,
    InvalidInputError,
    NotFoundError,
)
from schema.geo.types import CRS
from schema.mutations import as_payload, parse_id, run_apart, run_service
from schema.permissions import RequireRoles
from schema.requests.types import Channel, DuplicateHint, PublicProgress, Responsible, WorkOrder, work_order
from services.reach import Target as ReachTarget
from services.reach import acting_on, not_found, reaches
from services.requests import service
from services.requests.codes import Idempotency
from services.requests.intake import Receipt, Submission, intake_context, submit
from services.requests.models import Request as RequestRow
from services.requests.progress import progress_of, public_context
from services.requests.service import Actor
from tenants.context import TenantContext
from tenants.principals import Principal
from tenants.roles import Role

# Everyone but residents may take work-order steps; the lifecycle decides which step whom.
WORKERS: list[FieldExtension] = [RequireRoles(*(role for role in Role if role is not Role.RESIDENT))]
RATERS: list[FieldExtension] = [RequireRoles(*Role)]
NOTE_PUBLIC = strawberry.argument(
    description="Show the note on the public progress (default: only for resolve and reject)."
)


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
    idempotency_key: str | None = strawberry.field(
        default=None,
        description="16 to 100 letters, digits or _.:- (a random UUID): submitting again with the same key "
        "(and the same request) answers the first receipt instead of making a second request.",
    )


@strawberry.type(description="The receipt: keep the ticket and the check code.")
class SubmitRequestPayload:
    ticket: str
    check_code: str = strawberry.field(
        description="With the ticket, opens the public progress (requestProgress); also Open311's token."
    )
    rating_code: str | None = strawberry.field(
        description="Anonymous submitters only: with the ticket, rates each resolution (rateRequestWithCode)."
    )
    routed: bool = strawberry.field(description="False: outside every grid cell, queued for manual routing.")
    created: bool = strawberry.field(description="False: the first receipt of this idempotency key.")
    possible_duplicates: list[DuplicateHint]
    progress: PublicProgress | None = strawberry.field(
        description="Where it went, its deadlines and first step (null for staff submitting a request "
        "that lies outside their scope)."
    )


@strawberry.type
class RequestPayload:
    request: WorkOrder


@strawberry.type(description="A rating given with a rating code: the public progress it led to.")
class RateWithCodePayload:
    progress: PublicProgress


SubmitRequestResult = Annotated[
    SubmitRequestPayload | InvalidInputError | NotFoundError | ConflictError,
    strawberry.union("SubmitRequestResult"),
]
RequestResult = Annotated[
    RequestPayload
    | NotFoundError
    | IllegalTransitionError
    | ForbiddenError
    | InvalidInputError
    | ConflictError,
    strawberry.union("RequestResult"),
]
RateWithCodeResult = Annotated[
    RateWithCodePayload | NotFoundError | InvalidInputError | ConflictError | IllegalTransitionError,
    strawberry.union("RateWithCodeResult"),
]


def _actor(principal: Principal, context: TenantContext) -> Actor:
    return Actor(principal.sub, frozenset(role.value for role in principal.roles), context.scopes)


async def _act(
    info: Info,
    request_id: strawberry.ID,
    work: Callable[[AsyncSession, Actor, int, int], Awaitable[RequestRow]],
) -> RequestResult:
    """A step in the caller's own scoped transaction: row-level security and the actor's scopes decide."""
    principal = info.context.require_principal()

    async def run(session: AsyncSession, context: TenantContext) -> RequestPayload:
        _, key = parse_id(request_id, "id", "Request")
        return RequestPayload(
            request=work_order(await work(session, _actor(principal, context), context.tenant_id, key))
        )

    outcome = await run_service(info, run)
    return outcome  # type: ignore[return-value]


def _receipt(receipt: Receipt, principal: Principal | None, owner: str | None) -> SubmitRequestPayload:
    """The receipt as the caller may see it. Staff submitting for a caller see the hints, and where the
    request went, only inside their own scopes; a resident (or an anonymous caller) sees the public part
    (ticket, state, distance) of any nearby request, as on a public map."""
    staff = principal.context if principal is not None and owner is None else None

    def shown(scope: str) -> bool:
        return staff is None or reaches(staff, ReachTarget(staff.tenant_id, scope))

    assert receipt.check_code is not None
    return SubmitRequestPayload(
        ticket=receipt.ticket,
        check_code=receipt.check_code,
        rating_code=receipt.rating_code,
        routed=receipt.routed,
        created=receipt.created,
        possible_duplicates=[
            DuplicateHint(
                ticket=d.ticket,
                state=d.state,
                distance_meters=round(d.distance_meters, 1),
                submitted_at=d.submitted_at,
            )
            for d in receipt.duplicates
            if shown(d.scope)
        ],
        progress=PublicProgress.of(receipt.progress) if receipt.progress and shown(receipt.scope) else None,
    )


@strawberry.type
class RequestsMutation:
    @strawberry.mutation(description="Submit a request (诉求): anonymously, as a resident, or for a caller.")
    async def submit_request(self, info: Info, input: SubmitRequestInput) -> SubmitRequestResult:
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
        sender = f"principal:{principal.sub}" if principal is not None else "anonymous"
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
            idempotency=Idempotency(input.idempotency_key, sender)
            if input.idempotency_key is not None
            else None,
            rating_code=principal is None,
        )

        async def work(session: AsyncSession) -> SubmitRequestPayload:
            return _receipt(await submit(session, tenant_id, submission), principal, owner)

        return await run_apart(info, intake_context(tenant_id), work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=WORKERS)
    async def accept_request(
        self,
        info: Info,
        id: strawberry.ID,
        note: str | None = None,
        note_public: Annotated[bool | None, NOTE_PUBLIC] = None,
    ) -> RequestResult:
        return await _act(
            info, id, lambda s, a, t, k: service.accept(s, a, t, k, note, note_public=note_public)
        )

    @strawberry.mutation(extensions=WORKERS, description="Assign, or reassign (then a note is required).")
    async def assign_request(
        self,
        info: Info,
        id: strawberry.ID,
        assignee: Annotated[str | None, strawberry.argument(description="A principal, e.g. user:42.")] = None,
        responsible: Responsible | None = None,
        department: str | None = None,
        note: str | None = None,
        note_public: Annotated[bool | None, NOTE_PUBLIC] = None,
    ) -> RequestResult:
        level = responsible.value if responsible else None
        return await _act(
            info,
            id,
            lambda s, a, t, k: service.assign(
                s,
                a,
                t,
                k,
                assignee=assignee,
                responsible=level,
                department=department,
                note=note,
                note_public=note_public,
            ),
        )

    @strawberry.mutation(extensions=WORKERS)
    async def start_request(
        self,
        info: Info,
        id: strawberry.ID,
        note: str | None = None,
        note_public: Annotated[bool | None, NOTE_PUBLIC] = None,
    ) -> RequestResult:
        return await _act(
            info, id, lambda s, a, t, k: service.start(s, a, t, k, note, note_public=note_public)
        )

    @strawberry.mutation(extensions=WORKERS)
    async def resolve_request(
        self,
        info: Info,
        id: strawberry.ID,
        note: str,
        note_public: Annotated[bool | None, NOTE_PUBLIC] = None,
    ) -> RequestResult:
        return await _act(
            info, id, lambda s, a, t, k: service.resolve(s, a, t, k, note, note_public=note_public)
        )

    @strawberry.mutation(
        extensions=WORKERS, description="Send back to be routed again, with the reason (kept internal)."
    )
    async def return_request(self, info: Info, id: strawberry.ID, note: str) -> RequestResult:
        return await _act(info, id, lambda s, a, t, k: service.return_(s, a, t, k, note))

    @strawberry.mutation(extensions=WORKERS, description="Route by hand to a station inside your scope.")
    async def reroute_request(
        self,
        info: Info,
        id: strawberry.ID,
        station_id: strawberry.ID,
        note: str | None = None,
        note_public: Annotated[bool | None, NOTE_PUBLIC] = None,
    ) -> RequestResult:
        async def work(s: AsyncSession, a: Actor, t: int, k: int) -> RequestRow:
            _, station = parse_id(station_id, "stationId", "Station")
            return await service.reroute(s, a, t, k, station, note, note_public=note_public)

        return await _act(info, id, work)

    @strawberry.mutation(extensions=WORKERS, description="Merge a duplicate into an open request.")
    async def merge_request(
        self,
        info: Info,
        id: strawberry.ID,
        into_id: strawberry.ID,
        note: str,
        note_public: Annotated[bool | None, NOTE_PUBLIC] = None,
    ) -> RequestResult:
        async def work(s: AsyncSession, a: Actor, t: int, k: int) -> RequestRow:
            _, into = parse_id(into_id, "intoId", "Request")
            return await service.merge(s, a, t, k, into, note, note_public=note_public)

        return await _act(info, id, work)

    @strawberry.mutation(extensions=WORKERS)
    async def reject_request(
        self,
        info: Info,
        id: strawberry.ID,
        note: str,
        note_public: Annotated[bool | None, NOTE_PUBLIC] = None,
    ) -> RequestResult:
        return await _act(
            info, id, lambda s, a, t, k: service.reject(s, a, t, k, note, note_public=note_public)
        )

    @strawberry.mutation(
        extensions=WORKERS,
        description="Escalate one level by hand (dispatchers); colours stay the deadlines'.",
    )
    async def escalate_request(
        self,
        info: Info,
        id: strawberry.ID,
        note: str,
        note_public: Annotated[bool | None, NOTE_PUBLIC] = None,
    ) -> RequestResult:
        return await _act(
            info, id, lambda s, a, t, k: service.escalate_by_hand(s, a, t, k, note, note_public=note_public)
        )

    @strawberry.mutation(
        extensions=RATERS,
        description="The submitter's verdict on the resolution (satisfaction 0-100; a merged request's "
        "submitter rates the request it was merged into); a hotline operator may give a caller's.",
    )
    async def rate_request(
        self, info: Info, id: strawberry.ID, score: int, solved: bool, comment: str | None = None
    ) -> RequestResult:
        principal = info.context.require_principal()
        caller = principal.context

        async def submitters_place() -> tuple[service.RatingPlace, TenantContext] | None:
            _, key = parse_id(id, "id", "Request")
            # The submitter's own request, found in their own transaction (row-level security shows it).
            async with info.context.db() as session:
                place = await service.rating_place(session, _actor(principal, caller), caller.tenant_id, key)
            return None if place is None else (place, acting_on(caller, place.target, what=f"request {key}"))

        found = await as_payload(submitters_place)
        if isinstance(found, Error):
            return found  # type: ignore[return-value]
        if found is None:
            # Staff giving a caller's verdict: in their own transaction, on what they reach.
            return await _act(
                info,
                id,
                lambda s, a, t, k: service.rate(s, a, t, k, score=score, solved=solved, comment=comment),
            )
        place, context = found

        async def work(session: AsyncSession) -> RequestPayload:
            row = await service.rate(
                session,
                _actor(principal, context),
                context.tenant_id,
                place.request_id,
                score=score,
                solved=solved,
                comment=comment,
            )
            # A merged request's submitter is answered with their own request, not the survivor's row.
            return RequestPayload(request=work_order(row if row.id == place.own.id else place.own))

        return await run_apart(info, context, work)  # type: ignore[return-value]

    @strawberry.mutation(
        description="An anonymous submitter's verdict, with the rating code of their receipt: each "
        "resolution is rated once, by whoever rates it first (the code, the submitter, or a merged "
        "request's submitter)."
    )
    async def rate_request_with_code(
        self,
        info: Info,
        tenant: str,
        ticket: str,
        rating_code: str,
        score: int,
        solved: bool,
        comment: str | None = None,
    ) -> RateWithCodeResult:
        what = f"request {ticket.strip()[:40]!r} with that rating code"

        async def holders_place() -> tuple[service.RatingPlace, TenantContext]:
            tenant_id = await info.context.config.directory.tenant_id(tenant)
            if tenant_id is None:
                raise not_found(what, "ticket")
            async with info.context.config.database.scoped(public_context(tenant_id)) as session:
                found = await service.code_rating_place(session, tenant_id, ticket, rating_code)
            if found is None:
                raise not_found(what, "ticket")
            holder, place = found
            return place, acting_on(holder, place.target, what=what, field="ticket")

        found = await as_payload(holders_place)
        if isinstance(found, Error):
            return found  # type: ignore[return-value]
        place, context = found

        async def work(session: AsyncSession) -> RateWithCodePayload:
            actor = Actor(context.principal, frozenset(), context.scopes)
            row = await service.rate(
                session,
                actor,
                context.tenant_id,
                place.request_id,
                score=score,
                solved=solved,
                comment=comment,
            )
            return RateWithCodePayload(progress=PublicProgress.of(await progress_of(session, row)))

        return await run_apart(info, context, work)  # type: ignore[return-value]
