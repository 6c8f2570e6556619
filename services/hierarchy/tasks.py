from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.celery_app import celery_app
from services.hierarchy import repository
from services.hierarchy.repository import Level
from services.notifications.service import deliver
from services.tasks import RETRYING, run_in_tenant
from tenants.context import TenantContext

_VERBS = {"created": "新设", "renamed": "更名", "moved": "调整隶属", "retired": "撤销"}


@celery_app.task(name="hierarchy.node_changed", **RETRYING)
def node_changed(
    *, tenant_id: int, outbox_id: int, action: str, level: str, node_id: int, actor: str
) -> bool:
    """Tell the staff above a changed node. Idempotent: the outbox id is the notification's source."""

    async def work(session: AsyncSession, context: TenantContext) -> bool:
        node_level = Level(level)
        node = (await repository.by_ids(session, node_level, tenant_id, [node_id])).get(node_id)
        if node is None:
            return False
        parent_scope = node.scope.rsplit(".", 1)[0]
        verb = _VERBS.get(action.rsplit(".", 1)[-1], action)
        return await deliver(
            session,
            tenant_id=tenant_id,
            scope=parent_scope,
            kind=action,
            title=f"{node.name}（{node.code}）{verb}",
            source=f"outbox:{outbox_id}",
            payload={"level": level, "node_id": node_id, "actor": actor, "scope": node.scope},
        )

    return run_in_tenant(tenant_id, work)
