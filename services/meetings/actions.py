"""Supervision: once the resolution is tallied the staff give parties action items with due dates; each
assignee (or the staff) reports progress and marks its item done; reminders and overdue escalation are in
`deadlines`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import InvalidInput
from services.meetings import repository
from services.meetings.deadlines import schedule_action_timers
from services.meetings.machine import ACTION, ACTION_TIMERS, Actor, NewAction, Party, aware, party, text
from services.meetings.models import ActionItem, Meeting
from services.meetings.steps import Notice, announce_later, load_meeting, meeting_step, own_row, take
from services.timers import service as timers
from services.workflow.machine import IllegalTransition
from services.workflow.rows import same_place


async def assign_actions(
    session: AsyncSession,
    actor: Actor,
    meeting_id: int,
    items: Sequence[NewAction],
    now: datetime | None = None,
) -> Meeting:
    moment = now or datetime.now(UTC)
    meeting = await load_meeting(session, actor, meeting_id)
    created: list[ActionItem] = []

    async def assign() -> Notice:
        if not items:
            raise InvalidInput("assign at least one action item (or close the meeting)", field="items")
        for item in items:
            assignee = party(Party(item.kind, item.principal, "-"), "items")
            due = aware(item.due_at, "items")
            if due <= moment:
                raise InvalidInput("an action item's due date must lie in the future", field="items")
            created.append(
                ActionItem(
                    **same_place(meeting),
                    meeting_id=meeting.id,
                    party_kind=assignee.kind,
                    owner_principal=assignee.principal,
                    title=text(item.title, "items", 300),
                    due_at=due,
                )
            )
        new = [a.owner_principal for a in created if a.owner_principal not in meeting.participant_principals]
        meeting.participant_principals = [*meeting.participant_principals, *dict.fromkeys(new)]
        return Notice(f"六方联席会议进入督办：{meeting.topic}（{len(created)} 项任务）", staff=meeting.scope)

    await meeting_step(session, actor, meeting, "assign_actions", assign)
    events = []
    for action in created:
        notice = Notice(
            f"督办任务：{action.title}（{action.due_at:%Y-%m-%d} 前完成）", to=[action.owner_principal]
        )
        events.append(await take(session, actor, meeting, ACTION, action, "assign", notice))
        await schedule_action_timers(session, action, moment)
    await announce_later(session, meeting, events, actor)
    return meeting


async def _action_step(
    session: AsyncSession, actor: Actor, action_id: int, name: str, note: str | None, now: datetime | None
) -> tuple[ActionItem, Meeting]:
    what = f"action item {action_id}"
    async with own_row(session, actor, repository.action, action_id, what=what, field="actionItemId") as (
        action,
        meeting,
    ):
        if meeting.state != "supervising":
            raise IllegalTransition(
                f"action items are worked on while the meeting is supervised; it is {meeting.state}"
            )
        cleaned = text(note, "note", 4000, required=False) or None

        async def work() -> Notice:
            if cleaned:
                action.progress = cleaned
            if action.state == "done":
                action.done_at = now or datetime.now(UTC)
                await timers.cancel(
                    session, tenant_id=meeting.tenant_id, subject_id=action.id, kinds=ACTION_TIMERS, now=now
                )
            verb = "已完成" if action.state == "done" else "进展"
            return Notice(f"督办任务{verb}：{action.title}", staff=meeting.scope)

        owner = action.owner_principal
        event = await take(session, actor, meeting, ACTION, action, name, work, note=cleaned, owner=owner)
        await announce_later(session, meeting, [event], actor)
    return action, meeting


async def report_progress(
    session: AsyncSession, actor: Actor, action_id: int, note: str, now: datetime | None = None
) -> tuple[ActionItem, Meeting]:
    return await _action_step(session, actor, action_id, "progress", note, now)


async def complete_action(
    session: AsyncSession, actor: Actor, action_id: int, note: str | None = None, now: datetime | None = None
) -> tuple[ActionItem, Meeting]:
    return await _action_step(session, actor, action_id, "complete", note, now)
