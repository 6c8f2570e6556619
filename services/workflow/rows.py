"""What a workflow asks for about one of its rows besides the row itself: notices about it and timers
watching it, both in the row's own tenant and scope (the staff of that scope read the notices, and the beat
fires the timers with the row as their subject)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol, TypedDict, Unpack

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifications.dispatch import notify
from services.timers import service as timers


class Placed(Protocol):
    """A workflow's row: its tenant, its id and the scope it lies in."""

    tenant_id: int
    id: int
    scope: str


def same_place(row: Placed) -> dict[str, Any]:
    """The tenant and scope of `row`, for a row that belongs to it (row-level security reads and writes
    the two together)."""
    return {"tenant_id": row.tenant_id, "scope": row.scope}


class NoticeDetails(TypedDict, total=False):
    body: str
    # A principal's own notice; without one, the notice is for the staff of the row's scope.
    recipient: str | None
    payload: dict[str, Any] | None


async def notify_about(
    session: AsyncSession,
    row: Placed,
    *,
    kind: str,
    title: str,
    source: str,
    **details: Unpack[NoticeDetails],
) -> None:
    """A notice about `row`, sent once however often it is asked for under the same `source`."""
    await notify(
        session, tenant_id=row.tenant_id, scope=row.scope, kind=kind, title=title, source=source, **details
    )


async def schedule_for(
    session: AsyncSession,
    row: Placed,
    *,
    kind: str,
    key: str,
    due_at: datetime,
    payload: dict[str, Any] | None = None,
) -> bool:
    """A timer watching `row`; False when `key` was scheduled before (nothing changes)."""
    return await timers.schedule(
        session,
        tenant_id=row.tenant_id,
        scope=row.scope,
        kind=kind,
        subject_id=row.id,
        key=key,
        due_at=due_at,
        payload=payload,
    )


async def cancel_for(session: AsyncSession, row: Placed, kinds: Iterable[str], now: datetime | None) -> int:
    """Cancel the pending timers of these kinds watching `row`."""
    return await timers.cancel(session, tenant_id=row.tenant_id, subject_id=row.id, kinds=kinds, now=now)
