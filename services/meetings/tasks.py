"""The meetings' Celery side: the fan-out of notices, and the handlers of their deadlines."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.celery_app import celery_app
from services.meetings import deadlines, machine, notices
from services.tasks import RETRYING, run_in_tenant
from services.timers.service import handles
from tenants.context import TenantContext

handles(machine.REPLY_REMINDER)(deadlines.on_reply_timer)
handles(machine.REPLY_DEADLINE)(deadlines.on_reply_timer)
handles(machine.ACTION_REMINDER)(deadlines.on_action_timer)
handles(machine.ACTION_OVERDUE)(deadlines.on_action_timer)


@celery_app.task(name=machine.ANNOUNCE_TASK, **RETRYING)
def announce(*, tenant_id: int, meeting_id: int, event_ids: list[int], outbox_id: int | None = None) -> int:
    """Send the notices of recorded steps. Idempotent: each notice is logged by source before it is sent,
    in the same transaction, so a redelivered or duplicated task sends nothing twice."""

    async def work(session: AsyncSession, context: TenantContext) -> int:
        return await notices.announce(session, tenant_id, meeting_id, event_ids)

    return run_in_tenant(tenant_id, work)
