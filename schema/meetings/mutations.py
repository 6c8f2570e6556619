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
from services.meetings.models import ActionItem as ActionRow
from services.meetings.models import Invitation as InvitationRow
from services.meetings.models import Meeting as MeetingRow
from services.meetings.service import Actor, NewAction, Party, Proposal
from tenants.context import TenantContext
from tenants.roles import Role

T = TypeVar("T")
R = TypeVar("R")

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


async def _meeting(
    info: Info, step: Callable[[AsyncSession, Actor], Awaitable[MeetingRow]]
) -> MeetingPayload | Error:
    async def work(session: AsyncSession, actor: Actor) -> MeetingPayload:
        return MeetingPayload(meeting=meeting_of(await step(session, actor)))

    return await _run(info, work)


def _invitation(row: InvitationRow, meeting: Meeting) -> MeetingInvitationPayload:
    return MeetingInvitationPayload(invitation=MeetingInvitation(row=row), meeting=meeting)


def _action_item(row: ActionRow, meeting: Meeting) -> MeetingActionItemPayload:
    return MeetingActionItemPayload(action_item=MeetingActionItem(row=row), meeting=meeting)


async def _with_meeting(
    info: Info,
    step: Callable[[AsyncSession, Actor], Awaitable[tuple[R, MeetingRow]]],
    payload: Callable[[R, Meeting], T],
) -> T | Error:
    """A step on an invitation or action item: `payload` of the row and its meeting."""

    async def work(session: AsyncSession, actor: Actor) -> T:
        row, meeting = await step(session, actor)
        return payload(row, meeting_of(meeting))

    return await _run(info, work)


def _meeting_key(global_id: str, field: str = "meetingId") -> int:
    return parse_id(global_id, field, "Meeting")[1]


def _invitation_key(global_id: str, field: str = "invitationId") -> int:
    return parse_id(global_id, field, "MeetingInvitation")[1]


def _action_key(global_id: str) -> int:
    return parse_id(global_id, "actionItemId", "MeetingActionItem")[1]


