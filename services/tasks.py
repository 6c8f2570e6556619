"""How a task reaches tenant data: ids and the tenant in, its own tenant-scoped unit of work inside."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services import runtime
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext

T = TypeVar("T")

# Options every tenant task shares: a database or broker hiccup is retried with backoff (short countdowns
# only; deadlines live in the database), so a failed attempt does not lose the effect.
RETRYING: dict[str, Any] = {
    "autoretry_for": (DBAPIError, OSError),
    "retry_backoff": True,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 8,
}


def run_in_tenant(tenant_id: int, work: Callable[[AsyncSession, TenantContext], Awaitable[T]]) -> T:
    context = TenantContext.whole_tenant(tenant_id, "system:worker")

    async def run() -> T:
        async with unit_of_work(runtime.database(), context) as session:
            return await work(session, context)

    return runtime.run(run)
