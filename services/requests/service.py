"""The steps staff, deputies and residents take on a request. Each checks the declared lifecycle, changes
the row, records the step (history + audit chain), moves the deadlines and tells the people concerned.

Every step reads its request inside the actor's scopes (`Actor.scopes`, besides row-level security): staff
and assignees act in their own scoped transaction. A submitter rates in the transaction `services.reach`
makes for the one request they rate (their own transaction may read their requests but not write them);
see `rating_place`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deputies import points
from services.errors import Conflict, InvalidInput
from services.reach import Target, not_found
from services.requests import codes, repository
from services.requests.calendar import load_calendar
from services.requests.deadlines import (
    MANUAL,
    RATING,
    cancel_all,
    cancel_response,
    escalate,
    schedule_auto_close,
    schedule_resolution,
)
from services.requests.lifecycle import (
    ASSIGNEE,
    DISPATCHERS,
    LEVELS,
    MERGED,
    OPEN_STATES,
    PUBLIC_NOTE_STEPS,
    REQUEST,
    RESOLVED,
    SUBMITTER,
)
from services.requests.models import Request, RequestCategory, RequestFollower, RequestRating
from services.requests.notices import (
    submitter_address,
    tell_assignee,
    tell_followers,
    tell_staff,
    tell_submitter,
)
from services.workflow.machine import SYSTEM
from services.workflow.models import WorkflowEvent
from services.workflow.rows import same_place
from services.workflow.service import advance
from tenants.context import TenantContext, scope_is_within
from tenants.models import Station, Street
from tenants.principals import resident_scope

MAX_NOTE = 2000
MAX_SCORE = 100
HOTLINE_OPERATORS = frozenset(role.value for role in DISPATCHERS)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who takes a step: their principal, their roles, and the scopes they act in."""

    principal: str
    roles: frozenset[str]
    scopes: tuple[str, ...]

    def kinds(self, request: Request) -> set[str]:
        kinds = set(self.roles)
        if request.owner_principal and request.owner_principal == self.principal:
            kinds.add(SUBMITTER)
        if request.assignee and request.assignee == self.principal:
            kinds.add(ASSIGNEE)
        return kinds

    def reaches(self, scope: str) -> bool:
        return any(scope_is_within(scope, own) for own in self.scopes)


async def _get(session: AsyncSession, actor: Actor, tenant_id: int, request_id: int) -> Request:
    return await repository.get(session, tenant_id, request_id, for_update=True, within=actor.scopes)


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
    note_public: bool | None = None,
    payload: dict[str, Any] | None = None,
) -> WorkflowEvent:
    """Take the step; the note is public (shown on the public progress) when marked so, by default only
    for the steps whose note answers the submitter (resolve, reject)."""
    event = await advance(
        session,
        REQUEST,
        request,
        name,
        actor=actor.principal,
        actor_kinds=actor.kinds(request),
        note=_note(note),
        public=name in PUBLIC_NOTE_STEPS if note_public is None else note_public,
        payload=payload,
        at=now,
    )
    request.updated_at = now
    # The event's id names the notices of this step (their key): it must exist before they are asked for.
    await session.flush()
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
    note_public: bool | None = None,
    now: datetime | None = None,
) -> Request:
    moment = _now(now)
    request = await _get(session, actor, tenant_id, request_id)
    event = await _step(session, actor, request, "accept", moment, note=note, note_public=note_public)
    request.responded_at = moment
    if request.supervision == "blue":
        request.supervision = "none"
    await cancel_response(session, request, moment)
    await _tell_of_step(session, request, event, "诉求已受理")
    return request


async def _tell_of_step(session: AsyncSession, request: Request, event: WorkflowEvent, title: str) -> None:
    """Tell the submitter of the step, with its note only when that is marked public."""
    await tell_submitter(session, request, f"event:{event.id}", title, event.note if event.public else None)


