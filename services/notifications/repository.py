"""The notifications domain's SQL: the inbox and the webhook endpoints and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifications.models import Notification
from tenants.context import TenantContext

# --- the inbox ------------------------------------------------------------------------------------------


async def insert_notice(
    session: AsyncSession,
    *,
    tenant_id: int,
    scope: str,
    kind: str,
    title: str,
    source: str,
    body: str,
    payload: dict[str, Any],
    recipient: str | None,
) -> bool:
    """One notice per source: False when `source` was stored before."""
    result = await session.execute(
        insert(Notification)
        .values(
            tenant_id=tenant_id,
            scope=scope,
            kind=kind,
            title=title,
            body=body,
            payload=payload,
            source=source,
            owner_principal=recipient,
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "source"])
        .returning(Notification.id)
    )
    return result.first() is not None


def in_inbox_of(context: TenantContext) -> ColumnElement[bool]:
    """A caller's inbox: notices addressed to them, and notices to the staff of the scopes they hold.
    Row-level security decides which scopes those are (a resident holds none)."""
    return (Notification.tenant_id == context.tenant_id) & or_(
        Notification.owner_principal == context.principal, Notification.owner_principal.is_(None)
    )


async def inbox_counts(session: AsyncSession, context: TenantContext) -> tuple[int, int]:
    """(all, unread) of the caller's inbox."""
    counts = (
        await session.execute(
            select(func.count(), func.count().filter(Notification.read_at.is_(None))).where(
                in_inbox_of(context)
            )
        )
    ).one()
    return int(counts[0]), int(counts[1])


async def inbox_page(
    session: AsyncSession, context: TenantContext, *, unread_only: bool, limit: int, before_id: int | None
) -> list[Notification]:
    query = select(Notification).where(in_inbox_of(context))
    if unread_only:
        query = query.where(Notification.read_at.is_(None))
    if before_id is not None:
        query = query.where(Notification.id < before_id)
    return list((await session.scalars(query.order_by(Notification.id.desc()).limit(limit))).all())


async def ids_in_inbox(session: AsyncSession, context: TenantContext, ids: set[int]) -> set[int]:
    return set(
        (
            await session.scalars(
                select(Notification.id).where(in_inbox_of(context), Notification.id.in_(ids))
            )
        ).all()
    )


async def mark_read(session: AsyncSession, context: TenantContext, ids: Sequence[int]) -> int:
    """Mark unread notices of the caller's inbox read; how many were unread."""
    marked = await session.execute(
        update(Notification)
        .where(in_inbox_of(context), Notification.id.in_(ids), Notification.read_at.is_(None))
        .values(read_at=func.now())
        .returning(Notification.id)
    )
    return len(marked.all())
