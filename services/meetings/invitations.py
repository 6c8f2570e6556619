"""Inviting the parties, and their replies: a party confirms or declines its own invitation (the staff may
record a reply for it); a decline may name a substitute of the same kind, who is invited in turn."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import Conflict, InvalidInput
from services.meetings import repository
from services.meetings.deadlines import schedule_reply_timers
from services.meetings.machine import (
    INVITATION,
    REPLY_STATES,
    Actor,
    Party,
    party,
    quorum_missing,
    text,
)
from services.meetings.models import Invitation, Meeting
from services.meetings.steps import (
    Notice,
    announce_later,
    load_meeting,
    meeting_step,
    own_row,
    refresh_represented,
    take,
)
from services.workflow.machine import IllegalTransition
from services.workflow.rows import same_place


def _invitation(meeting: Meeting, invited: Party, **given: Any) -> Invitation:
    return Invitation(
        **same_place(meeting),
        meeting_id=meeting.id,
        party_kind=invited.kind,
        owner_principal=invited.principal,
        name=invited.name,
        round=meeting.round,
        **given,
    )


async def invite(
    session: AsyncSession,
    actor: Actor,
    meeting_id: int,
    parties: Sequence[Party],
    now: datetime | None = None,
) -> Meeting:
    moment = now or datetime.now(UTC)
    meeting = await load_meeting(session, actor, meeting_id)

    async def send() -> Notice:
        if not parties:
            raise InvalidInput("invite at least one party", field="parties")
        if meeting.reply_deadline <= moment:
            raise Conflict("the reply deadline has passed: reschedule the meeting first", field="id")
        cleaned = [party(p, "parties") for p in parties]
        seen = {
            i.owner_principal for i in await repository.invitations(session, actor.tenant_id, [meeting.id])
        }
        for given in cleaned:
            if given.principal in seen:
                raise InvalidInput(f"{given.principal} is already invited", field="parties")
            seen.add(given.principal)
        created = [_invitation(meeting, given, state="invited") for given in cleaned]
        session.add_all(created)
        meeting.participant_principals = [*meeting.participant_principals, *(p.principal for p in cleaned)]
        await session.flush()
        await schedule_reply_timers(session, meeting, moment)
        return Notice(
            f"邀请参加六方联席会议：{meeting.topic}（{meeting.starts_at:%Y-%m-%d %H:%M} UTC，"
            f"{meeting.reply_deadline:%Y-%m-%d %H:%M} UTC 前回复）",
            to=[i.owner_principal for i in created],
            extra={"invitations": [i.id for i in created]},
        )

    await meeting_step(session, actor, meeting, "invite", send)
    return meeting


async def reply(
    session: AsyncSession,
    actor: Actor,
    invitation_id: int,
    *,
    accept: bool,
    reason: str | None = None,
    substitute: Party | None = None,
    now: datetime | None = None,
) -> tuple[Invitation, Meeting]:
    """A party confirms or declines; a decline may name a substitute of the same kind, who is invited."""
    moment = now or datetime.now(UTC)
    what = f"invitation {invitation_id}"
    async with own_row(
        session, actor, repository.invitation, invitation_id, what=what, field="invitationId"
    ) as (invitation, meeting):
        if meeting.state not in REPLY_STATES:
            raise IllegalTransition(f"replies are closed: the meeting is {meeting.state}")
        cleaned_reason = text(reason, "reason", 2000, required=False) or None

        async def answer() -> Notice:
            if substitute is not None and accept:
                raise InvalidInput("only a decline names a substitute", field="substitute")
            invitation.replied_at = moment
            invitation.reason = cleaned_reason
            await session.flush()
            await refresh_represented(session, meeting)
            meeting.updated_at = func.now()
            lost = meeting.state == "confirmed" and bool(quorum_missing(meeting))
            verb = "确认参加" if accept else "不能参加"
            return Notice(
                f"{invitation.name}（{invitation.party_kind}）{verb}：{meeting.topic}"
                + ("；法定人数已不足" if lost else ""),
                staff=meeting.scope,
            )

        owner = invitation.owner_principal
        events = [
            await take(
                session,
                actor,
                meeting,
                INVITATION,
                invitation,
                "accept" if accept else "decline",
                answer,
                note=cleaned_reason,
                owner=owner,
            )
        ]
        if substitute is not None:
            named = party(Party(invitation.party_kind, substitute.principal, substitute.name), "substitute")
            if named.principal in meeting.participant_principals:
                raise InvalidInput(f"{named.principal} is already invited", field="substitute")
            meeting.participant_principals = [*meeting.participant_principals, named.principal]
            notice = Notice(
                f"代{invitation.name}参加六方联席会议：{meeting.topic}",
                to=[named.principal],
                extra={"substitute_for": invitation.id},
            )
            # A new invitation, in no state until its step is taken.
            row = _invitation(meeting, named, substitute_for_id=invitation.id)
            events.append(
                await take(session, actor, meeting, INVITATION, row, "reinvite", notice, owner=owner)
            )
        await announce_later(session, meeting, events, actor)
    return invitation, meeting
