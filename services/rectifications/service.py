"""Opening and closing rectification items. Opening is idempotent per subject (one open item each);
closing takes a note and is for staff whose territory holds the item."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import text

from services.audit.service import append as audit
from services.errors import InvalidInput
from services.reach import not_found
from services.rectifications.models import Rectification
from services.workflow.machine import IllegalTransition
from tenants.context import TenantContext, scope_is_within


async def open_item(
    session: AsyncSession,
    actor: TenantContext,
    *,
    scope: str,
    subject: str,
    reason: str,
    deputy_id: int | None = None,
) -> bool:
    """Open an item for `subject` unless one is open already; whether this call opened it."""
    opened = await session.scalar(
        insert(Rectification)
        .values(tenant_id=actor.tenant_id, scope=scope, subject=subject, reason=reason, deputy_id=deputy_id)
        .on_conflict_do_nothing(index_elements=["tenant_id", "subject"], index_where=text("state = 'open'"))
        .returning(Rectification.id)
    )
    if opened is not None:
        await audit(
            session,
            tenant_id=actor.tenant_id,
            actor=actor.principal,
            action="rectification.opened",
            subject=f"rectification:{opened}",
            scope=scope,
            payload={"for": subject, "reason": reason},
        )
    return opened is not None


async def open_items(session: AsyncSession, tenant_id: int, subjects: list[str]) -> list[Rectification]:
    if not subjects:
        return []
    rows = await session.scalars(
        select(Rectification)
        .where(Rectification.tenant_id == tenant_id, Rectification.subject.in_(subjects))
        .order_by(Rectification.id)
    )
    return list(rows)


async def close(session: AsyncSession, actor: TenantContext, item_id: int, note: str) -> Rectification:
    row = await session.scalar(
        select(Rectification).where(Rectification.tenant_id == actor.tenant_id, Rectification.id == item_id)
    )
    if row is None or not any(scope_is_within(row.scope, own) for own in actor.scopes):
        raise not_found("rectification")
    if row.state != "open":
        raise IllegalTransition("the rectification is closed already")
    cleaned = note.strip()
    if not cleaned or len(cleaned) > 4000:
        raise InvalidInput("say what was put right (1-4000 characters)", field="note")
    row.state, row.note, row.closed_by, row.closed_at = "closed", cleaned, actor.principal, datetime.now(UTC)
    await session.flush()
    await audit(
        session,
        tenant_id=actor.tenant_id,
        actor=actor.principal,
        action="rectification.closed",
        subject=f"rectification:{row.id}",
        scope=row.scope,
        payload={"for": row.subject},
    )
    return row
