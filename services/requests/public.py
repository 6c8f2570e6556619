"""What anyone may read of a request: its public fields, selected column by column.

Nothing here selects owner_principal, contact_name or contact_phone; the Open311 API reads requests only
through these queries, so personal data cannot reach it by accident. Row-level security still decides
which rows the caller's session sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, and_, case, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.requests import codes
from services.requests.lifecycle import OPEN_STATES, STATES
from services.requests.models import Request, RequestCategory, RequestSettings
from services.requests.progress import PHRASES
from services.workflow.models import WorkflowEvent
from tenants.models import Station

CLOSED_STATES = frozenset(STATES) - OPEN_STATES
MAX_RESULTS = 1000


@dataclass(frozen=True, slots=True)
class PublicCategory:
    code: str
    name: str
    kind: str
    response_days: int
    resolution_days: int


@dataclass(frozen=True, slots=True)
class PublicRequest:
    ticket: str
    state: str
    status_note: str | None
    category_code: str
    category_name: str
    description: str
    agency: str | None
    submitted_at: datetime
    updated_at: datetime
    resolution_due_at: datetime
    address: str | None
    lon: float | None
    lat: float | None
    media_url: str | None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


@dataclass(frozen=True, slots=True)
class PublicSettings:
    open311_public: bool
    timezone: str


@dataclass(frozen=True, slots=True)
class RequestFilter:
    tickets: tuple[str, ...] = ()
    category_codes: tuple[str, ...] = ()
    submitted_from: datetime | None = None
    submitted_until: datetime | None = None
    open: bool | None = None  # None: open and closed alike
    limit: int = MAX_RESULTS


async def settings(session: AsyncSession, tenant_id: int) -> PublicSettings:
    row = (
        await session.execute(
            select(RequestSettings.open311_public, RequestSettings.timezone).where(
                RequestSettings.tenant_id == tenant_id
            )
        )
    ).first()
    if row is None:  # a tenant whose request settings were never written: the defaults
        return PublicSettings(open311_public=True, timezone="Asia/Shanghai")
    return PublicSettings(open311_public=bool(row.open311_public), timezone=str(row.timezone))


async def categories(session: AsyncSession, tenant_id: int, code: str | None = None) -> list[PublicCategory]:
    statement = (
        select(
            RequestCategory.code,
            RequestCategory.name,
            RequestCategory.kind,
            RequestCategory.response_days,
            RequestCategory.resolution_days,
        )
        .where(RequestCategory.tenant_id == tenant_id, RequestCategory.retired_at.is_(None))
        .order_by(RequestCategory.id)
    )
    if code is not None:
        statement = statement.where(RequestCategory.code == code)
    rows = await session.execute(statement)
    return [PublicCategory(r.code, r.name, r.kind, r.response_days, r.resolution_days) for r in rows]


def _public_note() -> Any:
    """services.requests.progress.public_note in SQL: the note if marked public, else the step's phrase."""
    into = WorkflowEvent.payload["into"].astext
    return case(
        (
            and_(WorkflowEvent.public.is_(True), func.coalesce(WorkflowEvent.note, "") != ""),
            WorkflowEvent.note,
        ),
        (and_(WorkflowEvent.step == "merge", into.is_not(None)), func.concat("已并入 ", into, " 一并办理")),
        *[(WorkflowEvent.step == step, literal(phrase)) for step, phrase in PHRASES.items()],
        else_=literal(""),
    )


def _public_requests(tenant_id: int) -> Select[Any]:
    # What the latest step of the request's history says publicly: the Open311 status_notes.
    note = (
        select(_public_note())
        .where(
            WorkflowEvent.tenant_id == Request.tenant_id,
            WorkflowEvent.workflow == "request",
            WorkflowEvent.subject_id == Request.id,
        )
        .order_by(WorkflowEvent.id.desc())
        .limit(1)
        .correlate(Request)
        .scalar_subquery()
    )
    agency = case(
        (Request.responsible == "department", Request.department),
        else_=func.coalesce(Station.name, Request.department),
    )
    return (
        select(
            Request.ticket,
            Request.state,
            note.label("status_note"),
            RequestCategory.code.label("category_code"),
            RequestCategory.name.label("category_name"),
            Request.description,
            agency.label("agency"),
            Request.submitted_at,
            Request.updated_at,
            Request.resolution_due_at,
            Request.address,
            func.ST_X(Request.geom).label("lon"),
            func.ST_Y(Request.geom).label("lat"),
            Request.photo_urls[0].astext.label("media_url"),
        )
        .join(
            RequestCategory,
            and_(
                RequestCategory.tenant_id == Request.tenant_id,
                RequestCategory.id == Request.category_id,
            ),
        )
        .outerjoin(Station, and_(Station.tenant_id == Request.tenant_id, Station.id == Request.station_id))
        .where(Request.tenant_id == tenant_id)
    )


def _rows(rows: Sequence[Row[Any]]) -> list[PublicRequest]:
    # The labels of _public_requests are the field names of PublicRequest.
    return [PublicRequest(**row._mapping) for row in rows]


async def by_ticket(session: AsyncSession, tenant_id: int, ticket: str) -> PublicRequest | None:
    found = _rows((await session.execute(_public_requests(tenant_id).where(Request.ticket == ticket))).all())
    return found[0] if found else None


async def search(session: AsyncSession, tenant_id: int, where: RequestFilter) -> list[PublicRequest]:
    """Requests matching the filter, newest first, at most `where.limit` of them. Tickets, when given,
    override every other criterion (as Open311 asks)."""
    statement = _public_requests(tenant_id)
    if where.tickets:
        statement = statement.where(Request.ticket.in_(where.tickets))
    else:
        if where.category_codes:
            statement = statement.where(RequestCategory.code.in_(where.category_codes))
        if where.submitted_from is not None:
            statement = statement.where(Request.submitted_at >= where.submitted_from)
        if where.submitted_until is not None:
            statement = statement.where(Request.submitted_at <= where.submitted_until)
        if where.open is not None:
            states = OPEN_STATES if where.open else CLOSED_STATES
            statement = statement.where(Request.state.in_(sorted(states)))
    statement = statement.order_by(Request.submitted_at.desc(), Request.id.desc()).limit(
        min(where.limit, MAX_RESULTS)
    )
    return _rows((await session.execute(statement)).all())


async def ticket_for_token(session: AsyncSession, tenant_id: int, channel: str, token: str) -> str | None:
    """The ticket of the request a channel's client knows by `token` (its check code, kept as a hash)."""
    found = await session.scalar(
        select(Request.ticket).where(
            Request.tenant_id == tenant_id,
            Request.channel == channel,
            Request.check_code_hash == codes.digest(token),
        )
    )
    return str(found) if found is not None else None
