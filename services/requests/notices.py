"""Who hears about a request's steps: the staff of its scope, its assignee, the resident who sent it, and
the submitters of requests merged into it. Every notice lies in the request's own scope, and carries its
id, ticket and state; only the assignee's shows the description."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Unpack

from sqlalchemy.ext.asyncio import AsyncSession

from services.requests.models import Request, RequestFollower
from services.workflow.rows import NoticeDetails, notify_about

_PHONE = re.compile(r"[^0-9]")
PROGRESS = "request.progress"


def submitter_address(request: Request) -> str | None:
    """Where progress goes: the resident's account, else (anonymous) the phone they left, for the SMS
    gateway's webhook."""
    if request.owner_principal:
        return request.owner_principal
    if request.contact_phone:
        digits = _PHONE.sub("", request.contact_phone)[:20]
        return f"phone:{digits}" if digits else None
    return None


async def _send(
    session: AsyncSession,
    request: Request,
    reader: str,
    kind: str,
    title: str,
    **details: Unpack[NoticeDetails],
) -> None:
    """One notice about the request, with its id, ticket and state (and whatever `payload` adds); `reader`
    names whom it is for in its source, so each reader is told of each step once."""
    extra = details.get("payload") or {}
    details["payload"] = {"request_id": request.id, "ticket": request.ticket, "state": request.state, **extra}
    source = f"request:{request.id}:{reader}"
    await notify_about(session, request, kind=kind, title=title, source=source, **details)


async def tell_staff(
    session: AsyncSession, request: Request, kind: str, title: str, body: str, *, key: str = ""
) -> None:
    await _send(session, request, f"{kind}:{key or request.state}", kind, title, body=body)


async def tell_assignee(session: AsyncSession, request: Request, key: str) -> None:
    if request.assignee is None:
        return
    await _send(
        session,
        request,
        f"assignee:{key}",
        "request.assigned",
        f"请处理诉求 {request.ticket}",
        body=request.description[:200],
        recipient=request.assignee,
    )


async def tell_submitter(
    session: AsyncSession, request: Request, key: str, title: str, note: str | None = None
) -> None:
    recipient = submitter_address(request)
    if recipient is None:
        return
    shown = f"{title}（{request.ticket}）"
    await _send(session, request, f"submitter:{key}", PROGRESS, shown, body=note or "", recipient=recipient)


async def tell_followers(
    session: AsyncSession, request: Request, followers: Sequence[RequestFollower], key: str, title: str
) -> None:
    """The submitters of the requests merged into this one (their address was kept when they were merged)."""
    shown = f"{title}（{request.ticket}）"
    for follower in followers:
        if follower.recipient is None:
            continue
        reader = f"follower:{follower.merged_id}:{key}"
        merged = {"merged_id": follower.merged_id}
        await _send(session, request, reader, PROGRESS, shown, recipient=follower.recipient, payload=merged)
