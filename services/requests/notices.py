"""Who hears about a request's steps: the staff of its scope, its assignee, the resident who sent it, and
the submitters of requests merged into it. Every notice lies in the request's own scope, and carries its
id, ticket and state; only the assignee's shows the description."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.notifications.dispatch import notify
from services.requests.models import Request, RequestFollower

_PHONE = re.compile(r"[^0-9]")


def submitter_address(request: Request) -> str | None:
    """Where progress goes: the resident's account, else (anonymous) the phone they left, for the SMS
    gateway's webhook."""
    if request.owner_principal:
        return request.owner_principal
    if request.contact_phone:
        digits = _PHONE.sub("", request.contact_phone)[:20]
        return f"phone:{digits}" if digits else None
    return None


def _payload(request: Request) -> dict[str, object]:
    return {"request_id": request.id, "ticket": request.ticket, "state": request.state}


async def tell_staff(
    session: AsyncSession, request: Request, kind: str, title: str, body: str, *, key: str = ""
) -> None:
    await notify(
        session,
        tenant_id=request.tenant_id,
        scope=request.scope,
        kind=kind,
        title=title,
        body=body,
        payload=_payload(request),
        source=f"request:{request.id}:{kind}:{key or request.state}",
    )


async def tell_assignee(session: AsyncSession, request: Request, key: str) -> None:
    if request.assignee is None:
        return
    await notify(
        session,
        tenant_id=request.tenant_id,
        scope=request.scope,
        kind="request.assigned",
        title=f"请处理诉求 {request.ticket}",
        body=request.description[:200],
        recipient=request.assignee,
        payload=_payload(request),
        source=f"request:{request.id}:assignee:{key}",
    )


async def tell_submitter(
    session: AsyncSession, request: Request, key: str, title: str, note: str | None = None
) -> None:
    recipient = submitter_address(request)
    if recipient is None:
        return
    await notify(
        session,
        tenant_id=request.tenant_id,
        scope=request.scope,
        kind="request.progress",
        title=f"{title}（{request.ticket}）",
        body=note or "",
        recipient=recipient,
        payload=_payload(request),
        source=f"request:{request.id}:submitter:{key}",
    )


async def tell_followers(
    session: AsyncSession, request: Request, followers: Sequence[RequestFollower], key: str, title: str
) -> None:
    """The submitters of the requests merged into this one (their address was kept when they were merged)."""
    for follower in followers:
        if follower.recipient is None:
            continue
        await notify(
            session,
            tenant_id=request.tenant_id,
            scope=request.scope,
            kind="request.progress",
            title=f"{title}（{request.ticket}）",
            recipient=follower.recipient,
            payload={**_payload(request), "merged_id": follower.merged_id},
            source=f"request:{request.id}:follower:{follower.merged_id}:{key}",
        )
