"""Notices in the inbox, and the webhook endpoints and deliveries city admins manage."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import cast

import strawberry
from strawberry.scalars import JSON

from schema.relay import encode_id
from services.notifications.models import Notification, WebhookDelivery, WebhookEndpoint


@strawberry.type(
    name="Notification",
    description="A notice in an inbox: the caller's own, or that of the staff of its scope.",
)
class NotificationItem:
    id: strawberry.ID
    kind: str
    title: str
    body: str
    payload: JSON
    scope: str
    personal: bool = strawberry.field(description="Addressed to the caller, not to the staff of the scope.")
    created_at: datetime
    read_at: datetime | None


def notification_of(row: Notification) -> NotificationItem:
    return NotificationItem(
        id=encode_id("Notification", row.id),
        kind=row.kind,
        title=row.title,
        body=row.body,
        payload=cast(JSON, row.payload),
        scope=row.scope,
        personal=row.owner_principal is not None,
        created_at=row.created_at,
        read_at=row.read_at,
    )


@strawberry.type
class NotificationEdge:
    node: NotificationItem
    cursor: str


@strawberry.type
class NotificationConnection:
    edges: list[NotificationEdge]
    has_next_page: bool
    end_cursor: str | None
    total_count: int = strawberry.field(description="Notices in the list (unread ones with unreadOnly).")
    unread_count: int


@strawberry.enum
class DeliveryStatus(Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@strawberry.type(
    name="WebhookEndpoint",
    description="A receiver of the city's notices (its secret is shown on creation only).",
)
class WebhookEndpointItem:
    id: strawberry.ID
    name: str
    url: str
    scope: str
    kinds: list[str] = strawberry.field(description="Kinds it receives; empty: every kind.")
    active: bool
    max_attempts: int
    backoff_seconds: int
    personal_data: bool = strawberry.field(description="Receives residents' phone numbers.")
    created_at: datetime


def endpoint_of(row: WebhookEndpoint) -> WebhookEndpointItem:
    return WebhookEndpointItem(
        id=encode_id("WebhookEndpoint", row.id),
        name=row.name,
        url=row.url,
        scope=row.scope,
        kinds=list(row.kinds),
        active=row.active,
        max_attempts=row.max_attempts,
        backoff_seconds=row.backoff_seconds,
        personal_data=row.personal_data,
        created_at=row.created_at,
    )


@strawberry.type(name="WebhookDelivery", description="One notice for one endpoint.")
class WebhookDeliveryItem:
    id: strawberry.ID
    endpoint_id: strawberry.ID
    endpoint_name: str
    kind: str
    source: str
    scope: str
    status: DeliveryStatus
    attempts: int
    last_status: int | None = strawberry.field(description="HTTP status of the last answer, if any.")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None


def delivery_of(row: WebhookDelivery, endpoint_name: str) -> WebhookDeliveryItem:
    return WebhookDeliveryItem(
        id=encode_id("WebhookDelivery", row.id),
        endpoint_id=encode_id("WebhookEndpoint", row.endpoint_id),
        endpoint_name=endpoint_name,
        kind=row.kind,
        source=row.source,
        scope=row.scope,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        dead_at=row.dead_at,
    )


@strawberry.type
class WebhookDeliveryConnection:
    nodes: list[WebhookDeliveryItem]
    has_next_page: bool
    end_cursor: str | None
    total_count: int
