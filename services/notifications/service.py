"""The in-app inbox: notices to one principal (a resident's own inbox, an assignee's) or to the staff of
a scope, delivered once per `source`, listed and marked read under row-level security."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import InvalidInput, NotFound
from services.notifications.models import Notification
from tenants.context import TenantContext

MAX_MARK = 500


async def deliver(
    session: AsyncSession,
    *,
    tenant_id: int,
    scope: str,
    kind: str,
    title: str,
    source: str,
    body: str = "",
    payload: dict[str, Any] | None = None,
    recipient: str | None = None,
) -> bool:
    """Put a notification in the inbox of `recipient`, or of the staff of `scope` when there is none;
    False when `source` was delivered before."""
    result = await session.execute(
        insert(Notification)
        .values(
            tenant_id=tenant_id,
            scope=scope,
            kind=kind,
            title=title,
            body=body,
            payload=payload or {},
            source=source,
            owner_principal=recipient,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "source"])
        .returning(Notification.id)
    )
    return result.first() is not None


def _in_inbox_of(context: TenantContext) -> ColumnElement[bool]:
    """A caller's inbox: notices addressed to them, and notices to the staff of the scopes they hold.
    Row-level security decides which scopes those are (a resident holds none)."""
    return (Notification.tenant_id == context.tenant_id) & or_(
        Notification.owner_principal == context.principal, Notification.owner_principal.is_(None)
    )


@dataclass(frozen=True)
class InboxPage:
    rows: list[Notification]
    total: int
    unread: int
    has_next: bool


async def inbox(
    session: AsyncSession,
    context: TenantContext,
    *,
    unread_only: bool = False,
    first: int = 20,
    after: int | None = None,
) -> InboxPage:
    """Newest first; `after` is the id of the last notice of the previous page."""
    mine = _in_inbox_of(context)
    counts = (
        await session.execute(
            select(func.count(), func.count().filter(Notification.read_at.is_(None))).where(mine)
        )
    ).one()
    total, unread = int(counts[0]), int(counts[1])
    query = select(Notification).where(mine)
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    if after is not None:
        query = query.where(Notification.id < after)
    rows = list((await session.scalars(query.order_by(Notification.id.desc()).limit(first + 1))).all())
    return InboxPage(
        rows=rows[:first], total=unread if unread_only else total, unread=unread, has_next=len(rows) > first
    )


async def mark_read(session: AsyncSession, context: TenantContext, ids: Sequence[int]) -> tuple[int, int]:
    """Mark notices of the caller's inbox read; (newly marked, still unread). Marking one twice is fine;
    an id outside the caller's inbox is NotFound and marks nothing."""
    wanted = set(ids)
    if not wanted:
        raise InvalidInput("give at least one notification id", field="ids")
    if len(wanted) > MAX_MARK:
        raise InvalidInput(f"mark at most {MAX_MARK} notifications at once", field="ids")
    mine = _in_inbox_of(context)
    visible = set(
        (await session.scalars(select(Notification.id).where(mine, Notification.id.in_(wanted)))).all()
    )
    missing = sorted(wanted - visible)
    if missing:
        raise NotFound(f"notification {missing[0]} is not in your inbox", field="ids")
    marked = await session.execute(
        update(Notification)
        .where(mine, Notification.id.in_(wanted), Notification.read_at.is_(None))
        .values(read_at=func.now())
        .returning(Notification.id)
    )
    newly = len(marked.all())
    unread = await session.scalar(select(func.count()).where(mine, Notification.read_at.is_(None)))
    return newly, int(unread or 0)
