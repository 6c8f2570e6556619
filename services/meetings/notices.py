"""The fan-out of a meeting's recorded steps (the `meetings.announce` task): each step's notice to the parties
it names and to the staff of the scope it names, each sent once however often the task runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.meetings import repository
from services.meetings.models import Meeting
from services.notifications.dispatch import notify
from services.workflow.models import WorkflowEvent
from tenants.context import scope_is_within


def recipients(
    event: WorkflowEvent, meeting: Meeting, held: Mapping[str, Sequence[str]]
) -> list[tuple[str | None, str]]:
    """(recipient, scope) of each notice of a step: a principal's own, or None for the staff of the scope.
    A party who is itself staff of that scope (a deputy linked to the station, a liaison invited as a
    party) reads the staff's notice in its inbox already, so it gets no second one of its own."""
    staff = event.payload.get("staff")
    found: list[tuple[str | None, str]] = [
        (principal, meeting.scope)
        for principal in event.payload.get("to", [])
        if not (staff and any(scope_is_within(str(staff), scope) for scope in held.get(principal, ())))
    ]
    if staff:
        found.append((None, str(staff)))
    return found


async def announce(session: AsyncSession, tenant_id: int, meeting_id: int, event_ids: Sequence[int]) -> int:
    """One notice per recipient of each step, logged in meeting_notices (unique by source) in the same
    transaction, so a redelivered, duplicated or concurrent task sends nothing twice."""
    meeting = await repository.meeting(session, tenant_id, meeting_id, lock="share")
    if meeting is None:
        return 0
    events = [
        e
        for e in await repository.events(session, tenant_id, event_ids)
        if e.payload.get("meeting_id") == meeting_id
    ]
    both = {p for e in events if e.payload.get("staff") for p in e.payload.get("to", [])}
    held = await repository.staff_scopes(session, tenant_id, sorted(both)) if both else {}
    sent = 0
    for event in events:
        kind = str(event.payload.get("kind", event.workflow))
        for recipient, scope in recipients(event, meeting, held):
            source = f"meeting:{meeting_id}:event:{event.id}:{recipient or 'staff'}"
            if not await repository.add_notice(session, meeting, event.id, kind, recipient, source):
                continue
            await notify(
                session,
                tenant_id=tenant_id,
                scope=scope,
                kind=kind,
                title=str(event.payload.get("title", meeting.topic))[:300],
                body=event.note or "",
                recipient=recipient,
                source=source,
                payload={"meeting_id": meeting_id, "event_id": event.id, "step": event.step},
            )
            sent += 1
    return sent