async def _answered(session: AsyncSession, request: Request, moment: datetime) -> None:
    """The first step that answers the request stops its response deadline."""
    if request.responded_at is None:
        request.responded_at = moment
        await cancel_response(session, request, moment)


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
    note_public: bool | None = None,
    now: datetime | None = None,
) -> Request:
    """Assign (or, when it already is, reassign with a reason) to a person, a level, a department."""
    moment = _now(now)
    request = await _get(session, actor, tenant_id, request_id)
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
        assignee = await repository.deputy_of(session, tenant_id, request.scope, request.category_id)
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
        note_public=note_public,
        payload={"assignee": assignee, "responsible": request.responsible},
    )
    await _answered(session, request, moment)
    await tell_assignee(session, request, f"event:{event.id}")
    await _tell_of_step(session, request, event, "诉求已交办")
    return request


async def start(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    note: str | None = None,
    *,
    note_public: bool | None = None,
    now: datetime | None = None,
) -> Request:
    moment = _now(now)
    request = await _get(session, actor, tenant_id, request_id)
    event = await _step(session, actor, request, "start", moment, note=note, note_public=note_public)
    await _answered(session, request, moment)
    await _tell_of_step(session, request, event, "诉求正在办理")
    return request


async def resolve(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    note: str,
    *,
    note_public: bool | None = None,
    now: datetime | None = None,
) -> Request:
    moment = _now(now)
    request = await _get(session, actor, tenant_id, request_id)
    event = await _step(session, actor, request, "resolve", moment, note=note, note_public=note_public)
    request.resolution_round += 1
    request.resolved_at = moment
    await _stop_the_clocks(session, request, moment)
    await schedule_auto_close(session, request, moment)
    title = "诉求已办理完毕，请评价"
    await _tell_of_step(session, request, event, title)
    # The submitters of requests merged into this one may rate it too.
    followers = await repository.followers(session, tenant_id, request.id)
    await tell_followers(session, request, followers, f"event:{event.id}", title)
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
    """Send back a request that is not the station's to handle; its street or district routes it again.
    The reason is the staff's own."""
    moment = _now(now)
    request = await _get(session, actor, tenant_id, request_id)
    event = await _step(session, actor, request, "return", moment, note=note, note_public=False)
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
    note_public: bool | None = None,
    now: datetime | None = None,
) -> Request:
    """Route by hand to a station inside the caller's scopes: a request outside every grid cell, or one its
    station returned."""
    moment = _now(now)
    request = await _get(session, actor, tenant_id, request_id)
    station = (
        await session.execute(
            select(Station.id, Station.scope, Station.street_id, Street.district_id)
            .join(Street, (Street.tenant_id == Station.tenant_id) & (Street.id == Station.street_id))
            .where(Station.tenant_id == tenant_id, Station.id == station_id, Station.retired_at.is_(None))
        )
    ).first()
    # Row-level security shows the ancestors of the caller's scope too: the station must lie inside it.
    if station is None or not actor.reaches(station.scope):
        raise not_found(f"station {station_id}", "stationId")
    request.scope = station.scope
    request.station_id, request.street_id, request.district_id = (
        station.id,
        station.street_id,
        station.district_id,
    )
    request.responsible, request.level, request.assignee = "station", 0, None
    event = await _step(
        session,
        actor,
        request,
        "reroute",
        moment,
        note=note,
        note_public=note_public,
        payload={"station_id": station_id},
    )
    await repository.move_followers(session, request)
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
    note_public: bool | None = None,
    now: datetime | None = None,
) -> Request:
    """Merge a duplicate into an open request inside the caller's scopes: its submitter is told, follows
    the survivor and may rate it."""
    moment = _now(now)
    if into_id == request_id:
        raise InvalidInput("a request cannot be merged into itself", field="intoId")
    request = await _get(session, actor, tenant_id, request_id)
    target = await repository.get(session, tenant_id, into_id, within=actor.scopes, field="intoId")
    if target.state not in OPEN_STATES:
        raise Conflict(
            f"request {target.ticket} is {target.state}: merge into an open request", field="intoId"
        )
    if target.category_id != request.category_id:
        raise Conflict("only requests of the same category can be merged", field="intoId")
    event = await _step(
        session,
        actor,
        request,
        "merge",
        moment,
        note=note,
        note_public=note_public,
        payload={"into": target.ticket},
    )
    request.merged_into_id = target.id
    await _stop_the_clocks(session, request, moment)
    await repository.add_followers(session, target, request, submitter_address(request))
    await tell_submitter(
        session,
        request,
        f"event:{event.id}",
        f"诉求已并入 {target.ticket} 一并办理",
        f"办理完毕后可对 {target.ticket} 进行评价",
    )
    return request


