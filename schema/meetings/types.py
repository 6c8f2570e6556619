"""GraphQL types of six-party joint meetings."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from schema.context import Info
from schema.relay import Node, encode_id
from services.meetings import repository, service
from services.meetings.models import ActionItem as ActionRow
from services.meetings.models import Invitation as InvitationRow
from services.meetings.models import Meeting as MeetingRow
from services.workflow.models import WorkflowEvent


@strawberry.enum(description="The six parties of a joint meeting (六方).")
class PartyKind(Enum):
    DEPUTY = "deputy"
    PARTY_ORGANISATION = "party_organisation"
    RESIDENTS_COMMITTEE = "residents_committee"
    OWNERS_COMMITTEE = "owners_committee"
    SOCIAL_ORGANISATION = "social_organisation"
    ENTERPRISE = "enterprise"


@strawberry.enum
class MeetingState(Enum):
    PROPOSED = "proposed"
    INVITING = "inviting"
    CONFIRMED = "confirmed"
    HELD = "held"
    MINUTED = "minuted"
    VOTED = "voted"
    SUPERVISING = "supervising"
    CLOSED = "closed"
    CANCELLED = "cancelled"


@strawberry.enum
class MeetingInvitationState(Enum):
    INVITED = "invited"
    CONFIRMED = "confirmed"
    DECLINED = "declined"


@strawberry.enum
class MeetingVoteChoice(Enum):
    YES = "yes"
    NO = "no"
    ABSTAIN = "abstain"


@strawberry.enum
class MeetingActionItemState(Enum):
    OPEN = "open"
    DONE = "done"


@strawberry.type(description="One recorded step of a meeting, an invitation or an action item.")
class MeetingStep:
    step: str
    from_state: str | None
    to_state: str
    actor: str
    note: str | None
    at: datetime


def step_of(event: WorkflowEvent) -> MeetingStep:
    return MeetingStep(
        step=event.step,
        from_state=event.from_state,
        to_state=event.to_state,
        actor=event.actor,
        note=event.note,
        at=event.at,
    )


@strawberry.type
class MeetingInvitation:
    row: strawberry.Private[InvitationRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return encode_id("MeetingInvitation", self.row.id)

    @strawberry.field
    def meeting_id(self) -> strawberry.ID:
        return encode_id("Meeting", self.row.meeting_id)

    @strawberry.field
    def party_kind(self) -> PartyKind:
        return PartyKind(self.row.party_kind)

    @strawberry.field(description="The invited principal (user:42).")
    def invitee(self) -> str:
        return self.row.owner_principal

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def state(self) -> MeetingInvitationState:
        return MeetingInvitationState(self.row.state)

    @strawberry.field
    def round(self) -> int:
        return self.row.round

    @strawberry.field
    def substitute_for(self) -> strawberry.ID | None:
        key = self.row.substitute_for_id
        return encode_id("MeetingInvitation", key) if key is not None else None

    @strawberry.field
    def reason(self) -> str | None:
        return self.row.reason

    @strawberry.field
    def replied_at(self) -> datetime | None:
        return self.row.replied_at

    @strawberry.field
    def escalated_at(self) -> datetime | None:
        return self.row.escalated_at

    @strawberry.field
    def attended(self) -> bool | None:
        return self.row.attended

    @strawberry.field
    def vote(self) -> MeetingVoteChoice | None:
        return MeetingVoteChoice(self.row.vote) if self.row.vote else None


@strawberry.type
class MeetingActionItem:
    row: strawberry.Private[ActionRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return encode_id("MeetingActionItem", self.row.id)

    @strawberry.field
    def party_kind(self) -> PartyKind:
        return PartyKind(self.row.party_kind)

    @strawberry.field
    def assignee(self) -> str:
        return self.row.owner_principal

    @strawberry.field
    def title(self) -> str:
        return self.row.title

    @strawberry.field
    def due_at(self) -> datetime:
        return self.row.due_at

    @strawberry.field
    def state(self) -> MeetingActionItemState:
        return MeetingActionItemState(self.row.state)

    @strawberry.field
    def overdue(self) -> bool:
        return self.row.overdue

    @strawberry.field
    def progress(self) -> str | None:
        return self.row.progress

    @strawberry.field
    def done_at(self) -> datetime | None:
        return self.row.done_at


@strawberry.type
class MeetingVotes:
    yes: int
    no: int
    abstain: int


@strawberry.type(description="A six-party joint meeting (六方联席会议) of a station.")
class Meeting(Node):
    row: strawberry.Private[MeetingRow]
    # Filled by list resolvers in one query for the whole page; loaded on demand otherwise.
    invitation_rows: strawberry.Private[list[InvitationRow] | None] = None
    action_rows: strawberry.Private[list[ActionRow] | None] = None

    @strawberry.field
    def station_id(self) -> strawberry.ID:
        return encode_id("Station", self.row.station_id)

    @strawberry.field
    def scope(self) -> str:
        return self.row.scope

    @strawberry.field
    def topic(self) -> str:
        return self.row.topic

    @strawberry.field
    def agenda(self) -> str:
        return self.row.agenda

    @strawberry.field
    def place(self) -> str | None:
        return self.row.place

    @strawberry.field
    def video_link(self) -> str | None:
        return self.row.video_link

    @strawberry.field(description="Requests (诉求) the meeting was called for.")
    def request_ids(self) -> list[strawberry.ID]:
        return [encode_id("Request", key) for key in self.row.request_ids]

    @strawberry.field
    def proposed_times(self) -> list[datetime]:
        return list(self.row.proposed_times)

    @strawberry.field
    def starts_at(self) -> datetime:
        return self.row.starts_at

    @strawberry.field
    def reply_deadline(self) -> datetime:
        return self.row.reply_deadline

    @strawberry.field
    def state(self) -> MeetingState:
        return MeetingState(self.row.state)

    @strawberry.field(description="How many times it was (re)scheduled; replies count for the current round.")
    def round(self) -> int:
        return self.row.round

    @strawberry.field
    def required_kinds(self) -> list[PartyKind]:
        return [PartyKind(kind) for kind in self.row.required_kinds]

    @strawberry.field
    def min_kinds(self) -> int:
        return self.row.min_kinds

    @strawberry.field(description="Party kinds with a confirmed participant.")
    def represented_kinds(self) -> list[PartyKind]:
        return [PartyKind(kind) for kind in self.row.represented_kinds]

    @strawberry.field(description="Why the quorum rule does not hold yet (empty when it does).")
    def quorum_missing(self) -> list[str]:
        return service.quorum_missing(self.row)

    @strawberry.field(description="The share of the votes cast the resolution needs, e.g. 2/3.")
    def pass_threshold(self) -> str:
        return f"{self.row.pass_numerator}/{self.row.pass_denominator}"

    @strawberry.field
    def minutes(self) -> str | None:
        return self.row.minutes

    @strawberry.field
    def resolution(self) -> str | None:
        return self.row.resolution

    @strawberry.field
    def votes(self) -> MeetingVotes:
        return MeetingVotes(yes=self.row.votes_yes, no=self.row.votes_no, abstain=self.row.votes_abstain)

    @strawberry.field
    def passed(self) -> bool | None:
        return self.row.passed

    @strawberry.field
    def closing_report(self) -> str | None:
        return self.row.closing_report

    @strawberry.field
    def cancel_reason(self) -> str | None:
        return self.row.cancel_reason

    @strawberry.field
    def organiser(self) -> str:
        return self.row.organiser

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def confirmed_at(self) -> datetime | None:
        return self.row.confirmed_at

    @strawberry.field
    def held_at(self) -> datetime | None:
        return self.row.held_at

    @strawberry.field
    def closed_at(self) -> datetime | None:
        return self.row.closed_at

    @strawberry.field(description="The steps the caller may take now.")
    def available_steps(self, info: Info) -> list[str]:
        principal = info.context.require_principal()
        actor = service.Actor(principal.context, frozenset(role.value for role in principal.roles))
        return service.MEETING.available(self.row.state, service.actor_kinds(actor, self.row.scope))

    @strawberry.field(description="The invitations the caller may see (all for staff, its own for a party).")
    async def invitations(self, info: Info) -> list[MeetingInvitation]:
        if self.invitation_rows is None:
            async with info.context.db() as session:
                self.invitation_rows = await repository.invitations(
                    session, self.row.tenant_id, [self.row.id]
                )
        return [MeetingInvitation(row=row) for row in self.invitation_rows]

    @strawberry.field(description="Action items the caller may see (all for staff, its own for a party).")
    async def action_items(self, info: Info) -> list[MeetingActionItem]:
        if self.action_rows is None:
            async with info.context.db() as session:
                self.action_rows = await repository.actions(session, self.row.tenant_id, [self.row.id])
        return [MeetingActionItem(row=row) for row in self.action_rows]

    @strawberry.field(description="The meeting's own steps, oldest first.")
    async def history(self, info: Info) -> list[MeetingStep]:
        async with info.context.db() as session:
            events = await service.meeting_history(session, self.row.tenant_id, self.row.id)
        return [step_of(event) for event in events]


def meeting_of(
    row: MeetingRow, invitations: list[InvitationRow] | None = None, actions: list[ActionRow] | None = None
) -> Meeting:
    return Meeting(id=encode_id("Meeting", row.id), row=row, invitation_rows=invitations, action_rows=actions)
