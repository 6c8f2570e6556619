"""Scheduling, cancelling and sweeping timers.

A handler runs inside the sweep's transaction, under a savepoint, together with the row's `fired_at`:
its effect and the mark commit together or not at all, so a timer fires exactly once however many
sweeps run (rows are taken FOR UPDATE SKIP LOCKED) and whatever crashes in between.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import DomainError
from services.timers.models import Timer
from services.unit_of_work import atomic, unit_of_work
from tenants.context import TenantContext
from tenants.db import Database

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, Timer, datetime], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}
# A timer whose handler keeps failing unexpectedly is given up after this many sweeps (and reported).
MAX_ATTEMPTS = 10


def handles(kind: str) -> Callable[[Handler], Handler]:
    """Register the handler of a timer kind (the domain's tasks module does, so the worker knows them)."""

    def register(handler: Handler) -> Handler:
        HANDLERS[kind] = handler
        return handler

    return register


async def schedule(
    session: AsyncSession,
    *,
    tenant_id: int,
    scope: str,
    kind: str,
    subject_id: int,
    key: str,
    due_at: datetime,
    payload: dict[str, Any] | None = None,
) -> bool:
    """Schedule a timer; False when `key` was scheduled before (nothing changes)."""
    result = await session.execute(
        insert(Timer)
        .values(
            tenant_id=tenant_id,
            scope=scope,
            kind=kind,
            subject_id=subject_id,
            key=key,
            due_at=due_at,
            payload=payload or {},
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "key"])
        .returning(Timer.id)
    )
    return result.first() is not None


@dataclass(frozen=True, slots=True)
class TimerSpec:
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


async def schedule_many(
    session: AsyncSession, *, tenant_id: int, scope: str, subject_id: int, timers: list[TimerSpec]
) -> None:
    """Several timers of one subject in one statement; keys scheduled before are left as they are."""
    if not timers:
        return
    await session.execute(
        insert(Timer)
        .values(
            [
                {
                    "tenant_id": tenant_id,
                    "scope": scope,
                    "kind": spec.kind,
                    "subject_id": subject_id,
                    "key": spec.key,
                    "due_at": spec.due_at,
                    "payload": spec.payload,
                }
                for spec in timers
            ]
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "key"])
    )


async def cancel(
    session: AsyncSession,
    *,
    tenant_id: int,
    subject_id: int,
    kinds: Iterable[str],
    now: datetime | None = None,
) -> int:
    """Cancel the pending timers of these kinds for one subject."""
    result = await session.execute(
        update(Timer)
        .where(
            Timer.tenant_id == tenant_id,
            Timer.kind.in_(list(kinds)),
            Timer.subject_id == subject_id,
            Timer.fired_at.is_(None),
            Timer.cancelled_at.is_(None),
        )
        .values(cancelled_at=now or datetime.now(UTC))
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def tenants_with_due(database: Database, now: datetime) -> list[int]:
    async with database.engine.connect() as connection:
        rows = await connection.execute(text("SELECT liaison_tenants_with_due_timers(:now)"), {"now": now})
        return [int(row[0]) for row in rows]


async def sweep_tenant(
    database: Database, tenant_id: int, now: datetime, *, batch: int = 200
) -> Counter[str]:
    """Fire the tenant's due timers, a batch per transaction, until none is due."""
    fired: Counter[str] = Counter()
    context = TenantContext.whole_tenant(tenant_id, "system:timers")
    while True:
        async with unit_of_work(database, context) as session:
            due = (
                await session.scalars(
                    select(Timer)
                    .where(
                        Timer.tenant_id == tenant_id,
                        Timer.fired_at.is_(None),
                        Timer.cancelled_at.is_(None),
                        Timer.due_at <= now,
                        Timer.attempts < MAX_ATTEMPTS,
                    )
                    .order_by(Timer.due_at, Timer.id)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for timer in due:
                await _fire(session, timer, now, fired)
        if len(due) < batch:
            return fired


async def _fire(session: AsyncSession, timer: Timer, now: datetime, fired: Counter[str]) -> None:
    handler = HANDLERS.get(timer.kind)
    timer.attempts += 1
    if handler is None:
        timer.last_error = f"no handler for timer kind {timer.kind!r}"
        return
    try:
        async with atomic(session):
            await handler(session, timer, now)
    except DomainError as error:
        # The workflow moved on (e.g. the request was resolved meanwhile): the timer has nothing to do.
        timer.last_error = error.message[:2000]
    except Exception as error:
        log.exception("timer %s (%s) failed", timer.key, timer.kind)
        timer.last_error = f"{type(error).__name__}: {error}"[:2000]
        return
    timer.fired_at = now
    fired[timer.kind] += 1


async def sweep(database: Database, now: datetime | None = None) -> Counter[str]:
    moment = now or datetime.now(UTC)
    fired: Counter[str] = Counter()
    for tenant_id in await tenants_with_due(database, moment):
        fired.update(await sweep_tenant(database, tenant_id, moment))
    return fired
