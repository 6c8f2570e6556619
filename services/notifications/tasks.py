"""The notification channels' tasks: the inbox and webhook fan-out of a notice, and one webhook POST."""

from __future__ import annotations

from typing import Any

from celery import Task
from sqlalchemy.ext.asyncio import AsyncSession

from services.celery_app import celery_app
from services.notifications import webhooks
from services.notifications.dispatch import SEND_TASK
from services.notifications.service import deliver
from services.notifications.webhooks import WEBHOOK_TASK, Attempt
from services.tasks import RETRYING, run_in_tenant
from tenants.context import TenantContext


@celery_app.task(name=SEND_TASK, **RETRYING)
def send(
    *,
    tenant_id: int,
    outbox_id: int,
    scope: str,
    kind: str,
    title: str,
    source: str,
    body: str = "",
    recipient: str | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Put a notice in its inbox and hand it to every subscribed webhook endpoint, in one transaction.
    Idempotent by `source`: run twice, the second run finds everything there and adds nothing."""

    async def work(session: AsyncSession, context: TenantContext) -> dict[str, int]:
        delivered = await deliver(
            session,
            tenant_id=tenant_id,
            scope=scope,
            kind=kind,
            title=title,
            source=source,
            body=body,
            payload=payload,
            recipient=recipient,
        )
        created = await webhooks.fan_out(session, tenant_id=tenant_id, scope=scope, kind=kind, source=source)
        return {"inbox": int(delivered), "webhooks": len(created)}

    return run_in_tenant(tenant_id, work)


@celery_app.task(name=WEBHOOK_TASK, bind=True, **RETRYING)
def webhook(self: Task[Any, Any], *, tenant_id: int, outbox_id: int, delivery_id: int) -> str:
    """POST one delivery; a failure is tried again after the endpoint's back-off until it is dead."""

    async def work(session: AsyncSession, context: TenantContext) -> Attempt:
        return await webhooks.attempt(session, tenant_id, delivery_id)

    outcome = run_in_tenant(tenant_id, work)
    if outcome.retry_in is not None:
        # The attempt is committed first; our own count in the row decides when to stop, not Celery's.
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return outcome.status
