"""The webhook channel: endpoints that receive the tenant's notices as signed JSON POSTs.

Each notice makes one delivery row per subscribed endpoint (unique per endpoint and source, so a
redelivered task adds nothing) and one `notifications.webhook` task. A delivery is attempted until the
receiver answers 2xx (delivered) or the endpoint's `max_attempts` are spent (dead, with the last error
and HTTP status kept); a delivered or dead delivery is never sent again by a duplicate task.

Signature: `X-Liaison-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>`,
where `<timestamp>` is the `X-Liaison-Timestamp` header (Unix seconds) and `<body>` the raw request body.
Receivers check it with `verify_signature` below (standard library only: copy it).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import Conflict, InvalidInput, NotFound, OutOfScope
from services.hierarchy import repository as hierarchy
from services.hierarchy.repository import Level
from services.notifications.models import Notification, WebhookDelivery, WebhookEndpoint
from services.outbox.service import enqueue
from tenants.context import TenantContext, city_scope, scope_is_within
from tenants.models import City

WEBHOOK_TASK = "notifications.webhook"
SIGNATURE_HEADER = "X-Liaison-Signature"
TIMESTAMP_HEADER = "X-Liaison-Timestamp"
DELIVERY_HEADER = "X-Liaison-Delivery"
TIMEOUT_SECONDS = 10.0
# Retries wait in the worker (Celery countdown), so they stay short: far below the broker's
# visibility timeout, past which Redis would hand the waiting task to another worker as well.
MAX_BACKOFF_SECONDS = 300
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_BACKOFF_SECONDS = 10
MAX_KINDS = 50


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context per process: building it (loading the CA bundle) costs more than a POST."""
    return ssl.create_default_context(cafile=certifi.where())


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Liaison-Signature value for a body sent at `timestamp` (Unix seconds, as a string)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    max_age_seconds: int | None = 300,
    now: float | None = None,
) -> bool:
    """True when `header` (X-Liaison-Signature) signs `body` (the raw request body, not re-serialised
    JSON) sent at `timestamp` (X-Liaison-Timestamp) with the endpoint's secret.

    The timestamp is part of what is signed; refusing old ones (`max_age_seconds`, None to skip) stops
    a captured request from being replayed later. Deduplicate on X-Liaison-Delivery: a delivery whose
    answer was lost is sent again.
    """
    if not timestamp.isdigit():
        return False
    if max_age_seconds is not None:
        moment = time.time() if now is None else now
        if abs(moment - int(timestamp)) > max_age_seconds:
            return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", header)


# --- endpoints ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    url: str
    kinds: tuple[str, ...] = ()
    node: tuple[Level, int] | None = None  # the endpoint's part of the city; the whole city when None
    scope: str | None = None  # or a scope path directly (operators)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_seconds: int = DEFAULT_BACKOFF_SECONDS
    personal_data: bool = False


def check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInput("the url must be an absolute http:// or https:// address", field="url")
    if len(url) > 2000:
        raise InvalidInput("the url is longer than 2000 characters", field="url")
    return url


def _checked(spec: EndpointSpec) -> EndpointSpec:
    name = spec.name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("the name must be 1 to 100 characters", field="name")
    kinds = tuple(dict.fromkeys(kind.strip() for kind in spec.kinds))
    if len(kinds) > MAX_KINDS or any(not 1 <= len(kind) <= 100 for kind in kinds):
        raise InvalidInput(f"give at most {MAX_KINDS} kinds of 1 to 100 characters each", field="kinds")
    if not 1 <= spec.max_attempts <= 50:
        raise InvalidInput("max attempts must be between 1 and 50", field="maxAttempts")
    if not 1 <= spec.backoff_seconds <= MAX_BACKOFF_SECONDS:
        raise InvalidInput(
            f"the back-off must be between 1 and {MAX_BACKOFF_SECONDS} seconds", field="backoffSeconds"
        )
    return EndpointSpec(
        name=name,
        url=check_url(spec.url),
        kinds=kinds,
        node=spec.node,
        scope=spec.scope,
        max_attempts=spec.max_attempts,
        backoff_seconds=spec.backoff_seconds,
        personal_data=spec.personal_data,
    )


async def _scope_of(session: AsyncSession, actor: TenantContext, spec: EndpointSpec) -> str:
    if spec.node is not None:
        level, node_id = spec.node
        node = (await hierarchy.by_ids(session, level, actor.tenant_id, [node_id])).get(node_id)
        if node is None:
            raise NotFound(f"no {level.value} {node_id} is visible to you", field="scopeNodeId")
        scope = str(node.scope)
    else:
        scope = spec.scope or city_scope(actor.tenant_id)
    if not any(scope_is_within(scope, own) for own in actor.scopes):
        raise OutOfScope(f"{scope} lies outside your scope", field="scopeNodeId")
    return scope


