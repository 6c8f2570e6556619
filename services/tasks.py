"""How a task reaches tenant data: ids and the tenant in, its own tenant-scoped unit of work inside, and
its outbox row marked done in the transaction of its effect."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from celery import current_task
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services import runtime
from services.outbox import service as outbox
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext

T = TypeVar("T")
log = logging.getLogger(__name__)

# Options every tenant task shares: a database or broker hiccup is retried with backoff (short countdowns
# only; deadlines live in the database), so a failed attempt does not lose the effect.
RETRYING: dict[str, Any] = {
    "autoretry_for": (DBAPIError, OSError),
    "retry_backoff": True,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 8,
}


@runtime_checkable
class SelfRetrying(Protocol):
    """A task result saying the task has more to do and will run again on its own (a Celery countdown)
    in `retry_in` seconds; None when it is settled."""

    @property
    def retry_in(self) -> int | None: ...


def current_outbox_id() -> int | None:
    """The outbox row of the message being run: every message the outbox sends carries `outbox_id`."""
    task: Any = current_task
    request = getattr(task, "request", None) if task else None
    value = (getattr(request, "kwargs", None) or {}).get("outbox_id")
    return value if isinstance(value, int) and value > 0 else None


def run_in_tenant(tenant_id: int, work: Callable[[AsyncSession, TenantContext], Awaitable[T]]) -> T:
    """Run `work` in a whole-tenant transaction and mark the message's outbox row done in the same one,
    so the row is done exactly when the effect is recorded. A result that will retry on its own
    (`SelfRetrying`) keeps the row open instead; a failure leaves it open with its error, for the relay
    to send again."""
    context = TenantContext.whole_tenant(tenant_id, "system:worker")
    outbox_id = current_outbox_id()

    async def run() -> T:
        database = runtime.database()
        try:
            async with unit_of_work(database, context) as session:
                result = await work(session, context)
                if outbox_id is not None:
                    retry_in = result.retry_in if isinstance(result, SelfRetrying) else None
                    if retry_in is None:
                        await outbox.mark_done(session, tenant_id, outbox_id)
                    else:
                        await outbox.keep_open(session, tenant_id, outbox_id, retry_in)
                return result
        except Exception as error:
            if outbox_id is not None:
                try:
                    await outbox.record_failure(database, context, outbox_id, error)
                except Exception:  # the database is what failed: the task's own retry matters more
                    log.warning("could not record the failure of outbox row %s", outbox_id, exc_info=True)
            raise

    return runtime.run(run)
