"""Response and resolution deadlines as timer rows, and what happens when they come: blue when a deadline
is near, yellow when it has passed (and the request goes one level up: community, deputy, department), red
when it passes again after an escalation."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.requests import repository
from services.requests.calendar import load_calendar
from services.requests.lifecycle import LEVELS, OPEN_STATES, REQUEST, RESOLVED, UNANSWERED
from services.requests.models import Request, RequestSettings
from services.requests.notices import tell_assignee, tell_staff, tell_submitter
from services.timers.models import Timer
from services.timers.service import TimerSpec, cancel, handles, schedule, schedule_many
from services.workflow.machine import SYSTEM
from services.workflow.service import record

RESPONSE_SOON, RESPONSE_OVERDUE = "request.response_due_soon", "request.response_overdue"
RESOLUTION_SOON, RESOLUTION_OVERDUE = "request.resolution_due_soon", "request.resolution_overdue"
AUTO_CLOSE = "request.auto_close"
RESPONSE_KINDS = (RESPONSE_SOON, RESPONSE_OVERDUE)
RESOLUTION_KINDS = (RESOLUTION_SOON, RESOLUTION_OVERDUE)
# A resolved request nobody rates is closed after this long.
AUTO_CLOSE_AFTER = timedelta(days=7)
# Why a request goes one level up: a missed deadline (the only one that colours it), a dispatcher's
# decision, or a second rating below the threshold.
DEADLINE, MANUAL, RATING = "deadline", "manual", "rating"


def _watch(request: Request, kind: str, due_at: datetime, deadline: datetime) -> TimerSpec:
    # Keyed by the deadline it watches: a moved deadline is a new timer, a repeated call is not.
    key = f"request:{request.id}:{kind}:{deadline.isoformat()}"
    return TimerSpec(kind, key, due_at, {"deadline": deadline.isoformat()})


async def _schedule(session: AsyncSession, request: Request, timers: list[TimerSpec]) -> None:
    await schedule_many(
        session, tenant_id=request.tenant_id, scope=request.scope, subject_id=request.id, timers=timers
    )


def _resolution_timers(request: Request, settings: RequestSettings) -> list[TimerSpec]:
    soon = timedelta(hours=settings.due_soon_hours)
    due = request.resolution_due_at
    return [_watch(request, RESOLUTION_SOON, due - soon, due), _watch(request, RESOLUTION_OVERDUE, due, due)]


async def schedule_resolution(session: AsyncSession, request: Request, settings: RequestSettings) -> None:
    await _schedule(session, request, _resolution_timers(request, settings))


async def schedule_deadlines(session: AsyncSession, request: Request, settings: RequestSettings) -> None:
    soon = timedelta(hours=settings.due_soon_hours)
    due = request.response_due_at
    response = [_watch(request, RESPONSE_SOON, due - soon, due), _watch(request, RESPONSE_OVERDUE, due, due)]
    await _schedule(session, request, response + _resolution_timers(request, settings))


async def schedule_auto_close(session: AsyncSession, request: Request, resolved_at: datetime) -> None:
    await schedule(
        session,
        tenant_id=request.tenant_id,
        scope=request.scope,
        kind=AUTO_CLOSE,
        subject_id=request.id,
        key=f"request:{request.id}:{AUTO_CLOSE}:{request.resolution_round}",
        due_at=resolved_at + AUTO_CLOSE_AFTER,
        payload={"round": request.resolution_round},
    )


async def cancel_response(session: AsyncSession, request: Request, now: datetime) -> None:
    await cancel(session, tenant_id=request.tenant_id, subject_id=request.id, kinds=RESPONSE_KINDS, now=now)


async def cancel_all(session: AsyncSession, request: Request, now: datetime) -> None:
    kinds = (*RESPONSE_KINDS, *RESOLUTION_KINDS, AUTO_CLOSE)
    await cancel(session, tenant_id=request.tenant_id, subject_id=request.id, kinds=kinds, now=now)


async def _watched(
    session: AsyncSession, timer: Timer, states: frozenset[str], column: str
) -> Request | None:
    """The request, if it still waits on the very deadline this timer watches."""
    request = await repository.get(session, timer.tenant_id, timer.subject_id, for_update=True)
    if request.state not in states:
        return None
    watched = timer.payload.get("deadline")
    if watched is None or getattr(request, column) != datetime.fromisoformat(watched):
        return None
    return request


async def escalate(
    session: AsyncSession,
    request: Request,
    now: datetime,
    *,
    actor: str,
    actor_kinds: set[str],
    note: str,
    reason: str,
    note_public: bool = False,
) -> None:
    """One level up (community → deputy → department) with a new deadline there, counted in
    `escalations`. Only a missed deadline colours it: yellow the first time, red once a deadline was
    missed again; otherwise the deadline it was due by no longer stands, so neither does its blue."""
    REQUEST.check("escalate", request.state, actor_kinds, note)
    settings = await repository.settings_of(session, request.tenant_id)
    calendar = await load_calendar(session, request.tenant_id, settings.timezone)
    from_state, from_level = request.state, request.level
    if reason == DEADLINE:
        request.supervision = "red" if request.supervision in {"yellow", "red"} else "yellow"
        request.overdue = True
    elif request.supervision == "blue":
        request.supervision = "none"
    request.escalations += 1
    if request.level < len(LEVELS) - 1:
        request.level += 1
        request.responsible = LEVELS[request.level]
        if request.responsible == "deputy":
            request.assignee = await repository.deputy_of(session, request.tenant_id, request.scope)
        else:
            request.assignee = None
            request.department = request.department or settings.default_department
    request.state = "assigned"
    request.resolution_due_at = calendar.deadline(now, settings.escalation_days)
    request.updated_at = now
    await cancel_response(session, request, now)
    event = await record(
        session,
        REQUEST,
        tenant_id=request.tenant_id,
        subject_id=request.id,
        scope=request.scope,
        step="escalate",
        from_state=from_state,
        to_state=request.state,
        actor=actor,
        note=note,
        public=note_public,
        payload={
            "reason": reason,
            "from_level": from_level,
            "to_level": request.level,
            "supervision": request.supervision,
        },
        at=now,
    )
    await session.flush()  # the event's id keys the notices below
    await schedule_resolution(session, request, settings)
    key = f"event:{event.id}"
    await tell_staff(
        session, request, "request.escalated", f"诉求 {request.ticket} 已升级督办", note, key=key
    )
    await tell_assignee(session, request, key)
    await tell_submitter(session, request, key, "诉求已升级办理", note if note_public else None)


@handles(RESPONSE_SOON)
async def response_due_soon(session: AsyncSession, timer: Timer, now: datetime) -> None:
    request = await _watched(session, timer, UNANSWERED, "response_due_at")
    if request is not None and request.supervision == "none":
        request.supervision = "blue"
        await tell_staff(
            session,
            request,
            "request.due_soon",
            f"诉求 {request.ticket} 即将超过响应时限",
            "",
            key="response",
        )


@handles(RESOLUTION_SOON)
async def resolution_due_soon(session: AsyncSession, timer: Timer, now: datetime) -> None:
    request = await _watched(session, timer, OPEN_STATES, "resolution_due_at")
    if request is not None and request.supervision == "none":
        request.supervision = "blue"
        key = f"resolution:{timer.id}"
        await tell_staff(
            session, request, "request.due_soon", f"诉求 {request.ticket} 即将超过办理时限", "", key=key
        )


@handles(RESPONSE_OVERDUE)
async def response_overdue(session: AsyncSession, timer: Timer, now: datetime) -> None:
    request = await _watched(session, timer, UNANSWERED, "response_due_at")
    if request is not None:
        await escalate(
            session,
            request,
            now,
            actor=SYSTEM,
            actor_kinds={SYSTEM},
            note="超过响应时限未受理，升级督办",
            reason=DEADLINE,
            note_public=True,
        )


@handles(RESOLUTION_OVERDUE)
async def resolution_overdue(session: AsyncSession, timer: Timer, now: datetime) -> None:
    request = await _watched(session, timer, OPEN_STATES, "resolution_due_at")
    if request is not None:
        await escalate(
            session,
            request,
            now,
            actor=SYSTEM,
            actor_kinds={SYSTEM},
            note="超过办理时限未办结，升级督办",
            reason=DEADLINE,
            note_public=True,
        )


@handles(AUTO_CLOSE)
async def auto_close(session: AsyncSession, timer: Timer, now: datetime) -> None:
    request = await repository.get(session, timer.tenant_id, timer.subject_id, for_update=True)
    if request.state != RESOLVED or request.resolution_round != timer.payload.get("round"):
        return
    REQUEST.check("close", request.state, {SYSTEM})
    request.state, request.closed_at, request.updated_at = "closed", now, now
    event = await record(
        session,
        REQUEST,
        tenant_id=request.tenant_id,
        subject_id=request.id,
        scope=request.scope,
        step="close",
        from_state=RESOLVED,
        to_state="closed",
        actor=SYSTEM,
        note="评价期满未评价，自动办结",
        at=now,
    )
    await session.flush()
    await tell_submitter(session, request, f"event:{event.id}", "诉求已办结")
