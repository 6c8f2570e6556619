"""The steps staff, deputies and residents take on a request. Each checks the declared lifecycle, changes
the row, records the step (history + audit chain), moves the deadlines and tells the people concerned.

Staff act in their own scoped transaction (RLS decides what they can reach). A resident rates in a
system transaction, after the service has checked that the request is theirs (their own transaction may
read their requests but not write them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import Conflict, InvalidInput, NotFound
from services.requests import repository
from services.requests.calendar import load_calendar
from services.requests.deadlines import (
    cancel_all,
    cancel_response,
    escalate,
    schedule_auto_close,
    schedule_resolution,
)
from services.requests.lifecycle import (
    ASSIGNEE,
    CLOSED,
    LEVELS,
    OPEN_STATES,
    REQUEST,
    RESOLVED,
    SUBMITTER,
)
from services.requests.models import Request, RequestCategory, RequestRating
from services.requests.notices import tell_assignee, tell_staff, tell_submitter
from services.workflow.models import WorkflowEvent
from services.workflow.service import advance, history
from tenants.models import Station, Street

MAX_NOTE = 2000


@dataclass(frozen=True, slots=True)
class Actor:
    principal: str
    roles: frozenset[str]

    def kinds(self, request: Request) -> set[str]:
        kinds = set(self.roles)
        if request.owner_principal and request.owner_principal == self.principal:
            kinds.add(SUBMITTER)
        if request.assignee and request.assignee == self.principal:
            kinds.add(ASSIGNEE)
        return kinds


def _note(note: str | None) -> str | None:
    if note is None:
        return None
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"the note is longer than {MAX_NOTE} characters", field="note")
    return note or None


async def _step(
    session: AsyncSession,
    actor: Actor,
    request: Request,
    name: str,
    now: datetime,
    *,
    note: str | None = None,
    public: bool = True,
    payload: dict[str, Any] | None = None,
) -> WorkflowEvent:
    event = await advance(
        session,
        REQUEST,
        request,
        name,
        actor=actor.principal,
        actor_kinds=actor.kinds(request),
        note=_note(note),
        public=public,
        payload=payload,
        at=now,
    )
    request.updated_at = now
    return event


async def _stop_the_clocks(session: AsyncSession, request: Request, moment: datetime) -> None:
    """Nothing is due any more (resolved, merged, rejected, closed): no colour, no pending deadline."""
    request.supervision = "none"
    await cancel_all(session, request, moment)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


async def accept(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    note: str | None = None,
    *,
    now: datetime | None = None,
) -> Request:
    moment = _now(now)
    request = await repository.get(session, tenant_id, request_id, for_update=True)
    event = await _step(session, actor, request, "accept", moment, note=note)
    request.responded_at = moment
    if request.supervision == "blue":
        request.supervision = "none"
    await cancel_response(session, request, moment)
    await tell_submitter(session, request, f"event:{event.id}", "诉求已受理", event.note)
    return request


async def assign(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    *,
    assignee: str | None,
    responsible: str | None = None,
    department: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> Request:
    """Assign (or, when it already is, reassign with a reason) to a person, a level, a department."""
    moment = _now(now)
    request = await repository.get(session, tenant_id, request_id, for_update=True)
    name = "reassign" if request.state in {"assigned", "in_progress"} else "assign"
    if responsible is not None:
        if responsible not in LEVELS:
            raise InvalidInput(f"responsible must be one of {', '.join(LEVELS)}", field="responsible")
        request.responsible, request.level = responsible, LEVELS.index(responsible)
    if request.responsible == "department":
        request.department = department or request.department
        if not request.department:
            raise InvalidInput("name the department", field="department")
    elif request.responsible == "deputy" and assignee is None:
        assignee = await repository.deputy_of(session, tenant_id, request.scope)
        if assignee is None:
            raise InvalidInput("no deputy is linked to this station: name one", field="assignee")
    request.assignee = assignee
    event = await _step(
        session,
        actor,
        request,
        name,
        moment,
        note=note,
        payload={"assignee": assignee, "responsible": request.responsible},
    )
    if request.responded_at is None:
        request.responded_at = moment
        await cancel_response(session, request, moment)
    await tell_assignee(session, request, f"event:{event.id}")
    await tell_submitter(session, request, f"event:{event.id}", "诉求已交办", event.note)
    return request


async def start(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    note: str | None = None,
    *,
    now: datetime | None = None,
) -> Request:
    moment = _now(now)
    request = await repository.get(session, tenant_id, request_id, for_update=True)
    event = await _step(session, actor, request, "start", moment, note=note)
    await tell_submitter(session, request, f"event:{event.id}", "诉求正在办理", event.note)
    return request


async def resolve(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    note: str,
    *,
    now: datetime | None = None,
) -> Request:
    moment = _now(now)
    request = await repository.get(session, tenant_id, request_id, for_update=True)
    event = await _step(session, actor, request, "resolve", moment, note=note)
    request.resolution_round += 1
    request.resolved_at = moment
    await _stop_the_clocks(session, request, moment)
    await schedule_auto_close(session, request, moment)
    await tell_submitter(session, request, f"event:{event.id}", "诉求已办理完毕，请评价", event.note)
    return request


async def return_(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    note: str,
    *,
    now: datetime | None = None,
) -> Request:
    """Send back a request that is not the station's to handle; its street or district routes it again."""
    moment = _now(now)
    request = await repository.get(session, tenant_id, request_id, for_update=True)
    event = await _step(session, actor, request, "return", moment, note=note, public=False)
    request.assignee = None
    await tell_staff(
        session,
        request,
        "request.returned",
        f"诉求 {request.ticket} 被退回，需重新分派",
        note,
        key=f"event:{event.id}",
    )
    return request


