from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.notifications.models import Notification


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
) -> bool:
    """Put a notification in the inbox of `scope`; False when `source` was delivered before."""
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
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "source"])
        .returning(Notification.id)
    )
    return result.first() is not None
