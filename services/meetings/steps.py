"""How a meeting step is taken. Every step of a meeting, an invitation or an action item goes through
`take`: `services.workflow.advance` checks it against its machine, moves the row and records it (history and
audit link) with the notice it asks for; `announce_later` asks for that notice's fan-out through the outbox.

A party from outside the station acts on its own invitation or action item through `own_row`, whose
widened scopes `services.reach.acting_on` grants, or refuses as NOT_FOUND, before anything is written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from services.meetings import repository
from services.meetings.machine import ANNOUNCE_TASK, MEETING, Actor, actor_kinds
from services.meetings.models import ActionItem, Invitation, Meeting
from services.meetings.repository import Lock
from services.outbox.service import enqueue
from services.reach import Target, acting_on, not_found
from services.workflow.machine import StateMachine
from services.workflow.service import WorkflowInstance, advance

Owned = TypeVar("Owned", Invitation, ActionItem)


@dataclass(frozen=True, slots=True)
class Notice:
    """What a step tells, and whom: the principals in `to` and the staff of the scope `staff`."""

    title: str
    to: Iterable[str] = ()
    staff: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Says = Notice | Callable[[], Awaitable[Notice]]


async def take(
    session: AsyncSession,
    actor: Actor,
    meeting: Meeting,
    machine: StateMachine,
    instance: WorkflowInstance,
    name: str,
    says: Says,
    *,
    note: str | None = None,
    owner: str | None = None,
) -> int:
    """Take step `name` of `instance` (the meeting, or one of its invitations or action items) as `actor`
    (the invitee or assignee when it is `owner`). `says` is the notice, or the step's other changes,
    made once the step is allowed, which return it. The id of the recorded step."""

    async def changes() -> dict[str, Any]:
        notice = says if isinstance(says, Notice) else await says()
        return {
            "meeting_id": meeting.id,
            "kind": f"{machine.name}.{name}",
            "title": notice.title,
            "to": sorted(set(notice.to)),
            "staff": notice.staff,
            **notice.extra,
        }

    event = await advance(
        session,
        machine,
        instance,
        name,
        actor=actor.principal,
        actor_kinds=actor_kinds(actor, meeting.scope, owner),
        note=note,
        effects=changes,
    )
    await session.flush()
    return event.id


async def meeting_step(
    session: AsyncSession, actor: Actor, meeting: Meeting, name: str, says: Says, *, note: str | None = None
) -> None:
    """A step of the meeting itself, announced at once."""

    async def changes() -> Notice:
        meeting.updated_at = func.now()
        return says if isinstance(says, Notice) else await says()

    event_id = await take(session, actor, meeting, MEETING, meeting, name, changes, note=note)
    await announce_later(session, meeting, [event_id], actor)


async def announce_later(
    session: AsyncSession, meeting: Meeting, event_ids: Sequence[int], actor: Actor
) -> None:
    """Ask for the notices of these steps, after the commit. The outbox row lies where the actor can see
    it: the unit of work marks it sent under the actor's own context once it is published (a row it could
    not see would stay unsent, and the relay would send it a second time)."""
    if event_ids:
        await enqueue(
            session,
            tenant_id=meeting.tenant_id,
            scope=meeting.scope if actor.covers(meeting.scope) else actor.context.scopes[0],
            task=ANNOUNCE_TASK,
            kwargs={"meeting_id": meeting.id, "event_ids": list(event_ids)},
        )


async def load_meeting(session: AsyncSession, actor: Actor, meeting_id: int, lock: bool = True) -> Meeting:
    found = await repository.meeting(session, actor.tenant_id, meeting_id, "update" if lock else None)
    if found is None:
        raise not_found(f"meeting {meeting_id}")
    return found


async def refresh_represented(session: AsyncSession, meeting: Meeting) -> list[Invitation]:
    invitations = await repository.invitations(session, meeting.tenant_id, [meeting.id])
    meeting.represented_kinds = sorted({i.party_kind for i in invitations if i.state == "confirmed"})
    return invitations


def active(invitations: Iterable[Invitation]) -> list[Invitation]:
    return [i for i in invitations if i.state != "declined"]


def to_everyone(meeting: Meeting, title: str, invitations: Iterable[Invitation], **extra: Any) -> Notice:
    """A notice to every party still invited (not declined) and to the staff."""
    to = [i.owner_principal for i in active(invitations)]
    return Notice(title, to=to, staff=meeting.scope, extra=extra)


@asynccontextmanager
async def within_meeting(
    session: AsyncSession, actor: Actor, meeting: Meeting, *, owner: str, what: str, field: str
) -> AsyncIterator[None]:
    """The step's writes (its rows, the history, the audit link, the outbox) belong to the station. A
    caller outside it, acting on its own row (`owner`), writes them with the station's scope added to its
    own, restored right after, for whatever else the request reads. `acting_on` decides whether it may."""
    widened = acting_on(
        actor.context,
        Target(meeting.tenant_id, meeting.scope, owner=owner),
        what=what,
        field=field,
        keep=actor.context.scopes,
    )
    if actor.covers(meeting.scope):
        yield
        return
    connection = await session.connection()
    await connection.exec_driver_sql(widened.set_local_statement())
    try:
        yield
    finally:
        await connection.exec_driver_sql(actor.context.set_local_statement())


@asynccontextmanager
async def own_row(
    session: AsyncSession,
    actor: Actor,
    load: Callable[[AsyncSession, int, int, Lock], Awaitable[Owned | None]],
    row_id: int,
    *,
    what: str,
    field: str,
) -> AsyncIterator[tuple[Owned, Meeting]]:
    """An invitation or action item and its meeting, both locked, for a step of its party or the staff.
    Outside the caller's reach, or not there at all, the answer is the same NOT_FOUND."""
    found = await load(session, actor.tenant_id, row_id, None)
    visible = await repository.meeting(session, actor.tenant_id, found.meeting_id) if found else None
    if found is None or visible is None:
        raise not_found(what, field)
    async with within_meeting(session, actor, visible, owner=found.owner_principal, what=what, field=field):
        meeting = await load_meeting(session, actor, visible.id)
        row = await load(session, actor.tenant_id, row_id, "update")
        if row is None:
            raise not_found(what, field)
        yield row, meeting