async def reroute(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    station_id: int,
    note: str | None = None,
    *,
    now: datetime | None = None,
) -> Request:
    """Route by hand: a request outside every grid cell, or one its station returned."""
    moment = _now(now)
    request = await repository.get(session, tenant_id, request_id, for_update=True)
    station = (
        await session.execute(
            select(Station.id, Station.scope, Station.street_id, Street.district_id)
            .join(Street, (Street.tenant_id == Station.tenant_id) & (Street.id == Station.street_id))
            .where(Station.tenant_id == tenant_id, Station.id == station_id, Station.retired_at.is_(None))
        )
    ).first()
    if station is None:
        raise NotFound(f"station {station_id} does not exist or lies outside your scope", field="stationId")
    request.scope = station.scope
    request.station_id, request.street_id, request.district_id = (
        station.id,
        station.street_id,
        station.district_id,
    )
    request.responsible, request.level, request.assignee = "station", 0, None
    event = await _step(
        session, actor, request, "reroute", moment, note=note, payload={"station_id": station_id}
    )
    await tell_staff(
        session,
        request,
        "request.submitted",
        f"新诉求 {request.ticket}（人工分派）",
        note or "",
        key=f"event:{event.id}",
    )
    return request


async def merge(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    into_id: int,
    note: str,
    *,
    now: datetime | None = None,
) -> Request:
    moment = _now(now)
    if into_id == request_id:
        raise InvalidInput("a request cannot be merged into itself", field="intoId")
    request = await repository.get(session, tenant_id, request_id, for_update=True)
    target = await repository.get(session, tenant_id, into_id)
    if target.state not in OPEN_STATES:
        raise Conflict(
            f"request {target.ticket} is {target.state}: merge into an open request", field="intoId"
        )
    if target.category_id != request.category_id:
        raise Conflict("only requests of the same category can be merged", field="intoId")
    event = await _step(session, actor, request, "merge", moment, note=note, payload={"into": target.ticket})
    request.merged_into_id = target.id
    await _stop_the_clocks(session, request, moment)
    await tell_submitter(
        session, request, f"event:{event.id}", f"诉求已并入 {target.ticket} 一并办理", event.note
    )
    return request


async def reject(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    note: str,
    *,
    now: datetime | None = None,
) -> Request:
    moment = _now(now)
    request = await repository.get(session, tenant_id, request_id, for_update=True)
    event = await _step(session, actor, request, "reject", moment, note=note)
    await _stop_the_clocks(session, request, moment)
    await tell_submitter(session, request, f"event:{event.id}", "诉求不予受理", event.note)
    return request


async def escalate_by_hand(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    note: str,
    *,
    now: datetime | None = None,
) -> Request:
    request = await repository.get(session, tenant_id, request_id, for_update=True)
    await escalate(
        session,
        request,
        _now(now),
        actor=actor.principal,
        actor_kinds=actor.kinds(request),
        note=_note(note) or "",
    )
    return request


