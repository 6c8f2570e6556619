"""The outbox: tasks asked for inside a transaction are sent only after it commits.

`enqueue` writes a row in the caller's transaction; the unit of work publishes the rows right after
the commit, and the relay (a beat job) sends whatever a crash or a broker outage left behind.
A rolled-back transaction leaves no row, so nothing is ever sent for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.outbox.models import OutboxMessage
from tenants.context import TenantContext
from tenants.db import Database

PENDING_KEY = "liaison.outbox.pending"
RELAY_GRACE = timedelta(seconds=30)


class Publisher(Protocol):
    def __call__(self, task: str, kwargs: dict[str, Any], task_id: str) -> None: ...


def celery_publisher(task: str, kwargs: dict[str, Any], task_id: str) -> None:
    from services.celery_app import celery_app

    celery_app.send_task(task, kwargs=kwargs, task_id=task_id)


@dataclass(frozen=True, slots=True)
class Pending:
    tenant_id: int
    id: int
    task: str
    kwargs: dict[str, Any] = field(hash=False)

    @property
    def task_kwargs(self) -> dict[str, Any]:
        return {**self.kwargs, "tenant_id": self.tenant_id, "outbox_id": self.id}

    @property
    def task_id(self) -> str:
        return f"outbox-{self.tenant_id}-{self.id}"


async def enqueue(
    session: AsyncSession, *, tenant_id: int, scope: str, task: str, kwargs: dict[str, Any]
) -> OutboxMessage:
    message = OutboxMessage(tenant_id=tenant_id, scope=scope, task=task, kwargs=kwargs)
    session.add(message)
    await session.flush()
    session.info.setdefault(PENDING_KEY, []).append(Pending(tenant_id, message.id, task, kwargs))
    return message


def take_pending(session: AsyncSession) -> list[Pending]:
    pending: list[Pending] = session.info.pop(PENDING_KEY, [])
    return pending


async def publish_committed(
    database: Database,
    context: TenantContext,
    pending: list[Pending],
    publisher: Publisher = celery_publisher,
) -> int:
    """Send messages whose transaction has committed and mark them sent. Failures stay for the relay."""
    sent: list[int] = []
    for message in pending:
        try:
            await asyncio.to_thread(publisher, message.task, message.task_kwargs, message.task_id)
        except Exception:  # the broker is down: the relay will send it later
            break
        sent.append(message.id)
    if sent:
        async with database.scoped(context) as session:
            await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.tenant_id == context.tenant_id,
                    OutboxMessage.id.in_(sent),
                    OutboxMessage.sent_at.is_(None),
                )
                .values(sent_at=func.now(), attempts=OutboxMessage.attempts + 1)
            )
    return len(sent)


async def relay_tenant(
    database: Database,
    tenant_id: int,
    *,
    grace: timedelta = RELAY_GRACE,
    limit: int = 500,
    publisher: Publisher = celery_publisher,
) -> int:
    """Send a tenant's unsent messages older than `grace`. Rows are locked SKIP LOCKED, so several relays
    running at once never send the same message twice."""
    sent = 0
    async with database.scoped(TenantContext.whole_tenant(tenant_id, "system:relay")) as session:
        messages = (
            await session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.tenant_id == tenant_id,
                    OutboxMessage.sent_at.is_(None),
                    OutboxMessage.created_at < func.now() - grace,
                )
                .order_by(OutboxMessage.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for message in messages:
            pending = Pending(tenant_id, message.id, message.task, message.kwargs)
            message.attempts += 1
            try:
                await asyncio.to_thread(publisher, pending.task, pending.task_kwargs, pending.task_id)
            except Exception as error:
                message.last_error = f"{type(error).__name__}: {error}"[:2000]
                break
            message.sent_at = func.now()
            sent += 1
    return sent


async def tenants_with_unsent(database: Database) -> list[int]:
    async with database.engine.connect() as connection:
        rows = await connection.execute(text("SELECT liaison_tenants_with_unsent_outbox()"))
        return [int(row[0]) for row in rows]


async def relay_all(
    database: Database, *, grace: timedelta = RELAY_GRACE, publisher: Publisher = celery_publisher
) -> int:
    total = 0
    for tenant_id in await tenants_with_unsent(database):
        total += await relay_tenant(database, tenant_id, grace=grace, publisher=publisher)
    return total