async def reject(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    note: str,
    *,
    note_public: bool | None = None,
    now: datetime | None = None,
) -> Request:
    moment = _now(now)
    request = await _get(session, actor, tenant_id, request_id)
    event = await _step(session, actor, request, "reject", moment, note=note, note_public=note_public)
    await _stop_the_clocks(session, request, moment)
    await _tell_of_step(session, request, event, "诉求不予受理")
    return request


async def escalate_by_hand(
    session: AsyncSession,
    actor: Actor,
    tenant_id: int,
    request_id: int,
    note: str,
    *,
    note_public: bool | None = None,
    now: datetime | None = None,
) -> Request:
    """One level up by a dispatcher's decision: an escalation, counted as such; the colour is left to the
    deadlines."""
    request = await _get(session, actor, tenant_id, request_id)
    await escalate(
        session,
        request,
        _now(now),
        actor=actor.principal,
        actor_kinds=actor.kinds(request),
        note=_note(note) or "",
        reason=MANUAL,
        note_public=bool(note_public),
    )
    return request


# --- ratings -------------------------------------------------------------------------------------------


def raters(request: Request, followers: Sequence[RequestFollower]) -> set[str]:
    """Who may give the submitter's verdict on a request: its submitter, the holder of its rating code,
    and the same for every request merged into it."""
    named = {request.owner_principal} if request.owner_principal else set()
    if request.rating_code_hash:
        named.add(codes.rating_principal(request.id))
    for follower in followers:
        if follower.owner_principal:
            named.add(follower.owner_principal)
        named.add(codes.rating_principal(follower.merged_id))
    return named


def for_caller(actor: Actor, request: Request) -> bool:
    """A hotline operator gives a caller's verdict on a hotline request (one they reach: see `_get`)."""
    return request.channel == "hotline" and not HOTLINE_OPERATORS.isdisjoint(actor.roles)


@dataclass(frozen=True, slots=True)
class RatingPlace:
    """The request a submitter rates (their own, or the survivor of theirs when it was merged) and the
    target `services.reach.acting_on` is asked to open a transaction on."""

    request_id: int
    target: Target
    # The request the caller holds (their own, or the one their rating code belongs to).
    own: Request


async def rating_place(
    session: AsyncSession, actor: Actor, tenant_id: int, request_id: int
) -> RatingPlace | None:
    """In the caller's own transaction (row-level security shows a resident their own requests): where
    the caller's verdict on this request is taken, if it is theirs as its submitter; None otherwise (staff
    rate for a caller in their own transaction)."""
    request = await repository.get(session, tenant_id, request_id)
    if request.owner_principal != actor.principal:
        return None
    if request.state != MERGED:
        return RatingPlace(
            request.id, Target(tenant_id, request.scope, owner=request.owner_principal), request
        )
    # Merged: the follower row names them on the survivor, and lies in its scope (they may read it).
    follows = await repository.followed_by(session, tenant_id, request.id)
    if follows is None:
        raise not_found(f"request {request_id}")
    return RatingPlace(
        follows.request_id, Target(tenant_id, follows.scope, participants=(actor.principal,)), request
    )


