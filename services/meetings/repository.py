"""All SQL of the meetings domain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.meetings.models import ActionItem, Invitation, Meeting, MeetingNotice
from services.requests.models import Request
from services.workflow.models import WorkflowEvent
from services.workflow.rows import same_place
from tenants.models import RoleAssignment, Station

Lock = Literal["update", "share"] | None


Row = TypeVar("Row", Meeting, Invitation, ActionItem)


def _locked(statement: Any, lock: Lock) -> Any:
    """Locked as asked, and read afresh: a step acts on the row as it is now."""
    if lock == "update":
        statement = statement.with_for_update()
    elif lock == "share":
        statement = statement.with_for_update(read=True)
    return statement.execution_options(populate_existing=True)


async def _one(session: AsyncSession, model: type[Row], tenant_id: int, key: int, lock: Lock) -> Row | None:
    found: Row | None = await session.scalar(
        _locked(select(model).where(model.tenant_id == tenant_id, model.id == key), lock)
    )
    return found


async def meeting(
    session: AsyncSession, tenant_id: int, meeting_id: int, lock: Lock = None
) -> Meeting | None:
    return await _one(session, Meeting, tenant_id, meeting_id, lock)


async def meetings(
    session: AsyncSession, tenant_id: int, *, state: str | None, limit: int, after_id: int | None
) -> list[Meeting]:
    statement = select(Meeting).where(Meeting.tenant_id == tenant_id)
    if state is not None:
        statement = statement.where(Meeting.state == state)
    if after_id is not None:
        statement = statement.where(Meeting.id < after_id)
    return list((await session.scalars(statement.order_by(Meeting.id.desc()).limit(limit))).all())


async def invitation(
    session: AsyncSession, tenant_id: int, invitation_id: int, lock: Lock = None
) -> Invitation | None:
    return await _one(session, Invitation, tenant_id, invitation_id, lock)


async def invitations(
    session: AsyncSession, tenant_id: int, meeting_ids: Sequence[int], lock: Lock = None
) -> list[Invitation]:
    statement = (
        select(Invitation)
        .where(Invitation.tenant_id == tenant_id, Invitation.meeting_id.in_(list(meeting_ids)))
        .order_by(Invitation.meeting_id, Invitation.id)
    )
    return list((await session.scalars(_locked(statement, lock))).all())


async def invitations_of_principal(session: AsyncSession, tenant_id: int, principal: str) -> list[Invitation]:
    statement = (
        select(Invitation)
        .where(Invitation.tenant_id == tenant_id, Invitation.owner_principal == principal)
        .order_by(Invitation.id.desc())
        .limit(200)
    )
    return list((await session.scalars(statement)).all())


async def action(
    session: AsyncSession, tenant_id: int, action_id: int, lock: Lock = None
) -> ActionItem | None:
    return await _one(session, ActionItem, tenant_id, action_id, lock)


async def actions(session: AsyncSession, tenant_id: int, meeting_ids: Sequence[int]) -> list[ActionItem]:
    statement = (
        select(ActionItem)
        .where(ActionItem.tenant_id == tenant_id, ActionItem.meeting_id.in_(list(meeting_ids)))
        .order_by(ActionItem.meeting_id, ActionItem.id)
    )
    return list((await session.scalars(statement)).all())


async def station(session: AsyncSession, tenant_id: int, station_id: int) -> Station | None:
    found: Station | None = await session.scalar(
        select(Station).where(Station.tenant_id == tenant_id, Station.id == station_id)
    )
    return found


async def staff_scopes(
    session: AsyncSession, tenant_id: int, principals: Sequence[str]
) -> dict[str, list[str]]:
    """The scopes each of these principals holds as staff, as its sign-in gives them: every scope of a
    user with any role but a resident's (a resident alone holds no territory)."""
    users = {int(p[5:]): p for p in principals if p.startswith("user:") and p[5:].isdigit()}
    users = {key: p for key, p in users.items() if key < 2**63}  # a bigint, or no user at all
    if not users:
        return {}
    role = aliased(RoleAssignment)
    staff = select(role.user_id).where(
        role.tenant_id == tenant_id, role.role != "resident", role.user_id.in_(list(users))
    )
    rows = await session.execute(
        select(RoleAssignment.user_id, RoleAssignment.scope).where(
            RoleAssignment.tenant_id == tenant_id, RoleAssignment.user_id.in_(staff)
        )
    )
    held: dict[str, list[str]] = {}
    for user_id, scope in rows:
        held.setdefault(users[user_id], []).append(str(scope))
    return held


async def visible_request_ids(session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> set[int]:
    rows = await session.scalars(
        select(Request.id).where(Request.tenant_id == tenant_id, Request.id.in_(ids))
    )
    return set(rows.all())


async def events(session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> list[WorkflowEvent]:
    statement = (
        select(WorkflowEvent)
        .where(WorkflowEvent.tenant_id == tenant_id, WorkflowEvent.id.in_(list(ids)))
        .order_by(WorkflowEvent.id)
    )
    return list((await session.scalars(statement)).all())


async def add_notice(
    session: AsyncSession, meeting: Meeting, event_id: int, kind: str, recipient: str | None, source: str
) -> bool:
    """Log a notice of one of the meeting's steps; False when `source` was logged before (it has been sent
    already)."""
    statement = insert(MeetingNotice).values(
        **same_place(meeting),
        meeting_id=meeting.id,
        event_id=event_id,
        kind=kind,
        recipient=recipient,
        source=source,
    )
    result = await session.execute(
        statement.on_conflict_do_nothing(index_elements=["tenant_id", "source"]).returning(MeetingNotice.id)
    )
    return result.first() is not None
