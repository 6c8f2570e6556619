"""The six-party joint meeting as a workflow: the meeting's own steps, and the one import of the domain's
whole surface (invitations, voting, action items, deadlines, notices live in modules of their own).

Its states, steps and who may take each are declared once, in `machine` (MEETING, INVITATION, ACTION). A
step locks the meeting row, and `steps.take` checks it, changes the rows, records it (history + audit
chain), schedules or cancels its deadlines (timers), and asks for one `meetings.announce` task through the
outbox; that task sends each party its notice, exactly once (meeting_notices is unique by source).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import Conflict, InvalidInput
from services.meetings import repository
from services.meetings.actions import assign_actions, complete_action, report_progress
from services.meetings.deadlines import on_action_timer, on_reply_timer, schedule_reply_timers
from services.meetings.invitations import invite, reply
from services.meetings.machine import (
    ACTION,
    ACTION_OVERDUE,
    ACTION_REMINDER,
    ACTION_TIMERS,
    ANNOUNCE_TASK,
    INVITATION,
    MEETING,
    ORGANISERS,
    REPLY_DEADLINE,
    REPLY_REMINDER,
    REPLY_STATES,
    REPLY_TIMERS,
    VOTES,
    Actor,
    NewAction,
    Party,
    Proposal,
    actor_kinds,
    quorum_missing,
    resolution_passes,
    street_scope,
    system_actor,
    text,
    times,
)
from services.meetings.models import PARTY_KINDS, Meeting
from services.meetings.notices import announce
from services.meetings.steps import (
    Notice,
    active,
    load_meeting,
    meeting_step,
    refresh_represented,
    take,
    to_everyone,
)
from services.meetings.voting import cast_vote, record_minutes, tally
from services.reach import not_found
from services.timers import service as timers
from services.workflow.models import WorkflowEvent
from services.workflow.service import history

__all__ = [
    "ACTION",
    "ACTION_OVERDUE",
    "ACTION_REMINDER",
    "ACTION_TIMERS",
    "ANNOUNCE_TASK",
    "INVITATION",
    "MEETING",
    "ORGANISERS",
    "REPLY_DEADLINE",
    "REPLY_REMINDER",
    "REPLY_STATES",
    "REPLY_TIMERS",
    "VOTES",
    "Actor",
    "NewAction",
    "Party",
    "Proposal",
    "actor_kinds",
    "announce",
    "assign_actions",
    "cancel",
    "cast_vote",
    "close",
    "complete_action",
    "confirm",
    "hold",
    "invite",
    "meeting_history",
    "on_action_timer",
    "on_reply_timer",
    "propose",
    "quorum_missing",
    "record_minutes",
    "reply",
    "report_progress",
    "reschedule",
    "resolution_passes",
    "street_scope",
    "system_actor",
    "tally",
]


def _kinds(given: Sequence[str] | None) -> tuple[list[str], int]:
    required = list(dict.fromkeys(given if given is not None else PARTY_KINDS))
    for kind in required:
        if kind not in PARTY_KINDS:
            raise InvalidInput(f"{kind!r} is not a party kind", field="requiredKinds")
    return required, max(len(required), 1)


async def propose(
    session: AsyncSession, actor: Actor, proposal: Proposal, now: datetime | None = None
) -> Meeting:
    moment = now or datetime.now(UTC)
    station = await repository.station(session, actor.tenant_id, proposal.station_id)
    if station is None or station.retired_at is not None:
        raise not_found(f"station {proposal.station_id}", field="stationId")
    topic = text(proposal.topic, "topic", 300)
    place = text(proposal.place, "place", 300, required=False) or None
    video = text(proposal.video_link, "videoLink", 500, required=False) or None
    if place is None and video is None:
        raise InvalidInput("give a place or a video link", field="place")
    if video is not None and not video.startswith(("https://", "http://")):
        raise InvalidInput("the video link must be an http(s) URL", field="videoLink")
    proposed, reply_by = times(proposal.proposed_times, proposal.reply_deadline, moment)
    required, fewest = _kinds(proposal.required_kinds)
    min_kinds = proposal.min_kinds if proposal.min_kinds is not None else fewest
    if not fewest <= min_kinds <= len(PARTY_KINDS):
        raise InvalidInput(f"minKinds must lie between {fewest} and {len(PARTY_KINDS)}", field="minKinds")
    if not 0 < proposal.pass_numerator <= proposal.pass_denominator <= 100:
        raise InvalidInput(
            "the pass threshold must be a fraction above 0 and at most 1", field="passThreshold"
        )
    request_ids = sorted(set(proposal.request_ids))
    if request_ids:
        visible = await repository.visible_request_ids(session, actor.tenant_id, request_ids)
        if missing := set(request_ids) - visible:
            raise InvalidInput(
                f"requests {sorted(missing)} do not exist or are not visible", field="requestIds"
            )
    meeting = Meeting(
        tenant_id=actor.tenant_id,
        scope=station.scope,
        station_id=station.id,
        topic=topic,
        agenda=text(proposal.agenda, "agenda", 10_000, required=False),
        place=place,
        video_link=video,
        request_ids=request_ids,
        proposed_times=proposed,
        starts_at=proposed[0],
        reply_deadline=reply_by,
        round=1,
        required_kinds=required,
        min_kinds=min_kinds,
        represented_kinds=[],
        participant_principals=[],
        pass_numerator=proposal.pass_numerator,
        pass_denominator=proposal.pass_denominator,
        organiser=actor.principal,
    )
    await take(session, actor, meeting, MEETING, meeting, "propose", Notice(f"六方联席会议提议：{topic}"))
    return meeting


async def confirm(session: AsyncSession, actor: Actor, meeting_id: int) -> Meeting:
    meeting = await load_meeting(session, actor, meeting_id)

    async def quorum() -> Notice:
        invitations = await refresh_represented(session, meeting)
        missing = quorum_missing(meeting)
        if missing:
            raise Conflict("the quorum rule does not hold: " + "; ".join(missing), field="quorum")
        meeting.confirmed_at = func.now()
        title = f"六方联席会议确定召开：{meeting.topic}（{meeting.starts_at:%Y-%m-%d %H:%M} UTC）"
        return to_everyone(meeting, title, invitations)

    await meeting_step(session, actor, meeting, "confirm", quorum)
    return meeting


async def reschedule(
    session: AsyncSession,
    actor: Actor,
    meeting_id: int,
    *,
    proposed_times: Sequence[datetime],
    reply_deadline: datetime | None,
    reason: str,
    now: datetime | None = None,
) -> Meeting:
    """New times, a new round: every party still in is asked again; the old round's deadlines are void."""
    moment = now or datetime.now(UTC)
    meeting = await load_meeting(session, actor, meeting_id)

    async def new_round() -> Notice:
        proposed, reply_by = times(proposed_times, reply_deadline, moment)
        await timers.cancel(
            session, tenant_id=meeting.tenant_id, subject_id=meeting.id, kinds=REPLY_TIMERS, now=moment
        )
        invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id], lock="update")
        meeting.round += 1
        meeting.proposed_times, meeting.starts_at, meeting.reply_deadline = proposed, proposed[0], reply_by
        meeting.confirmed_at = None
        for invitation in active(invitations):
            invitation.state, invitation.round = "invited", meeting.round
            invitation.replied_at = invitation.escalated_at = None
        meeting.represented_kinds = []
        await schedule_reply_timers(session, meeting, moment)
        title = (
            f"六方联席会议改期：{meeting.topic}，新时间 {meeting.starts_at:%Y-%m-%d %H:%M} UTC，"
            f"请于 {meeting.reply_deadline:%Y-%m-%d %H:%M} UTC 前重新回复"
        )
        return to_everyone(meeting, title, invitations, round=meeting.round)

    await meeting_step(session, actor, meeting, "reschedule", new_round, note=reason.strip())
    return meeting


