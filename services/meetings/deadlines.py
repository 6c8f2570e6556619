"""A meeting's deadlines: reply reminders and the reply deadline of each round, an action item's reminder
and its due date. They are timers rows, keyed by meeting, round and item and fired once by the beat's
`timers.sweep`, whose handlers below take the system's steps."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.meetings import repository
from services.meetings.machine import (
    ACTION,
    ACTION_OVERDUE,
    ACTION_REMINDER,
    INVITATION,
    REMINDER_HOURS,
    REPLY_DEADLINE,
    REPLY_REMINDER,
    REPLY_STATES,
    street_scope,
    system_actor,
)
from services.meetings.models import ActionItem, Meeting
from services.meetings.steps import Notice, announce_later, take
from services.timers import service as timers
from services.timers.models import Timer


async def schedule_reply_timers(session: AsyncSession, meeting: Meeting, now: datetime) -> None:
    base = f"meeting:{meeting.id}:r{meeting.round}"
    common: dict[str, Any] = {
        "tenant_id": meeting.tenant_id,
        "scope": meeting.scope,
        "subject_id": meeting.id,
    }
    for hours in REMINDER_HOURS:
        due = meeting.reply_deadline - timedelta(hours=hours)
        if due > now:
            await timers.schedule(
                session,
                **common,
                kind=REPLY_REMINDER,
                key=f"{base}:remind{hours}h",
                due_at=due,
                payload={"round": meeting.round, "hours": hours},
            )
    await timers.schedule(
        session,
        **common,
        kind=REPLY_DEADLINE,
        key=f"{base}:deadline",
        due_at=meeting.reply_deadline,
        payload={"round": meeting.round},
    )


async def schedule_action_timers(session: AsyncSession, action: ActionItem, now: datetime) -> None:
    common: dict[str, Any] = {"tenant_id": action.tenant_id, "scope": action.scope, "subject_id": action.id}
    reminder = action.due_at - timedelta(hours=24)
    if reminder > now:
        await timers.schedule(
            session, **common, kind=ACTION_REMINDER, key=f"meeting-action:{action.id}:remind", due_at=reminder
        )
    await timers.schedule(
        session,
        **common,
        kind=ACTION_OVERDUE,
        key=f"meeting-action:{action.id}:overdue",
        due_at=action.due_at,
    )


async def on_reply_timer(session: AsyncSession, timer: Timer, now: datetime) -> None:
    """Remind, or at the deadline escalate to the street staff, every party that has not answered."""
    system = system_actor(timer.tenant_id)
    meeting = await repository.meeting(session, timer.tenant_id, timer.subject_id, "update")
    if meeting is None or meeting.state not in REPLY_STATES or meeting.round != timer.payload.get("round"):
        return
    escalate = timer.kind == REPLY_DEADLINE
    invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id], lock="update")
    extra = {"round": meeting.round, "timer": timer.key}
    reminder = (
        f"请于 {meeting.reply_deadline:%Y-%m-%d %H:%M} UTC 前回复（剩 {timer.payload.get('hours')} 小时）："
        f"{meeting.topic}"
    )
    events = []
    for invitation in invitations:
        if invitation.state != "invited" or invitation.round != meeting.round:
            continue
        if escalate:
            notice = Notice(
                f"{invitation.name}（{invitation.party_kind}）逾期未回复六方联席会议邀请：{meeting.topic}",
                staff=street_scope(meeting.scope),
                extra=extra,
            )
        else:
            notice = Notice(reminder, to=[invitation.owner_principal], extra=extra)
        name = "escalate" if escalate else "remind"
        events.append(await take(session, system, meeting, INVITATION, invitation, name, notice))
        if escalate:
            invitation.escalated_at = now
    await announce_later(session, meeting, events, system)


async def on_action_timer(session: AsyncSession, timer: Timer, now: datetime) -> None:
    """Remind the assignee before the due date; past it, flag the item overdue and tell the street."""
    system = system_actor(timer.tenant_id)
    action = await repository.action(session, timer.tenant_id, timer.subject_id, "update")
    if action is None or action.state != "open":
        return
    meeting = await repository.meeting(session, timer.tenant_id, action.meeting_id, "update")
    if meeting is None or meeting.state != "supervising":
        return
    overdue = timer.kind == ACTION_OVERDUE
    notice = Notice(
        f"督办任务逾期：{action.title}" if overdue else f"督办任务明天到期：{action.title}",
        to=[action.owner_principal],
        staff=street_scope(meeting.scope) if overdue else None,
        extra={"timer": timer.key},
    )
    event = await take(session, system, meeting, ACTION, action, "overdue" if overdue else "remind", notice)
    if overdue:
        action.overdue = True
    await announce_later(session, meeting, [event], system)