async def rate(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    *,
    score: int,
    solved: bool,
    comment: str | None = None,
    now: datetime | None = None,
) -> Request:
    """The submitter's verdict on the latest resolution (a hotline operator may give it for a caller).
    Not solved, or a score below the tenant's threshold, reopens the request for rectification."""
    moment = _now(now)
    if not 1 <= score <= 5:
        raise InvalidInput("rate from 1 to 5", field="score")
    request = await repository.get(session, tenant_id, request_id, for_update=True)
    on_behalf = request.channel == "hotline" and bool(
        actor.roles & {"city_admin", "district_staff", "street_staff"}
    )
    if request.owner_principal != actor.principal and not on_behalf:
        raise NotFound(f"request {request_id} does not exist or is not yours to rate", field="id")
    if request.state != RESOLVED:
        raise Conflict(f"request {request.ticket} is {request.state}: only a resolved request can be rated")
    taken = await session.scalar(
        select(RequestRating.id).where(
            RequestRating.tenant_id == tenant_id,
            RequestRating.request_id == request.id,
            RequestRating.resolution_round == request.resolution_round,
        )
    )
    if taken is not None:
        raise Conflict("this resolution has been rated already")
    comment = _note(comment)
    session.add(
        RequestRating(
            tenant_id=tenant_id,
            request_id=request.id,
            scope=request.scope,
            resolution_round=request.resolution_round,
            score=score,
            solved=solved,
            comment=comment,
            rated_by=actor.principal,
            at=moment,
        )
    )
    request.rating, request.solved = score, solved
    settings = await repository.settings_of(session, tenant_id)
    rater = Actor(actor.principal, actor.roles | {SUBMITTER})
    payload = {"score": score, "solved": solved}
    if solved and score >= settings.rating_threshold:
        event = await _step(session, rater, request, "close", moment, note=comment, payload=payload)
        request.closed_at = moment
        await _stop_the_clocks(session, request, moment)
        await tell_submitter(session, request, f"event:{event.id}", "感谢评价，诉求已办结")
        return request
    reason = comment or (
        "未解决" if not solved else f"满意度 {score} 分，低于 {settings.rating_threshold} 分"
    )
    event = await _step(session, rater, request, "reopen", moment, note=f"整改：{reason}", payload=payload)
    request.reopen_count += 1
    request.closed_at = None
    calendar = await load_calendar(session, tenant_id, settings.timezone)
    category_days = await _resolution_days(session, tenant_id, request.category_id)
    request.resolution_due_at = calendar.deadline(moment, category_days)
    await cancel_all(session, request, moment)
    await schedule_resolution(session, request, settings)
    key = f"event:{event.id}"
    await tell_staff(
        session, request, "request.reopened", f"诉求 {request.ticket} 评价不满意，需整改", reason, key=key
    )
    await tell_assignee(session, request, key)
    return request


async def _resolution_days(session: AsyncSession, tenant_id: int, category_id: int) -> int:
    days = await session.scalar(
        select(RequestCategory.resolution_days).where(
            RequestCategory.tenant_id == tenant_id, RequestCategory.id == category_id
        )
    )
    return int(days or 1)


@dataclass(frozen=True, slots=True)
class PublicStep:
    at: datetime
    step: str
    state: str
    note: str | None


@dataclass(frozen=True, slots=True)
class PublicProgress:
    ticket: str
    category: str
    state: str
    submitted_at: datetime
    resolution_due_at: datetime
    closed: bool
    steps: tuple[PublicStep, ...]


async def public_progress(session: AsyncSession, tenant_id: int, ticket: str) -> PublicProgress | None:
    """What anyone holding the ticket code may see: states and public notes, nothing personal."""
    request = await repository.by_ticket(session, tenant_id, ticket.strip())
    if request is None:
        return None
    category = await _category_name(session, tenant_id, request.category_id)
    events = await history(session, tenant_id, REQUEST.name, request.id, public_only=True)
    return PublicProgress(
        ticket=request.ticket,
        category=category,
        state=request.state,
        submitted_at=request.submitted_at,
        resolution_due_at=request.resolution_due_at,
        closed=request.state in {CLOSED, "merged", "rejected"},
        steps=tuple(PublicStep(e.at, e.step, e.to_state, e.note) for e in events),
    )


async def _category_name(session: AsyncSession, tenant_id: int, category_id: int) -> str:
    name = await session.scalar(
        select(RequestCategory.name).where(
            RequestCategory.tenant_id == tenant_id, RequestCategory.id == category_id
        )
    )
    return str(name)