def holder_context(tenant_id: int, request_id: int) -> TenantContext:
    """The holder of a request's rating code, once the code has been checked: no territory of their own."""
    return TenantContext(tenant_id, (resident_scope(tenant_id),), codes.rating_principal(request_id))


async def code_rating_place(
    session: AsyncSession, tenant_id: int, ticket: str, rating_code: str
) -> tuple[TenantContext, RatingPlace] | None:
    """The one check of a rating code (in the public look-up's context): the ticket and its rating code,
    both right, name the request the holder rates (or the survivor it was merged into) and who they act
    as; anything else names nothing, the same for a ticket that does not exist."""
    request = await repository.by_ticket_and_code(
        session, tenant_id, ticket.strip(), rating_code_hash=codes.digest(rating_code)
    )
    if request is None:
        return None
    holder = holder_context(tenant_id, request.id)
    if request.state != MERGED:
        target = Target(
            tenant_id, request.scope, owner=request.owner_principal, participants=(holder.principal,)
        )
        return holder, RatingPlace(request.id, target, request)
    follows = await repository.followed_by(session, tenant_id, request.id)
    if follows is None:
        return None
    target = Target(tenant_id, follows.scope, participants=(holder.principal,))
    return holder, RatingPlace(follows.request_id, target, request)


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
    """The submitter's verdict on the latest resolution (a hotline operator may give it for a caller):
    satisfaction out of 100, and whether it was solved. Not solved, or below the city's threshold, reopens
    the request for rectification; the second time it is also escalated."""
    moment = _now(now)
    if not 0 <= score <= MAX_SCORE:
        raise InvalidInput(f"rate from 0 to {MAX_SCORE}", field="score")
    request = await _get(session, actor, tenant_id, request_id)
    followers = await repository.followers(session, tenant_id, request.id)
    if actor.principal not in raters(request, followers) and not for_caller(actor, request):
        raise not_found(f"request {request_id}")
    if request.state != RESOLVED:
        raise Conflict(f"request {request.ticket} is {request.state}: only a resolved request can be rated")
    if await repository.rating_taken(session, request):
        raise Conflict("this resolution has been rated already")
    comment = _note(comment)
    session.add(
        RequestRating(
            **same_place(request),
            request_id=request.id,
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
    rater = Actor(actor.principal, actor.roles | {SUBMITTER}, actor.scopes)
    payload = {"score": score, "solved": solved}
    if solved and score >= settings.rating_threshold:
        event = await _step(
            session, rater, request, "close", moment, note=comment, note_public=False, payload=payload
        )
        request.closed_at = moment
        await _stop_the_clocks(session, request, moment)
        earning = points.Earning(0, None, request.scope, "request.satisfied", "request", request.id, moment)
        await points.award_principal(session, actor.principal, tenant_id, request.assignee, earning)
        await tell_submitter(session, request, f"event:{event.id}", "感谢评价，诉求已办结")
        return request
    reason = comment or (
        "未解决" if not solved else f"满意度 {score} 分，低于 {settings.rating_threshold} 分"
    )
    event = await _step(
        session, rater, request, "reopen", moment, note=f"整改：{reason}", note_public=False, payload=payload
    )
    request.reopen_count += 1
    request.closed_at = None
    await cancel_all(session, request, moment)
    if request.reopen_count > 1:
        # Rectified once already and still not satisfied: one level up.
        note = f"第{request.reopen_count}次评价不满意，升级办理：{reason}"
        await escalate(session, request, moment, actor=SYSTEM, actor_kinds={SYSTEM}, note=note, reason=RATING)
        return request
    calendar = await load_calendar(session, tenant_id, settings.timezone)
    category_days = await _resolution_days(session, tenant_id, request.category_id)
    request.resolution_due_at = calendar.deadline(moment, category_days)
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
