"""GraphQL types of six-party joint meetings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import Enum
from operator import attrgetter
from typing import Any

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


def of_row(read: str | Callable[[Any], Any], description: str | None = None) -> Any:
    """A field read off the row: its attribute of that name as it is, or what `read` makes of the row."""
    get = attrgetter(read) if isinstance(read, str) else read

    def resolve(root: Any) -> Any:
        return get(root.row)

    return strawberry.field(resolver=resolve, description=description)


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
    id: strawberry.ID = of_row(lambda row: encode_id("MeetingInvitation", row.id))
    meeting_id: strawberry.ID = of_row(lambda row: encode_id("Meeting", row.meeting_id))
    party_kind: PartyKind = of_row(lambda row: PartyKind(row.party_kind))
    invitee: str = of_row("owner_principal", description="The invited principal (user:42).")
    name: str = of_row("name")
    state: MeetingInvitationState = of_row(lambda row: MeetingInvitationState(row.state))
    round: int = of_row("round")
    substitute_for: strawberry.ID | None = of_row(
        lambda row: (
            None if row.substitute_for_id is None else encode_id("MeetingInvitation", row.substitute_for_id)
        )
    )
    reason: str | None = of_row("reason")
    replied_at: datetime | None = of_row("replied_at")
    escalated_at: datetime | None = of_row("escalated_at")
    attended: bool | None = of_row("attended")
    vote: MeetingVoteChoice | None = of_row(lambda row: MeetingVoteChoice(row.vote) if row.vote else None)


@strawberry.type
class MeetingActionItem:
    row: strawberry.Private[ActionRow]
    id: strawberry.ID = of_row(lambda row: encode_id("MeetingActionItem", row.id))
    party_kind: PartyKind = of_row(lambda row: PartyKind(row.party_kind))
    assignee: str = of_row("owner_principal")
    title: str = of_row("title")
    due_at: datetime = of_row("due_at")
    state: MeetingActionItemState = of_row(lambda row: MeetingActionItemState(row.state))
    overdue: bool = of_row("overdue")
    progress: str | None = of_row("progress")
    done_at: datetime | None = of_row("done_at")


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
    station_id: strawberry.ID = of_row(lambda row: encode_id("Station", row.station_id))
    scope: str = of_row("scope")
    topic: str = of_row("topic")
    agenda: str = of_row("agenda")
    place: str | None = of_row("place")
    video_link: str | None = of_row("video_link")
    request_ids: list[strawberry.ID] = of_row(
        lambda row: [encode_id("Request", key) for key in row.request_ids],
        description="Requests (诉求) the meeting was called for.",
    )
    proposed_times: list[datetime] = of_row(lambda row: list(row.proposed_times))
    starts_at: datetime = of_row("starts_at")
    reply_deadline: datetime = of_row("reply_deadline")
    state: MeetingState = of_row(lambda row: MeetingState(row.state))
    round: int = of_row(
        "round", description="How many times it was (re)scheduled; replies count for the current round."
    )
    required_kinds: list[PartyKind] = of_row(lambda row: [PartyKind(kind) for kind in row.required_kinds])
    min_kinds: int = of_row("min_kinds")
    represented_kinds: list[PartyKind] = of_row(
        lambda row: [PartyKind(kind) for kind in row.represented_kinds],
        description="Party kinds with a confirmed participant.",
    )
    quorum_missing: list[str] = of_row(
        service.quorum_missing, description="Why the quorum rule does not hold yet (empty when it does)."
    )
    pass_threshold: str = of_row(
        lambda row: f"{row.pass_numerator}/{row.pass_denominator}",
        description="The share of the votes cast the resolution needs, e.g. 2/3.",
    )
    minutes: str | None = of_row("minutes")
    resolution: str | None = of_row("resolution")
    votes: MeetingVotes = of_row(
        lambda row: MeetingVotes(yes=row.votes_yes, no=row.votes_no, abstain=row.votes_abstain)
    )
    passed: bool | None = of_row("passed")
    closing_report: str | None = of_row("closing_report")
    cancel_reason: str | None = of_row("cancel_reason")
    organiser: str = of_row("organiser")
    created_at: datetime = of_row("created_at")
    confirmed_at: datetime | None = of_row("confirmed_at")
    held_at: datetime | None = of_row("held_at")
    closed_at: datetime | None = of_row("closed_at")

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