@strawberry.type
class MeetingsMutation:
    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Propose a six-party joint meeting.")
    async def propose_meeting(self, info: Info, input: ProposeMeetingInput) -> MeetingResult:
        def proposal() -> Proposal:
            return Proposal(
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

        return await _meeting(info, lambda s, a: service.propose(s, a, proposal()))  # type: ignore[return-value]

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Invite parties (one or more per kind).")
    async def invite_meeting_parties(self, info: Info, input: InvitePartiesInput) -> MeetingResult:
        parties = [Party(p.kind.value, p.principal, p.name) for p in input.parties]
        return await _meeting(  # type: ignore[return-value]
            info, lambda s, a: service.invite(s, a, _meeting_key(input.meeting_id), parties)
        )

    @strawberry.mutation(
        permission_classes=SIGNED_IN,
        description="Confirm or decline an invitation (the invitee, or staff recording a reply).",
    )
    async def reply_to_meeting_invitation(
        self, info: Info, input: MeetingReplyInput
    ) -> MeetingInvitationResult:
        given = input.substitute
        substitute = Party("", given.principal, given.name) if given else None
        return await _with_meeting(  # type: ignore[return-value]
            info,
            lambda s, a: service.reply(
                s,
                a,
                _invitation_key(input.invitation_id),
                accept=input.accept,
                reason=input.reason,
                substitute=substitute,
            ),
            _invitation,
        )

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Confirm the meeting once the quorum holds.")
    async def confirm_meeting(self, info: Info, meeting_id: strawberry.ID) -> MeetingResult:
        return await _meeting(info, lambda s, a: service.confirm(s, a, _meeting_key(meeting_id)))  # type: ignore[return-value]

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="New times; every party is asked again.")
    async def reschedule_meeting(self, info: Info, input: RescheduleMeetingInput) -> MeetingResult:
        return await _meeting(  # type: ignore[return-value]
            info,
            lambda s, a: service.reschedule(
                s,
                a,
                _meeting_key(input.meeting_id),
                proposed_times=input.proposed_times,
                reply_deadline=input.reply_deadline,
                reason=input.reason,
            ),
        )

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Cancel a meeting before it is held.")
    async def cancel_meeting(self, info: Info, input: CancelMeetingInput) -> MeetingResult:
        return await _meeting(  # type: ignore[return-value]
            info, lambda s, a: service.cancel(s, a, _meeting_key(input.meeting_id), reason=input.reason)
        )

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="The meeting took place: record attendance.")
    async def hold_meeting(self, info: Info, input: HoldMeetingInput) -> MeetingResult:
        def attendees() -> list[int]:
            return [_invitation_key(i, "attendeeInvitationIds") for i in input.attendee_invitation_ids]

        return await _meeting(  # type: ignore[return-value]
            info, lambda s, a: service.hold(s, a, _meeting_key(input.meeting_id), attendees())
        )

    @strawberry.mutation(
        extensions=ORGANISERS_ONLY, description="Record the minutes and the draft resolution."
    )
    async def record_meeting_minutes(self, info: Info, input: RecordMinutesInput) -> MeetingResult:
        return await _meeting(  # type: ignore[return-value]
            info,
            lambda s, a: service.record_minutes(
                s, a, _meeting_key(input.meeting_id), minutes=input.minutes, resolution=input.resolution
            ),
        )

    @strawberry.mutation(
        permission_classes=SIGNED_IN, description="An attending party votes on the resolution."
    )
    async def cast_meeting_vote(self, info: Info, input: MeetingVoteInput) -> MeetingInvitationResult:
        return await _with_meeting(  # type: ignore[return-value]
            info,
            lambda s, a: service.cast_vote(s, a, _invitation_key(input.invitation_id), input.vote.value),
            _invitation,
        )

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Count the votes: passed or not.")
    async def tally_meeting_votes(self, info: Info, meeting_id: strawberry.ID) -> MeetingResult:
        return await _meeting(info, lambda s, a: service.tally(s, a, _meeting_key(meeting_id)))  # type: ignore[return-value]

    @strawberry.mutation(extensions=ORGANISERS_ONLY, description="Give parties action items with due dates.")
    async def assign_meeting_action_items(self, info: Info, input: AssignActionItemsInput) -> MeetingResult:
        items = [NewAction(i.kind.value, i.assignee, i.title, i.due_at) for i in input.items]
        return await _meeting(  # type: ignore[return-value]
            info, lambda s, a: service.assign_actions(s, a, _meeting_key(input.meeting_id), items)
        )

    @strawberry.mutation(permission_classes=SIGNED_IN, description="A progress note on an action item.")
    async def report_action_item_progress(
        self, info: Info, input: MeetingActionItemNoteInput
    ) -> MeetingActionItemResult:
        return await _with_meeting(  # type: ignore[return-value]
            info,
            lambda s, a: service.report_progress(s, a, _action_key(input.action_item_id), input.note or ""),
            _action_item,
        )

    @strawberry.mutation(permission_classes=SIGNED_IN, description="Mark an action item done.")
    async def complete_meeting_action_item(
        self, info: Info, input: MeetingActionItemNoteInput
    ) -> MeetingActionItemResult:
        return await _with_meeting(  # type: ignore[return-value]
            info,
            lambda s, a: service.complete_action(s, a, _action_key(input.action_item_id), input.note),
            _action_item,
        )

    @strawberry.mutation(
        extensions=ORGANISERS_ONLY, description="Close with a report once every item is done."
    )
    async def close_meeting(self, info: Info, input: CloseMeetingInput) -> MeetingResult:
        return await _meeting(  # type: ignore[return-value]
            info, lambda s, a: service.close(s, a, _meeting_key(input.meeting_id), report=input.report)
        )