async def cancel(
    session: AsyncSession, actor: Actor, meeting_id: int, *, reason: str, now: datetime | None = None
) -> Meeting:
    meeting = await load_meeting(session, actor, meeting_id)

    async def call_off() -> Notice:
        await timers.cancel(
            session, tenant_id=meeting.tenant_id, subject_id=meeting.id, kinds=REPLY_TIMERS, now=now
        )
        invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id])
        meeting.cancel_reason = reason.strip()
        return to_everyone(meeting, f"六方联席会议取消：{meeting.topic}", invitations)

    await meeting_step(session, actor, meeting, "cancel", call_off, note=reason.strip())
    return meeting


async def hold(
    session: AsyncSession,
    actor: Actor,
    meeting_id: int,
    attendee_ids: Sequence[int],
    now: datetime | None = None,
) -> Meeting:
    """The meeting took place; `attendee_ids` are the invitations whose parties attended."""
    meeting = await load_meeting(session, actor, meeting_id)

    async def attend() -> Notice:
        invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id], lock="update")
        by_id = {i.id: i for i in invitations}
        unknown = set(attendee_ids) - set(by_id)
        if unknown:
            raise InvalidInput(f"invitations {sorted(unknown)} are not of this meeting", field="attendeeIds")
        if not attendee_ids:
            raise InvalidInput("record at least one attendee", field="attendeeIds")
        present = set(attendee_ids)
        for invitation in invitations:
            invitation.attended = invitation.id in present
        await timers.cancel(
            session, tenant_id=meeting.tenant_id, subject_id=meeting.id, kinds=REPLY_TIMERS, now=now
        )
        meeting.held_at = now or func.now()
        return Notice(
            f"六方联席会议已召开：{meeting.topic}（出席 {len(present)} 方代表）",
            to=[by_id[i].owner_principal for i in present],
            staff=meeting.scope,
            extra={"attendees": sorted(present)},
        )

    await meeting_step(session, actor, meeting, "hold", attend)
    return meeting


async def close(session: AsyncSession, actor: Actor, meeting_id: int, *, report: str) -> Meeting:
    meeting = await load_meeting(session, actor, meeting_id)

    async def wind_up() -> Notice:
        actions = await repository.actions(session, meeting.tenant_id, [meeting.id])
        open_items = [a for a in actions if a.state != "done"]
        if open_items:
            raise Conflict(f"{len(open_items)} action items are not done yet", field="id")
        meeting.closing_report = text(report, "report", 100_000)
        meeting.closed_at = func.now()
        invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id])
        return to_everyone(meeting, f"六方联席会议办结：{meeting.topic}", invitations)

    await meeting_step(session, actor, meeting, "close", wind_up, note=report.strip())
    return meeting


async def meeting_history(session: AsyncSession, tenant_id: int, meeting_id: int) -> list[WorkflowEvent]:
    return await history(session, tenant_id, MEETING.name, meeting_id)
