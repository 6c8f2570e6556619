"""What the submitter and the holder of a receipt may see of a request: its states, where it went, its
deadlines, and of the notes only those marked public (each step otherwise says what happened in a fixed
phrase). Nothing personal: no name, phone, email or account, and no staff member's name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.hierarchy import repository as hierarchy
from services.hierarchy.repository import Level
from services.requests import codes, repository
from services.requests.lifecycle import CLOSED, MERGED, REJECTED, REQUEST, RESOLVED
from services.requests.models import Request, RequestFollower
from services.workflow.machine import SYSTEM
from services.workflow.models import WorkflowEvent
from services.workflow.service import histories, history
from tenants.context import TenantContext

FINISHED = frozenset({CLOSED, MERGED, REJECTED})
# What each step says publicly when its note is not marked public (or it has none).
PHRASES = {
    "submit": "已收到",
    "accept": "已受理",
    "assign": "已交办",
    "reassign": "已重新交办",
    "start": "正在办理",
    "resolve": "已办理完毕，请评价",
    "return": "正在重新分派",
    "reroute": "已分派",
    "merge": "已并入其他诉求一并办理",
    "reject": "不予受理",
    "close": "已办结",
    "reopen": "评价不满意，重新办理",
    "escalate": "已升级办理",
}
# A merged request follows its survivor; a longer chain than this is cut off.
MAX_MERGES = 5


def public_context(tenant_id: int) -> TenantContext:
    """The context of look-ups anyone may make with a receipt (the ticket and its check code)."""
    return TenantContext.whole_tenant(tenant_id, "system:progress")


def public_note(step: str, note: str | None, public: bool, payload: dict[str, Any] | None = None) -> str:
    if public and note:
        return note
    into = (payload or {}).get("into")
    if step == "merge" and into:
        return f"已并入 {into} 一并办理"
    return PHRASES.get(step, "")


def public_actor(actor: str, viewer: str | None) -> str:
    """Who took a step, as the submitter sees it: themselves, the system, or "staff"."""
    if actor in (viewer, SYSTEM) or actor.startswith("channel:"):
        return actor
    return "staff"


def agency_of(request: Request, station_name: str | None) -> str | None:
    """The responsible unit, as Open311's agency_responsible: the department, else the station."""
    if request.responsible == "department" and request.department:
        return request.department
    return station_name or request.department


@dataclass(frozen=True, slots=True)
class PublicStep:
    at: datetime
    step: str
    state: str
    note: str


@dataclass(frozen=True, slots=True)
class PublicProgress:
    ticket: str
    category: str
    state: str
    submitted_at: datetime
    response_due_at: datetime
    resolution_due_at: datetime
    station: str | None
    agency: str | None
    steps: tuple[PublicStep, ...]
    merged_into: PublicProgress | None = None

    @property
    def closed(self) -> bool:
        return self.state in FINISHED


def public_steps(events: list[WorkflowEvent]) -> tuple[PublicStep, ...]:
    return tuple(
        PublicStep(e.at, e.step, e.to_state, public_note(e.step, e.note, e.public, e.payload)) for e in events
    )


async def station_name(session: AsyncSession, request: Request) -> str | None:
    if request.station_id is None:
        return None
    found = await hierarchy.by_ids(session, Level.STATION, request.tenant_id, [request.station_id])
    row = found.get(request.station_id)
    return str(row.name) if row is not None else None


async def progress_of(session: AsyncSession, request: Request, *, depth: int = 0) -> PublicProgress:
    """The public progress of a request the session may read, and of the request it was merged into."""
    events = await history(session, request.tenant_id, REQUEST.name, request.id)
    station = await station_name(session, request)
    survivor = None
    if request.merged_into_id is not None and depth < MAX_MERGES:
        into = await session.get(Request, (request.tenant_id, request.merged_into_id))
        if into is not None:
            survivor = await progress_of(session, into, depth=depth + 1)
    category = await repository.category_name(session, request.tenant_id, request.category_id)
    return public_progress(request, category, station, public_steps(events), survivor)


def public_progress(
    request: Request,
    category: str,
    station: str | None,
    steps: tuple[PublicStep, ...],
    merged_into: PublicProgress | None = None,
) -> PublicProgress:
    """What the public sees of a request: its own fields, with the names and steps given."""
    return PublicProgress(
        ticket=request.ticket,
        category=category,
        state=request.state,
        submitted_at=request.submitted_at,
        response_due_at=request.response_due_at,
        resolution_due_at=request.resolution_due_at,
        station=station,
        agency=agency_of(request, station),
        steps=steps,
        merged_into=merged_into,
    )


async def by_receipt(
    session: AsyncSession, tenant_id: int, ticket: str, check_code: str
) -> PublicProgress | None:
    """Public by design to whoever holds the receipt: the ticket and its check code, both right, or nothing
    (the same nothing for a ticket that does not exist)."""
    request = await repository.by_ticket_and_code(
        session, tenant_id, ticket.strip(), check_code_hash=codes.digest(check_code)
    )
    return await progress_of(session, request) if request is not None else None


@dataclass(frozen=True, slots=True)
class SubmitterView:
    """What a submitter sees of their own request beyond its row: where it went, its steps, and (merged)
    the request it follows."""

    station: Any | None
    steps: tuple[WorkflowEvent, ...]
    follows: RequestFollower | None


async def submitter_views(
    session: AsyncSession, tenant_id: int, requests: Sequence[Request]
) -> dict[int, SubmitterView]:
    """For requests in the session's scope (one statement a kind, whatever their number)."""
    ids = [request.id for request in requests]
    events = await histories(session, tenant_id, REQUEST.name, ids)
    station_ids = sorted({r.station_id for r in requests if r.station_id is not None})
    stations = await hierarchy.by_ids(session, Level.STATION, tenant_id, station_ids) if station_ids else {}
    merged = [request.id for request in requests if request.state == MERGED]
    follows = await repository.followed_by_many(session, tenant_id, merged)
    return {
        r.id: SubmitterView(
            stations.get(r.station_id) if r.station_id is not None else None,
            tuple(events[r.id]),
            follows.get(r.id),
        )
        for r in requests
    }


async def rateable(session: AsyncSession, tenant_id: int, request_id: int) -> bool:
    """Whether a request (one the session may read) waits for its verdict."""
    request = await session.get(Request, (tenant_id, request_id))
    return (
        request is not None
        and request.state == RESOLVED
        and not await repository.rating_taken(session, request)
    )
