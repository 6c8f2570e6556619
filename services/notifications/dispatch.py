"""How a workflow tells people something: one outbox message per notice, sent after the commit.

The `notifications.send` task puts it in the in-app inbox (of `recipient`, or of the staff of `scope`) and
hands it to every webhook endpoint subscribed to its kind; `source` makes each of those happen once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.outbox.service import enqueue

SEND_TASK = "notifications.send"


async def notify(
    session: AsyncSession,
    *,
    tenant_id: int,
    scope: str,
    kind: str,
    title: str,
    source: str,
    body: str = "",
    recipient: str | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Ask for a notice; `source` names it uniquely (request:42:assigned:3:user:7), so retries add nothing."""
    await enqueue(
        session,
        tenant_id=tenant_id,
        scope=scope,
        task=SEND_TASK,
        kwargs={
            "scope": scope,
            "kind": kind,
            "title": title,
            "body": body,
            "recipient": recipient,
            "payload": payload or {},
            "source": source,
        },
    )
