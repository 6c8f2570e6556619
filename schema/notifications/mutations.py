from __future__ import annotations

from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension

from schema.context import Info
from schema.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    OutOfScopeError,
)
from schema.hierarchy.types import TYPE_LEVELS
from schema.mutations import parse_id, run_service
from schema.notifications.types import (
    WebhookDeliveryItem,
    WebhookEndpointItem,
    delivery_of,
    endpoint_of,
)
from schema.permissions import SIGNED_IN, RequireRoles
from services.hierarchy.repository import Level
from services.notifications import service, webhooks
from services.notifications.webhooks import DEFAULT_BACKOFF_SECONDS, DEFAULT_MAX_ATTEMPTS, EndpointSpec
from tenants.context import TenantContext
from tenants.roles import Role

ADMIN_ONLY: list[FieldExtension] = [RequireRoles(Role.CITY_ADMIN)]


@strawberry.type
class MarkNotificationsReadPayload:
    marked: int = strawberry.field(description="Notices that were unread until now.")
    unread_count: int


MarkNotificationsReadResult = Annotated[
    MarkNotificationsReadPayload | NotFoundError | InvalidInputError,
    strawberry.union("MarkNotificationsReadResult"),
]


@strawberry.input
class CreateWebhookEndpointInput:
    name: str
    url: str = strawberry.field(description="An http:// or https:// address that accepts JSON POSTs.")
    kinds: list[str] = strawberry.field(default_factory=list, description="Kinds to send; empty: all.")
    scope_node_id: strawberry.ID | None = strawberry.field(
        default=None, description="A district, street or station: only notices inside it. Default: the city."
    )
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_seconds: int = strawberry.field(
        default=DEFAULT_BACKOFF_SECONDS, description="Wait before the 2nd attempt; it doubles each time."
    )
    personal_data: bool = strawberry.field(
        default=False,
        description="Send residents' phone numbers as the recipient (an SMS gateway); otherwise withheld.",
    )


@strawberry.type
class WebhookEndpointCreated:
    endpoint: WebhookEndpointItem
    secret: str = strawberry.field(
        description="Signs every POST (X-Liaison-Signature). Shown this once: keep it at the receiver."
    )


CreateWebhookEndpointResult = Annotated[
    WebhookEndpointCreated
    | InvalidInputError
    | ConflictError
    | NotFoundError
    | OutOfScopeError
    | ForbiddenError,
    strawberry.union("CreateWebhookEndpointResult"),
]


@strawberry.type
class WebhookEndpointPayload:
    endpoint: WebhookEndpointItem


WebhookEndpointResult = Annotated[
    WebhookEndpointPayload | NotFoundError | InvalidInputError | ForbiddenError,
    strawberry.union("WebhookEndpointResult"),
]


@strawberry.type
class WebhookDeliveryPayload:
    delivery: WebhookDeliveryItem


RetryWebhookDeliveryResult = Annotated[
    WebhookDeliveryPayload | NotFoundError | ConflictError | InvalidInputError | ForbiddenError,
    strawberry.union("RetryWebhookDeliveryResult"),
]


def _scope_node(global_id: str | None) -> tuple[Level, int] | None:
    """The node an endpoint is bound to; None (the whole city) for no id or the city's own."""
    if global_id is None:
        return None
    type_name, key = parse_id(global_id, "scopeNodeId", "City", *TYPE_LEVELS)
    return None if type_name == "City" else (TYPE_LEVELS[type_name], key)


@strawberry.type
class NotificationsMutation:
    @strawberry.mutation(permission_classes=SIGNED_IN, description="Mark notices of your inbox read.")
    async def mark_notifications_read(
        self, info: Info, ids: list[strawberry.ID]
    ) -> MarkNotificationsReadResult:
        async def work(session: AsyncSession, actor: TenantContext) -> MarkNotificationsReadPayload:
            keys = [parse_id(each, "ids", "Notification")[1] for each in ids]
            marked, unread = await service.mark_read(session, actor, keys)
            return MarkNotificationsReadPayload(marked=marked, unread_count=unread)

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=ADMIN_ONLY, description="Add a webhook endpoint (city admins); returns its secret once."
    )
    async def create_webhook_endpoint(
        self, info: Info, input: CreateWebhookEndpointInput
    ) -> CreateWebhookEndpointResult:
        async def work(session: AsyncSession, actor: TenantContext) -> WebhookEndpointCreated:
            spec = EndpointSpec(
                name=input.name,
                url=input.url,
                kinds=tuple(input.kinds),
                node=_scope_node(input.scope_node_id),
                max_attempts=input.max_attempts,
                backoff_seconds=input.backoff_seconds,
                personal_data=input.personal_data,
            )
            endpoint, secret = await webhooks.create_endpoint(session, actor, spec)
            return WebhookEndpointCreated(endpoint=endpoint_of(endpoint), secret=secret)

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ADMIN_ONLY, description="Stop sending to a webhook endpoint.")
    async def disable_webhook_endpoint(self, info: Info, id: strawberry.ID) -> WebhookEndpointResult:
        async def work(session: AsyncSession, actor: TenantContext) -> WebhookEndpointPayload:
            _, key = parse_id(id, "id", "WebhookEndpoint")
            return WebhookEndpointPayload(
                endpoint=endpoint_of(await webhooks.disable_endpoint(session, actor, key))
            )

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=ADMIN_ONLY, description="Send a dead letter again (city admins).")
    async def retry_webhook_delivery(self, info: Info, id: strawberry.ID) -> RetryWebhookDeliveryResult:
        async def work(session: AsyncSession, actor: TenantContext) -> WebhookDeliveryPayload:
            _, key = parse_id(id, "id", "WebhookDelivery")
            delivery = await webhooks.retry_delivery(session, actor, key)
            names = await webhooks.endpoint_names(session, actor.tenant_id, [delivery.endpoint_id])
            return WebhookDeliveryPayload(delivery=delivery_of(delivery, names.get(delivery.endpoint_id, "")))

        return await run_service(info, work)  # type: ignore[return-value]
