"""The in-app inbox: notices to one principal (a resident's own inbox, an assignee's) or to the staff of
a scope, delivered once per `source`, listed and marked read under row-level security."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import InvalidInput, NotFound
from services.notifications import repository
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
    return await repository.insert_notice(
        session,
        tenant_id=tenant_id,
        scope=scope,
        kind=kind,
        title=title,
        source=source,
        body=body,
        payload=payload or {},
        recipient=recipient,
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
    total, unread = await repository.inbox_counts(session, context)
    rows = await repository.inbox_page(
        session, context, unread_only=unread_only, limit=first + 1, before_id=after
    )
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
    missing = sorted(wanted - await repository.ids_in_inbox(session, context, wanted))
    if missing:
        raise NotFound(f"notification {missing[0]} is not in your inbox", field="ids")
    newly = await repository.mark_read(session, context, sorted(wanted))
    _, unread = await repository.inbox_counts(session, context)
    return newly, unread
