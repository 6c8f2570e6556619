"""Mutations of six-party joint meetings: the organiser's steps (staff of the station's scope) and the
parties' own (reply, vote, report progress, complete an action item)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

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
from schema.meetings.types import (
    Meeting,
    MeetingActionItem,
    MeetingInvitation,
    MeetingVoteChoice,
    PartyKind,
    meeting_of,
)
from schema.mutations import parse_id, run_service
from schema.permissions import SIGNED_IN, RequireRoles
from services.meetings import service
from services.meetings.service import Actor, NewAction, Party, Proposal
from tenants.context import TenantContext
from tenants.roles import Role

T = TypeVar("T")

ORGANISERS_ONLY: list[FieldExtension] = [
    RequireRoles(Role.STATION_LIAISON, Role.STREET_STAFF, Role.DISTRICT_STAFF, Role.CITY_ADMIN)
]


@strawberry.input
class MeetingPartyInput:
    kind: PartyKind
    principal: str = strawberry.field(description="Who is invited, as in their token's sub (user:42).")
    name: str


@strawberry.input
class MeetingSubstituteInput:
    principal: str
    name: str


@strawberry.input
class ProposeMeetingInput:
    station_id: strawberry.ID
    topic: str
    proposed_times: list[datetime] = strawberry.field(description="The first is the one planned for.")
    agenda: str = ""
    place: str | None = None
    video_link: str | None = None
    reply_deadline: datetime | None = strawberry.field(
        default=None, description="Defaults to 72 hours before the first proposed time."
    )
    request_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    required_kinds: list[PartyKind] | None = strawberry.field(
        default=None, description="Kinds that must confirm for the quorum; all six by default."
    )
    min_kinds: int | None = strawberry.field(
        default=None, description="How many kinds must confirm; the number of required kinds by default."
    )
    pass_numerator: int = 1
    pass_denominator: int = 2


@strawberry.input
class InvitePartiesInput:
    meeting_id: strawberry.ID
    parties: list[MeetingPartyInput]


@strawberry.input
class MeetingReplyInput:
    invitation_id: strawberry.ID
    accept: bool
    reason: str | None = None
    substitute: MeetingSubstituteInput | None = None


@strawberry.input
class RescheduleMeetingInput:
    meeting_id: strawberry.ID
    proposed_times: list[datetime]
    reason: str
    reply_deadline: datetime | None = None


@strawberry.input
class CancelMeetingInput:
    meeting_id: strawberry.ID
    reason: str


@strawberry.input
class HoldMeetingInput:
    meeting_id: strawberry.ID
    attendee_invitation_ids: list[strawberry.ID]


@strawberry.input
class RecordMinutesInput:
    meeting_id: strawberry.ID
    minutes: str
    resolution: str


@strawberry.input
class MeetingVoteInput:
    invitation_id: strawberry.ID
    vote: MeetingVoteChoice


@strawberry.input
class MeetingActionItemInput:
    kind: PartyKind
    assignee: str
    title: str
    due_at: datetime


@strawberry.input
class AssignActionItemsInput:
    meeting_id: strawberry.ID
    items: list[MeetingActionItemInput]


@strawberry.input
class MeetingActionItemNoteInput:
    action_item_id: strawberry.ID
    note: str | None = None


@strawberry.input
class CloseMeetingInput:
    meeting_id: strawberry.ID
    report: str


@strawberry.type
class MeetingPayload:
    meeting: Meeting


@strawberry.type
class MeetingInvitationPayload:
    invitation: MeetingInvitation
    meeting: Meeting


@strawberry.type
class MeetingActionItemPayload:
    action_item: MeetingActionItem
    meeting: Meeting


_Errors = (
    NotFoundError
    | OutOfScopeError
    | InvalidInputError
    | ConflictError
    | ForbiddenError
    | IllegalTransitionError
)
MeetingResult = Annotated[MeetingPayload | _Errors, strawberry.union("MeetingResult")]
MeetingInvitationResult = Annotated[
    MeetingInvitationPayload | _Errors, strawberry.union("MeetingInvitationResult")
]
MeetingActionItemResult = Annotated[
    MeetingActionItemPayload | _Errors, strawberry.union("MeetingActionItemResult")
]


async def _run(info: Info, work: Callable[[AsyncSession, Actor], Awaitable[T]]) -> T | Error:
    principal = info.context.require_principal()
    actor = Actor(principal.context, frozenset(role.value for role in principal.roles))

    async def call(session: AsyncSession, context: TenantContext) -> T:
        return await work(session, actor)

    return await run_service(info, call)


def _meeting_key(global_id: str, field: str = "meetingId") -> int:
    return parse_id(global_id, field, "Meeting")[1]


def _invitation_key(global_id: str, field: str = "invitationId") -> int:
    return parse_id(global_id, field, "MeetingInvitation")[1]


@strawberry.type
class MeetingsMutation:
    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Propose a six-party joint meeting.")
    async def propose_meeting(self, info: Info, input: ProposeMeetingInput) -> MeetingResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingPayload:
            proposal = Proposal(
                station_id=parse_id(input.station_id, "stationId", "Station")[1],
                topic=input.topic,
                proposed_times=input.proposed_times,
                agenda=input.agenda,
                place=input.place,
                video_link=input.video_link,
                reply_deadline=input.reply_deadline,
                request_ids=[parse_id(r, "requestIds", "Request")[1] for r in input.request_ids],
                required_kinds=[k.value for k in input.required_kinds]
                if input.required_kinds is not None
                else None,
                min_kinds=input.min_kinds,
                pass_numerator=input.pass_numerator,
                pass_denominator=input.pass_denominator,
            )
            return MeetingPayload(meeting=meeting_of(await service.propose(session, actor, proposal)))

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Invite parties (one or more per kind).")
    async def invite_meeting_parties(self, info: Info, input: InvitePartiesInput) -> MeetingResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingPayload:
            parties = [Party(p.kind.value, p.principal, p.name) for p in input.parties]
            meeting = await service.invite(session, actor, _meeting_key(input.meeting_id), parties)
            return MeetingPayload(meeting=meeting_of(meeting))

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        permission_classes=SIGNED_IN,
        description="Confirm or decline an invitation (the invitee, or staff recording a reply).",
    )
    async def reply_to_meeting_invitation(
        self, info: Info, input: MeetingReplyInput
    ) -> MeetingInvitationResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingInvitationPayload:
            substitute = (
                Party("", input.substitute.principal, input.substitute.name) if input.substitute else None
            )
            invitation, meeting = await service.reply(
                session,
                actor,
                _invitation_key(input.invitation_id),
                accept=input.accept,
                reason=input.reason,
                substitute=substitute,
            )
            return MeetingInvitationPayload(
                invitation=MeetingInvitation(row=invitation), meeting=meeting_of(meeting)
            )

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Confirm the meeting once the quorum holds.")
    async def confirm_meeting(self, info: Info, meeting_id: strawberry.ID) -> MeetingResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingPayload:
            return MeetingPayload(
                meeting=meeting_of(await service.confirm(session, actor, _meeting_key(meeting_id)))
            )

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="New times; every party is asked again.")
    async def reschedule_meeting(self, info: Info, input: RescheduleMeetingInput) -> MeetingResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingPayload:
            meeting = await service.reschedule(
                session,
                actor,
                _meeting_key(input.meeting_id),
                proposed_times=input.proposed_times,
                reply_deadline=input.reply_deadline,
                reason=input.reason,
            )
            return MeetingPayload(meeting=meeting_of(meeting))

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Cancel a meeting before it is held.")
    async def cancel_meeting(self, info: Info, input: CancelMeetingInput) -> MeetingResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingPayload:
            meeting = await service.cancel(
                session, actor, _meeting_key(input.meeting_id), reason=input.reason
            )
            return MeetingPayload(meeting=meeting_of(meeting))

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="The meeting took place: record attendance.")
    async def hold_meeting(self, info: Info, input: HoldMeetingInput) -> MeetingResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingPayload:
            attendees = [_invitation_key(i, "attendeeInvitationIds") for i in input.attendee_invitation_ids]
            meeting = await service.hold(session, actor, _meeting_key(input.meeting_id), attendees)
            return MeetingPayload(meeting=meeting_of(meeting))

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=ORGANISERS_ONLY, description="Record the minutes and the draft resolution."
    )
    async def record_meeting_minutes(self, info: Info, input: RecordMinutesInput) -> MeetingResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingPayload:
            meeting = await service.record_minutes(
                session,
                actor,
                _meeting_key(input.meeting_id),
                minutes=input.minutes,
                resolution=input.resolution,
            )
            return MeetingPayload(meeting=meeting_of(meeting))

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        permission_classes=SIGNED_IN, description="An attending party votes on the resolution."
    )
    async def cast_meeting_vote(self, info: Info, input: MeetingVoteInput) -> MeetingInvitationResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingInvitationPayload:
            invitation, meeting = await service.cast_vote(
                session, actor, _invitation_key(input.invitation_id), input.vote.value
            )
            return MeetingInvitationPayload(
                invitation=MeetingInvitation(row=invitation), meeting=meeting_of(meeting)
            )

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Count the votes: passed or not.")
    async def tally_meeting_votes(self, info: Info, meeting_id: strawberry.ID) -> MeetingResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingPayload:
            return MeetingPayload(
                meeting=meeting_of(await service.tally(session, actor, _meeting_key(meeting_id)))
            )

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Give parties action items with due dates.")
    async def assign_meeting_action_items(self, info: Info, input: AssignActionItemsInput) -> MeetingResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingPayload:
            items = [NewAction(i.kind.value, i.assignee, i.title, i.due_at) for i in input.items]
            meeting = await service.assign_actions(session, actor, _meeting_key(input.meeting_id), items)
            return MeetingPayload(meeting=meeting_of(meeting))

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(permission_classes=SIGNED_IN, description="A progress note on an action item.")
    async def report_action_item_progress(
        self, info: Info, input: MeetingActionItemNoteInput
    ) -> MeetingActionItemResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingActionItemPayload:
            key = parse_id(input.action_item_id, "actionItemId", "MeetingActionItem")[1]
            action, meeting = await service.report_progress(session, actor, key, input.note or "")
            return MeetingActionItemPayload(
                action_item=MeetingActionItem(row=action), meeting=meeting_of(meeting)
            )

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(permission_classes=SIGNED_IN, description="Mark an action item done.")
    async def complete_meeting_action_item(
        self, info: Info, input: MeetingActionItemNoteInput
    ) -> MeetingActionItemResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingActionItemPayload:
            key = parse_id(input.action_item_id, "actionItemId", "MeetingActionItem")[1]
            action, meeting = await service.complete_action(session, actor, key, input.note)
            return MeetingActionItemPayload(
                action_item=MeetingActionItem(row=action), meeting=meeting_of(meeting)
            )

        return await _run(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=ORGANISERS_ONLY, description="Close with a report once every item is done."
    )
    async def close_meeting(self, info: Info, input: CloseMeetingInput) -> MeetingResult:
        async def work(session: AsyncSession, actor: Actor) -> MeetingPayload:
            meeting = await service.close(session, actor, _meeting_key(input.meeting_id), report=input.report)
            return MeetingPayload(meeting=meeting_of(meeting))

        return await _run(info, work)  # type: ignore[return-value]
