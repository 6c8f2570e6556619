from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.permission import BasePermission

from schema.context import Info
from schema.notifications.types import (
    DeliveryStatus,
    NotificationConnection,
    NotificationEdge,
    WebhookDeliveryConnection,
    WebhookEndpointItem,
    delivery_of,
    endpoint_of,
    notification_of,
)
from schema.permissions import SIGNED_IN, IsAuthenticated
from schema.relay import encode_cursor, id_page
from services.notifications import service, webhooks
from tenants.roles import Role


class IsCityAdmin(IsAuthenticated):
    """For queries: only a city admin; anyone else gets a FORBIDDEN error."""

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        if not super().has_permission(source, info, **kwargs):
            return False
        principal = info.context.principal
        if principal is not None and principal.has_any_role(Role.CITY_ADMIN):
            return True
        raise GraphQLError("only a city_admin may do this", extensions={"code": "FORBIDDEN"})


CITY_ADMIN: list[type[BasePermission]] = [IsCityAdmin]


@strawberry.type
class NotificationsQuery:
    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="The caller's inbox, newest first: notices to them, and to the staff of their scopes.",
    )
    async def my_notifications(
        self, info: Info, unread_only: bool = False, first: int = 20, after: str | None = None
    ) -> NotificationConnection:
        size, below = id_page(first, after)
        actor = info.context.require_principal().context
        async with info.context.db() as session:
            page = await service.inbox(session, actor, unread_only=unread_only, first=size, after=below)
        edges = [
            NotificationEdge(node=notification_of(row), cursor=encode_cursor(str(row.id)))
            for row in page.rows
        ]
        return NotificationConnection(
            edges=edges,
            has_next_page=page.has_next,
            end_cursor=edges[-1].cursor if edges else None,
            total_count=page.total,
            unread_count=page.unread,
        )

    @strawberry.field(
        permission_classes=CITY_ADMIN, description="The city's webhook endpoints (city admins)."
    )
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpointItem]:
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows = await webhooks.endpoints(session, tenant_id)
        return [endpoint_of(row) for row in rows]

    @strawberry.field(
        permission_classes=CITY_ADMIN, description="Webhook deliveries, newest first (city admins)."
    )
    async def webhook_deliveries(
        self, info: Info, status: DeliveryStatus | None = None, first: int = 50, after: str | None = None
    ) -> WebhookDeliveryConnection:
        size, below = id_page(first, after)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows, total, has_next = await webhooks.deliveries(
                session, tenant_id, status=status.value if status else None, first=size, after=below
            )
            names = await webhooks.endpoint_names(session, tenant_id, [row.endpoint_id for row in rows])
        return WebhookDeliveryConnection(
            nodes=[delivery_of(row, names.get(row.endpoint_id, "")) for row in rows],
            has_next_page=has_next,
            end_cursor=encode_cursor(str(rows[-1].id)) if rows else None,
            total_count=total,
        )
