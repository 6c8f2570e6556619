"""All SQL of the meetings domain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.meetings.models import ActionItem, Invitation, Meeting, MeetingNotice
from services.requests.models import Request
from services.workflow.models import WorkflowEvent
from tenants.models import Station

Lock = Literal["update", "share"] | None


def _locked(statement: Any, lock: Lock) -> Any:
    if lock == "update":
        return statement.with_for_update()
    if lock == "share":
        return statement.with_for_update(read=True)
    return statement


async def meeting(
    session: AsyncSession, tenant_id: int, meeting_id: int, lock: Lock = None
) -> Meeting | None:
    statement = select(Meeting).where(Meeting.tenant_id == tenant_id, Meeting.id == meeting_id)
    statement = _locked(statement, lock).execution_options(populate_existing=True)
    found: Meeting | None = await session.scalar(statement)
    return found


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
    statement = select(Invitation).where(Invitation.tenant_id == tenant_id, Invitation.id == invitation_id)
    statement = _locked(statement, lock).execution_options(populate_existing=True)
    found: Invitation | None = await session.scalar(statement)
    return found


async def invitations(
    session: AsyncSession, tenant_id: int, meeting_ids: Sequence[int], lock: Lock = None
) -> list[Invitation]:
    statement = (
        select(Invitation)
        .where(Invitation.tenant_id == tenant_id, Invitation.meeting_id.in_(list(meeting_ids)))
        .order_by(Invitation.meeting_id, Invitation.id)
    )
    statement = _locked(statement, lock).execution_options(populate_existing=True)
    return list((await session.scalars(statement)).all())


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
    statement = select(ActionItem).where(ActionItem.tenant_id == tenant_id, ActionItem.id == action_id)
    statement = _locked(statement, lock).execution_options(populate_existing=True)
    found: ActionItem | None = await session.scalar(statement)
    return found


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
    session: AsyncSession,
    *,
    tenant_id: int,
    meeting_id: int,
    scope: str,
    event_id: int,
    kind: str,
    recipient: str | None,
    source: str,
) -> bool:
    """Log a notice; False when `source` was logged before (it has been sent already)."""
    result = await session.execute(
        insert(MeetingNotice)
        .values(
            tenant_id=tenant_id,
            meeting_id=meeting_id,
            scope=scope,
            event_id=event_id,
            kind=kind,
            recipient=recipient,
            source=source,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "source"])
        .returning(MeetingNotice.id)
    )
    return result.first() is not None
