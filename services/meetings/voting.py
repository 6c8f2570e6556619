"""The resolution: the staff record the minutes and a draft resolution, each attending party votes on it
(and may change its vote until the tally), and the tally passes it or not."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import InvalidInput
from services.meetings import repository
from services.meetings.machine import INVITATION, VOTES, Actor, resolution_passes, text
from services.meetings.models import Invitation, Meeting
from services.meetings.steps import Notice, load_meeting, meeting_step, own_row, take
from services.workflow.machine import IllegalTransition


async def _attendees(session: AsyncSession, meeting: Meeting) -> list[Invitation]:
    return [i for i in await repository.invitations(session, meeting.tenant_id, [meeting.id]) if i.attended]


async def record_minutes(
    session: AsyncSession, actor: Actor, meeting_id: int, *, minutes: str, resolution: str
) -> Meeting:
    meeting = await load_meeting(session, actor, meeting_id)

    async def write() -> Notice:
        meeting.minutes = text(minutes, "minutes", 100_000)
        meeting.resolution = text(resolution, "resolution", 10_000)
        return Notice(
            f"会议纪要与决议草案已记录，请表决：{meeting.topic}",
            to=[i.owner_principal for i in await _attendees(session, meeting)],
        )

    await meeting_step(session, actor, meeting, "record_minutes", write)
    return meeting


async def cast_vote(
    session: AsyncSession, actor: Actor, invitation_id: int, vote: str
) -> tuple[Invitation, Meeting]:
    """An attending party votes on the resolution (and may change its vote until the tally)."""
    if vote not in VOTES:
        raise InvalidInput(f"a vote is one of {', '.join(VOTES)}", field="vote")
    what = f"invitation {invitation_id}"
    async with own_row(
        session, actor, repository.invitation, invitation_id, what=what, field="invitationId"
    ) as (invitation, meeting):
        if meeting.state != "minuted":
            raise IllegalTransition(
                f"votes are taken once the minutes are recorded; the meeting is {meeting.state}"
            )

        async def cast() -> Notice:
            if not invitation.attended:
                raise IllegalTransition("only parties who attended the meeting vote")
            invitation.vote = vote
            return Notice(f"{invitation.name} 已表决", extra={"vote": vote})

        owner = invitation.owner_principal
        await take(session, actor, meeting, INVITATION, invitation, "vote", cast, owner=owner)
    return invitation, meeting


async def tally(session: AsyncSession, actor: Actor, meeting_id: int) -> Meeting:
    meeting = await load_meeting(session, actor, meeting_id)

    async def count() -> Notice:
        attendees = await _attendees(session, meeting)
        counts = {choice: sum(1 for i in attendees if i.vote == choice) for choice in VOTES}
        yes, no, abstain = counts["yes"], counts["no"], counts["abstain"]
        meeting.votes_yes, meeting.votes_no, meeting.votes_abstain = yes, no, abstain
        meeting.passed = resolution_passes(yes, no, abstain, meeting.pass_numerator, meeting.pass_denominator)
        verdict = "通过" if meeting.passed else "未通过"
        return Notice(
            f"决议{verdict}（赞成 {yes}，反对 {no}，弃权 {abstain}）：{meeting.topic}",
            to=[i.owner_principal for i in attendees],
            staff=meeting.scope,
            extra={"votes": counts, "passed": meeting.passed},
        )

    await meeting_step(session, actor, meeting, "tally", count)
    return meeting
