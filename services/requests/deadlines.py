"""Response and resolution deadlines as timer rows, and what happens when they come: blue when a deadline
is near, yellow when it has passed (and the request goes one level up: community, deputy, department), red
when it passes again after an escalation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.deputies import points
from services.requests import repository
from services.requests.calendar import load_calendar
from services.requests.lifecycle import LEVELS, OPEN_STATES, REQUEST, RESOLVED, UNANSWERED
from services.requests.models import Request, RequestSettings
from services.requests.notices import tell_assignee, tell_staff, tell_submitter
from services.timers.models import Timer
from services.timers.service import TimerSpec, handles, schedule_many
from services.workflow.machine import SYSTEM
from services.workflow.rows import cancel_for, schedule_for
from services.workflow.service import advance

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
    await schedule_for(
        session,
        request,
        kind=AUTO_CLOSE,
        key=f"request:{request.id}:{AUTO_CLOSE}:{request.resolution_round}",
        due_at=resolved_at + AUTO_CLOSE_AFTER,
        payload={"round": request.resolution_round},
    )


async def cancel_response(session: AsyncSession, request: Request, now: datetime) -> None:
    await cancel_for(session, request, RESPONSE_KINDS, now)


async def cancel_all(session: AsyncSession, request: Request, now: datetime) -> None:
    await cancel_for(session, request, (*RESPONSE_KINDS, *RESOLUTION_KINDS, AUTO_CLOSE), now)


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
    from_level = request.level

    async def move_up() -> dict[str, Any]:
        settings = await repository.settings_of(session, request.tenant_id)
        calendar = await load_calendar(session, request.tenant_id, settings.timezone)
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
                request.assignee = await repository.deputy_of(
                    session, request.tenant_id, request.scope, request.category_id
                )
            else:
                request.assignee = None
                request.department = request.department or settings.default_department
        request.resolution_due_at = calendar.deadline(now, settings.escalation_days)
        request.updated_at = now
        await cancel_response(session, request, now)
        await schedule_resolution(session, request, settings)
        return {
            "reason": reason,
            "from_level": from_level,
            "to_level": request.level,
            "supervision": request.supervision,
        }

    event = await advance(
        session,
        REQUEST,
        request,
        "escalate",
        actor=actor,
        actor_kinds=actor_kinds,
        note=note,
        public=note_public,
        at=now,
        effects=move_up,
    )
    key = f"event:{event.id}"
    await tell_staff(
        session, request, "request.escalated", f"诉求 {request.ticket} 已升级督办", note, key=key
    )
    await tell_assignee(session, request, key)
    await tell_submitter(session, request, key, "诉求已升级办理", note if note_public else None)


async def _warn(session: AsyncSession, request: Request | None, deadline: str, key: str) -> None:
    """Blue: the response or resolution `deadline` is near, and nothing has coloured the request yet."""
    if request is not None and request.supervision == "none":
        request.supervision = "blue"
        title = f"诉求 {request.ticket} 即将超过{deadline}时限"
        await tell_staff(session, request, "request.due_soon", title, "", key=key)


async def _escalate_overdue(session: AsyncSession, request: Request | None, now: datetime, note: str) -> None:
    if request is not None:
        earning = points.Earning(0, None, request.scope, "request.overdue", "request", request.id, now)
        await points.award_principal(session, SYSTEM, request.tenant_id, request.assignee, earning)
        await escalate(
            session,
            request,
            now,
            actor=SYSTEM,
            actor_kinds={SYSTEM},
            note=note,
            reason=DEADLINE,
            note_public=True,
        )


@handles(RESPONSE_SOON)
async def response_due_soon(session: AsyncSession, timer: Timer, now: datetime) -> None:
    request = await _watched(session, timer, UNANSWERED, "response_due_at")
    await _warn(session, request, "响应", "response")


@handles(RESOLUTION_SOON)
async def resolution_due_soon(session: AsyncSession, timer: Timer, now: datetime) -> None:
    request = await _watched(session, timer, OPEN_STATES, "resolution_due_at")
    await _warn(session, request, "办理", f"resolution:{timer.id}")


@handles(RESPONSE_OVERDUE)
async def response_overdue(session: AsyncSession, timer: Timer, now: datetime) -> None:
    request = await _watched(session, timer, UNANSWERED, "response_due_at")
    await _escalate_overdue(session, request, now, "超过响应时限未受理，升级督办")


@handles(RESOLUTION_OVERDUE)
async def resolution_overdue(session: AsyncSession, timer: Timer, now: datetime) -> None:
    request = await _watched(session, timer, OPEN_STATES, "resolution_due_at")
    await _escalate_overdue(session, request, now, "超过办理时限未办结，升级督办")


@handles(AUTO_CLOSE)
async def auto_close(session: AsyncSession, timer: Timer, now: datetime) -> None:
    request = await repository.get(session, timer.tenant_id, timer.subject_id, for_update=True)
    if request.state != RESOLVED or request.resolution_round != timer.payload.get("round"):
        return
    note = "评价期满未评价，自动办结"
    event = await advance(
        session, REQUEST, request, "close", actor=SYSTEM, actor_kinds={SYSTEM}, note=note, at=now
    )
    request.closed_at, request.updated_at = now, now
    await tell_submitter(session, request, f"event:{event.id}", "诉求已办结")