async def create_endpoint(
    session: AsyncSession, actor: TenantContext, spec: EndpointSpec
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (shown once: give it to the receiver)."""
    spec = _checked(spec)
    scope = await _scope_of(session, actor, spec)
    secret = "whsec_" + secrets.token_urlsafe(32)
    exists = await session.scalar(
        select(WebhookEndpoint.id).where(
            WebhookEndpoint.tenant_id == actor.tenant_id, WebhookEndpoint.name == spec.name
        )
    )
    if exists is not None:
        raise Conflict(f"an endpoint named {spec.name!r} exists already", field="name")
    endpoint = WebhookEndpoint(
        tenant_id=actor.tenant_id,
        scope=scope,
        name=spec.name,
        url=spec.url,
        secret=secret,
        kinds=list(spec.kinds),
        max_attempts=spec.max_attempts,
        backoff_seconds=spec.backoff_seconds,
        personal_data=spec.personal_data,
    )
    session.add(endpoint)
    try:
        await session.flush()
    except IntegrityError:  # created by a concurrent call between the check and the insert
        raise Conflict(f"an endpoint named {spec.name!r} exists already", field="name") from None
    await session.refresh(endpoint)
    return endpoint, secret


async def endpoints(session: AsyncSession, tenant_id: int) -> list[WebhookEndpoint]:
    return list(
        (
            await session.scalars(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.tenant_id == tenant_id)
                .order_by(WebhookEndpoint.id)
            )
        ).all()
    )


async def disable_endpoint(session: AsyncSession, actor: TenantContext, endpoint_id: int) -> WebhookEndpoint:
    """Stop sending to an endpoint; its pending deliveries end as dead letters when their task runs."""
    endpoint = await session.scalar(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == actor.tenant_id, WebhookEndpoint.id == endpoint_id)
        .with_for_update()
    )
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id} is visible to you", field="id")
    endpoint.active = False
    await session.flush()
    return endpoint


async def subscribed(session: AsyncSession, tenant_id: int, scope: str, kind: str) -> list[WebhookEndpoint]:
    """Active endpoints subscribed to `kind` (an empty list: all kinds) whose scope covers `scope`."""
    return list(
        (
            await session.scalars(
                select(WebhookEndpoint)
                .where(
                    WebhookEndpoint.tenant_id == tenant_id,
                    WebhookEndpoint.active.is_(True),
                    WebhookEndpoint.scope.op("@>")(func.text2ltree(scope)),
                    or_(func.cardinality(WebhookEndpoint.kinds) == 0, WebhookEndpoint.kinds.contains([kind])),
                )
                .order_by(WebhookEndpoint.id)
            )
        ).all()
    )


# --- deliveries --------------------------------------------------------------------------------------


async def fan_out(session: AsyncSession, *, tenant_id: int, scope: str, kind: str, source: str) -> list[int]:
    """One delivery and one webhook task per subscribed endpoint; the ids of the deliveries this call
    created (none when `source` was fanned out before)."""
    created: list[int] = []
    for endpoint in await subscribed(session, tenant_id, scope, kind):
        delivery_id = await session.scalar(
            insert(WebhookDelivery)
            .values(tenant_id=tenant_id, endpoint_id=endpoint.id, scope=scope, source=source, kind=kind)
            .on_conflict_do_nothing(index_elements=["tenant_id", "endpoint_id", "source"])
            .returning(WebhookDelivery.id)
        )
        if delivery_id is not None:
            await enqueue(
                session,
                tenant_id=tenant_id,
                scope=scope,
                task=WEBHOOK_TASK,
                kwargs={"delivery_id": delivery_id},
            )
            created.append(delivery_id)
    return created


async def deliveries(
    session: AsyncSession,
    tenant_id: int,
    *,
    status: str | None = None,
    first: int = 50,
    after: int | None = None,
) -> tuple[list[WebhookDelivery], int, bool]:
    """Newest first: (rows, total, has_next)."""
    if status is not None and status not in {"pending", "delivered", "dead"}:
        raise InvalidInput("status must be pending, delivered or dead", field="status")
    where = [WebhookDelivery.tenant_id == tenant_id]
    if status is not None:
        where.append(WebhookDelivery.status == status)
    total = int(await session.scalar(select(func.count()).select_from(WebhookDelivery).where(*where)) or 0)
    query = select(WebhookDelivery).where(*where)
    if after is not None:
        query = query.where(WebhookDelivery.id < after)
    rows = list((await session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(first + 1))).all())
    return rows[:first], total, len(rows) > first


async def endpoint_names(session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> dict[int, str]:
    rows = await session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.name).where(
            WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.id.in_(set(ids))
        )
    )
    return {int(row.id): str(row.name) for row in rows}


async def retry_delivery(session: AsyncSession, actor: TenantContext, delivery_id: int) -> WebhookDelivery:
    """Send a dead letter again: back to pending with fresh attempts, and a new webhook task."""
    delivery = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.tenant_id == actor.tenant_id, WebhookDelivery.id == delivery_id
        )
    )
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id} is visible to you", field="id")
    active = await session.scalar(
        select(WebhookEndpoint.active).where(
            WebhookEndpoint.tenant_id == actor.tenant_id, WebhookEndpoint.id == delivery.endpoint_id
        )
    )
    if not active:
        raise Conflict("the delivery's endpoint is disabled", field="id")
    revived = await session.scalar(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.tenant_id == actor.tenant_id,
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == "dead",
        )
        .values(status="pending", attempts=0, dead_at=None)
        .returning(WebhookDelivery)
        .execution_options(populate_existing=True)
    )
    if revived is None:
        raise Conflict(
            f"delivery {delivery_id} is {delivery.status}; only a dead letter is retried", field="id"
        )
    await enqueue(
        session,
        tenant_id=actor.tenant_id,
        scope=revived.scope,
        task=WEBHOOK_TASK,
        kwargs={"delivery_id": delivery_id},
    )
    return revived


@dataclass(frozen=True)
class Attempt:
    """What one run of the webhook task did: the delivery's status afterwards, and when to try again."""

    status: str
    retry_in: int | None = None
    http_status: int | None = None


def backoff(base_seconds: int, attempts: int) -> int:
    """Seconds before attempt `attempts + 1`: base, 2 x base, 4 x base, ..., at most MAX_BACKOFF_SECONDS."""
    return int(min(base_seconds * 2 ** max(attempts - 1, 0), MAX_BACKOFF_SECONDS))


def recipient_for(notification: Notification, endpoint: WebhookEndpoint) -> str | None:
    """The recipient as this endpoint may see it: a phone number only for endpoints allowed personal data
    (the SMS gateway); others learn that a resident was told, not how to reach them."""
    recipient = notification.owner_principal
    if recipient is not None and recipient.startswith("phone:") and not endpoint.personal_data:
        return "phone:withheld"
    return recipient


def webhook_body(notification: Notification, tenant_code: str, recipient: str | None = None) -> bytes:
    document: dict[str, Any] = {
        "id": notification.id,
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
        "payload": notification.payload,
        "source": notification.source,
        "tenant": tenant_code,
        "scope": notification.scope,
        "created_at": notification.created_at.isoformat(),
        # Who it is for (a principal, or phone:<digits> for an SMS gateway); null: the staff of `scope`.
        "recipient": recipient,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


async def attempt(
    session: AsyncSession, tenant_id: int, delivery_id: int, *, client: httpx.AsyncClient | None = None
) -> Attempt:
    """POST one delivery once, unless it is settled already or another worker is sending it.

    The row stays locked (FOR UPDATE SKIP LOCKED) for the request, at most the 10 s timeout: a duplicate
    task running meanwhile skips it instead of sending it a second time.
    """
    delivery = await session.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.id == delivery_id)
        .with_for_update(skip_locked=True)
    )
    if delivery is None:
        exists = await session.scalar(
            select(WebhookDelivery.status).where(
                WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.id == delivery_id
            )
        )
        return Attempt("missing" if exists is None else "busy")
    if delivery.status != "pending":
        return Attempt(delivery.status)
    endpoint = await session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.id == delivery.endpoint_id
        )
    )
    notification = await session.scalar(
        select(Notification).where(
            Notification.tenant_id == tenant_id, Notification.source == delivery.source
        )
    )
    if endpoint is None or not endpoint.active or notification is None:
        delivery.status, delivery.dead_at = "dead", datetime.now(UTC)
        delivery.last_error = "the notice is gone" if notification is None else "the endpoint is disabled"
        await session.flush()
        return Attempt("dead")
    tenant_code = await session.scalar(select(City.code).where(City.tenant_id == tenant_id))
    body = webhook_body(notification, str(tenant_code), recipient_for(notification, endpoint))
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "liaison-grid-webhooks/1",
        SIGNATURE_HEADER: sign(endpoint.secret, timestamp, body),
        TIMESTAMP_HEADER: timestamp,
        DELIVERY_HEADER: str(delivery.id),
    }
    http_status: int | None = None
    error: str | None = None
    try:
        if client is None:
            async with httpx.AsyncClient(
                timeout=TIMEOUT_SECONDS, verify=_tls(), follow_redirects=False
            ) as own:
                response = await own.post(endpoint.url, content=body, headers=headers)
        else:
            response = await client.post(endpoint.url, content=body, headers=headers)
        http_status = response.status_code
        if not 200 <= http_status < 300:
            error = f"HTTP {http_status}: {response.text[:500]}".strip()
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}"[:1000]
    delivery.attempts += 1
    delivery.last_status = http_status
    if error is None:
        delivery.status, delivery.delivered_at, delivery.last_error = "delivered", datetime.now(UTC), None
        await session.flush()
        return Attempt("delivered", http_status=http_status)
    delivery.last_error = error
    if delivery.attempts >= endpoint.max_attempts:
        delivery.status, delivery.dead_at = "dead", datetime.now(UTC)
        await session.flush()
        return Attempt("dead", http_status=http_status)
    await session.flush()
    return Attempt(
        "pending", retry_in=backoff(endpoint.backoff_seconds, delivery.attempts), http_status=http_status
    )
