"""The outbox: tasks asked for inside a transaction are sent only after it commits, and the row stays the
truth until the task has recorded its effect.

`enqueue` writes a row in the caller's transaction; the unit of work publishes the rows right after
the commit. The task marks its row done in the transaction of its effect (`services.tasks.run_in_tenant`).
The relay (a beat job) sends whatever a crash or a broker outage left unsent, and sends again what was
handed to the broker but is not done `republish_after` later: a message can be lost between the broker
and a worker that dies (Redis has popped it, the worker never recorded it as unacked), and the tasks are
idempotent, so a second copy is safe. After `max_attempts` publications a row is dead: left with its last
error for operators (`liaison outbox dead`), until one sends it again (`liaison outbox retry`).
A rolled-back transaction leaves no row, so nothing is ever sent for it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from services.celery_app import OUTBOX_MAX_ATTEMPTS, OUTBOX_REPUBLISH_SECONDS
from services.outbox.models import OutboxMessage
from tenants.context import TenantContext
from tenants.db import Database

log = logging.getLogger(__name__)

PENDING_KEY = "liaison.outbox.pending"
RELAY_GRACE = timedelta(seconds=30)
REPUBLISH_AFTER = timedelta(seconds=OUTBOX_REPUBLISH_SECONDS)
MAX_ATTEMPTS = OUTBOX_MAX_ATTEMPTS


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
        try:
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
        except (SQLAlchemyError, OSError):
            # The step has committed and its messages are on their way; rows left unmarked are sent once
            # more by the relay, which the tasks' idempotence makes harmless. The caller's answer stands.
            log.warning("could not mark outbox rows %s sent", sent, exc_info=True)
    return len(sent)


async def relay_tenant(
    database: Database,
    tenant_id: int,
    *,
    grace: timedelta = RELAY_GRACE,
    republish_after: timedelta = REPUBLISH_AFTER,
    max_attempts: int = MAX_ATTEMPTS,
    limit: int = 500,
    publisher: Publisher = celery_publisher,
) -> int:
    """Send a tenant's unsent messages older than `grace`, and again those sent but not done for
    `republish_after`; a row already sent `max_attempts` times is marked dead instead. Rows are locked
    SKIP LOCKED, so relays running at once never send the same message twice in one pass."""
    sent = 0
    async with database.scoped(TenantContext.whole_tenant(tenant_id, "system:relay")) as session:
        messages = (
            await session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.tenant_id == tenant_id,
                    OutboxMessage.done_at.is_(None),
                    OutboxMessage.dead_at.is_(None),
                    or_(
                        and_(
                            OutboxMessage.sent_at.is_(None),
                            OutboxMessage.created_at < func.now() - grace,
                        ),
                        OutboxMessage.sent_at < func.now() - republish_after,
                    ),
                )
                .order_by(OutboxMessage.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for message in messages:
            if message.attempts >= max_attempts:
                message.dead_at = func.now()
                message.last_error = message.last_error or f"not done after {message.attempts} publications"
                continue
            pending = Pending(tenant_id, message.id, message.task, message.kwargs)
            try:
                await asyncio.to_thread(publisher, pending.task, pending.task_kwargs, pending.task_id)
            except Exception as error:  # the broker is down: not the message's fault, so not an attempt
                message.last_error = f"{type(error).__name__}: {error}"[:2000]
                break
            message.attempts += 1
            message.sent_at = func.now()
            sent += 1
    return sent


async def tenants_with_unsent(database: Database) -> list[int]:
    """Tenants with rows not done and not dead (a SECURITY DEFINER function: the relay has no tenant yet)."""
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


# --- the consumer's side -------------------------------------------------------------------------------


async def mark_done(session: AsyncSession, tenant_id: int, outbox_id: int) -> None:
    """In the transaction of the task's effect: the message needs sending no more."""
    await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.tenant_id == tenant_id,
            OutboxMessage.id == outbox_id,
            OutboxMessage.done_at.is_(None),
        )
        .values(done_at=func.now())
    )


async def keep_open(session: AsyncSession, tenant_id: int, outbox_id: int, retry_in: int) -> None:
    """The task has scheduled its own retry in `retry_in` seconds: the row stays open (reopened if a
    duplicate marked it done meanwhile), and the relay's timeout counts from when that retry is due."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.tenant_id == tenant_id, OutboxMessage.id == outbox_id)
        .values(done_at=None, sent_at=func.now() + timedelta(seconds=retry_in))
    )


async def record_failure(
    database: Database, context: TenantContext, outbox_id: int, error: BaseException
) -> None:
    """The task failed and its transaction rolled back: keep the error on the row, in a transaction of
    its own, for operators. Best effort: when the database is what failed, this fails too."""
    async with database.scoped(context) as session:
        await session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.tenant_id == context.tenant_id,
                OutboxMessage.id == outbox_id,
                OutboxMessage.done_at.is_(None),
            )
            .values(last_error=f"{type(error).__name__}: {error}"[:2000])
        )


# --- operators ---------------------------------------------------------------------------------------


async def dead_messages(
    session: AsyncSession, tenant_id: int, limit: int = 50
) -> tuple[list[OutboxMessage], int]:
    """Rows the relay gave up on, newest first, and how many there are."""
    where = (
        OutboxMessage.tenant_id == tenant_id,
        OutboxMessage.dead_at.is_not(None),
        OutboxMessage.done_at.is_(None),
    )
    total = int(await session.scalar(select(func.count()).select_from(OutboxMessage).where(*where)) or 0)
    rows = (
        await session.scalars(
            select(OutboxMessage).where(*where).order_by(OutboxMessage.id.desc()).limit(limit)
        )
    ).all()
    return list(rows), total


async def revive(session: AsyncSession, tenant_id: int, ids: list[int] | None) -> int:
    """Send dead rows again (all of the tenant's when `ids` is None), with a fresh count of attempts; the
    relay sends them on its next pass. How many were revived."""
    where = [
        OutboxMessage.tenant_id == tenant_id,
        OutboxMessage.dead_at.is_not(None),
        OutboxMessage.done_at.is_(None),
    ]
    if ids is not None:
        where.append(OutboxMessage.id.in_(ids))
    revived = await session.scalars(
        update(OutboxMessage)
        .where(*where)
        .values(dead_at=None, attempts=0, sent_at=None)
        .returning(OutboxMessage.id)
    )
    return len(revived.all())
