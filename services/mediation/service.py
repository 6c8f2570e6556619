"""Three-level mediation (三级调解) as a declared workflow: "small matters in the community, big ones to the
deputy, hard ones to the departments".

A case starts at level 1 with the community mediator. Each level records sessions and ends in an agreement
(the case is resolved) or fails; failure, or the level's deadline passing (a timer row), moves the case up:
to the deputy assigned to the station (or one named), then to the departments named. Failing at level 3
closes the case unresolved. Every step, those that keep the state (a session, a mediator named) too, is
declared in MACHINE and taken through `services.workflow.advance`: checked, recorded in the history and the
audit chain. Every notice goes through the outbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Unpack

from sqlalchemy.ext.asyncio import AsyncSession

from services.deputies.routing import best_deputy
from services.errors import InvalidInput
from services.mediation import repository
from services.mediation.models import (
    CASE_TYPES,
    MediationCase,
    MediationLevel,
    MediationParty,
    MediationSession,
)
from services.reach import Target, not_found, reaches
from services.requests.calendar import load_calendar
from services.workflow.machine import SYSTEM, IllegalTransition, StateMachine, stay, step
from services.workflow.rows import cancel_for, notify_about, same_place, schedule_for
from services.workflow.service import StepDetails, advance
from tenants.context import PRINCIPAL_PATTERN, TenantContext
from tenants.roles import Role

STAFF = (Role.CITY_ADMIN, Role.DISTRICT_STAFF, Role.STREET_STAFF, Role.STATION_LIAISON)
DEPUTY = Role.DEPUTY
# The request category whose skills a dispute of each type calls for (the deputies' skills vocabulary).
CASE_CATEGORIES = {
    "neighbours": "disputes",
    "property_management": "property_housing",
    "family": "disputes",
    "labour": "employment",
    "consumer": "disputes",
    "other": "disputes",
}
ACTIVE = ("level1", "level2", "level3")

# The whole workflow: states, steps and who may take each one.
MACHINE = StateMachine(
    "mediation",
    (*ACTIVE, "resolved", "unresolved", "withdrawn"),
    (
        step("open", [], "level1", STAFF),
        stay("record_session", ACTIVE, [*STAFF, DEPUTY]),
        stay("assign_mediator", ["level1", "level2"], STAFF),
        step("escalate_to_deputy", ["level1"], "level2", [*STAFF, SYSTEM]),
        step("escalate_to_departments", ["level2"], "level3", [*STAFF, DEPUTY, SYSTEM]),
        step("settle", ACTIVE, "resolved", [*STAFF, DEPUTY]),
        step("close_unresolved", ["level3"], "unresolved", [*STAFF, SYSTEM]),
        step("withdraw", ACTIVE, "withdrawn", STAFF, note=True),
    ),
)
# Failing at a level takes the case along this step.
ON_FAILURE = {1: "escalate_to_deputy", 2: "escalate_to_departments", 3: "close_unresolved"}

DEADLINE_TIMER = "mediation.level_deadline"
DEFAULT_DEADLINES: dict[str, dict[str, int]] = {
    "1": {"working_days": 10},
    "2": {"working_days": 10},
    "3": {"working_days": 15},
}
PARTY_ROLES = ("applicant", "respondent", "other")


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    role: str
    principal: str | None = None


@dataclass(frozen=True, slots=True)
class Deadline:
    level: int
    hours: int | None = None
    working_days: int | None = None


@dataclass(frozen=True, slots=True)
class Opening:
    scope: str
    case_type: str
    description: str
    parties: Sequence[Party]
    request_id: int | None = None
    mediator: str | None = None
    # Named now for level 3, or when the case gets there.
    departments: Sequence[str] = ()
    deadlines: Sequence[Deadline] = ()


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _check_principal(value: str | None, field_name: str) -> None:
    if value is not None and not PRINCIPAL_PATTERN.fullmatch(value):
        raise InvalidInput(f"{value!r} is not an account such as user:42", field=field_name)


def _clean_names(values: Sequence[str], field_name: str, *, limit: int = 20) -> list[str]:
    cleaned = [v.strip() for v in values if v.strip()]
    if len(cleaned) > limit or any(len(v) > 200 for v in cleaned):
        raise InvalidInput(f"at most {limit} names of up to 200 characters", field=field_name)
    return list(dict.fromkeys(cleaned))


def _deadlines(given: Sequence[Deadline]) -> dict[str, dict[str, int]]:
    chosen = dict(DEFAULT_DEADLINES)
    for deadline in given:
        if deadline.level not in (1, 2, 3):
            raise InvalidInput("a deadline is for level 1, 2 or 3", field="deadlines")
        if (deadline.hours is None) == (deadline.working_days is None):
            raise InvalidInput("give a level's deadline in hours or in working days", field="deadlines")
        if deadline.hours is not None:
            if not 1 <= deadline.hours <= 24 * 365:
                raise InvalidInput("a deadline in hours is between 1 and 8760", field="deadlines")
            chosen[str(deadline.level)] = {"hours": deadline.hours}
        elif deadline.working_days is not None:
            if not 1 <= deadline.working_days <= 250:
                raise InvalidInput("a deadline in working days is between 1 and 250", field="deadlines")
            chosen[str(deadline.level)] = {"working_days": deadline.working_days}
    return chosen


async def _due_at(session: AsyncSession, case: MediationCase, level: int, start: datetime) -> datetime:
    rule = case.deadlines.get(str(level)) or DEFAULT_DEADLINES[str(level)]
    if "hours" in rule:
        return start + timedelta(hours=int(rule["hours"]))
    timezone, _ = await repository.settings_of(session, case.tenant_id)
    calendar = await load_calendar(session, case.tenant_id, timezone)
    return calendar.deadline(start, int(rule["working_days"]))


async def _step(
    session: AsyncSession,
    case: MediationCase,
    name: str,
    actor: str,
    kinds: Iterable[str],
    *,
    effects: Callable[[], Awaitable[dict[str, Any] | None]] | None = None,
    **details: Unpack[StepDetails],
) -> None:
    """Take a declared step of the case (`services.workflow.advance`), recording the level it was taken
    at; `effects` are its other changes, made once the step is allowed."""
    details["payload"] = {"level": case.level, **(details.get("payload") or {})}
    await advance(session, MACHINE, case, name, actor=actor, actor_kinds=kinds, effects=effects, **details)


async def _tell_parties(session: AsyncSession, case: MediationCase, event: str, title: str) -> None:
    """A notice to the staff of the case's station, and one to each party with an account."""
    payload = {"case_id": case.id, "level": case.level, "state": case.state}
    source = f"mediation:{case.id}:{event}"
    readers: list[tuple[str | None, str]] = [(None, source)]
    for party in await repository.parties(session, case.tenant_id, [case.id]):
        if party.owner_principal:
            readers.append((party.owner_principal, f"{source}:party:{party.id}"))
    for recipient, reader_source in readers:
        await notify_about(
            session,
            case,
            kind=f"mediation.{event}",
            title=title,
            recipient=recipient,
            source=reader_source,
            payload=payload,
        )


async def _tell_mediator(session: AsyncSession, case: MediationCase, mediator: str, **extra: object) -> None:
    await notify_about(
        session,
        case,
        kind="mediation.assigned",
        title=f"调解案件 {case.id} 由您在第 {case.level} 级调解",
        recipient=mediator,
        source=f"mediation:{case.id}:level:{case.level}:mediator:{mediator}",
        payload={"case_id": case.id, "level": case.level, **extra},
    )


async def _start_level(
    session: AsyncSession,
    case: MediationCase,
    level: int,
    *,
    mediator: str | None,
    departments: Sequence[str],
    now: datetime,
) -> MediationLevel:
    due_at = await _due_at(session, case, level, now)
    row = MediationLevel(
        **same_place(case),
        case_id=case.id,
        level=level,
        mediator=mediator,
        departments=list(departments),
        started_at=now,
        due_at=due_at,
    )
    session.add(row)
    case.level, case.mediator, case.level_due_at = level, mediator, due_at
    if level == 3:
        case.departments = list(departments)
    key = f"mediation:{case.id}:level:{level}"
    await schedule_for(session, case, kind=DEADLINE_TIMER, key=key, due_at=due_at, payload={"level": level})
    if mediator is not None:
        await _tell_mediator(session, case, mediator, due_at=due_at.isoformat())
    return row


async def _load(session: AsyncSession, tenant_id: int, case_id: int) -> MediationCase:
    case = await repository.get(session, tenant_id, case_id, lock=True)
    if case is None:
        raise not_found(f"mediation case {case_id}")
    return case


async def _running_level(session: AsyncSession, case: MediationCase) -> MediationLevel:
    row = await repository.current_level(session, case.tenant_id, case.id, case.level)
    if row is None or row.outcome is not None:
        raise IllegalTransition(f"level {case.level} of case {case.id} is not running")
    return row


def _check_opening(opening: Opening) -> None:
    if opening.case_type not in CASE_TYPES:
        raise InvalidInput(f"the type is one of {', '.join(CASE_TYPES)}", field="caseType")
    if not opening.description.strip() or len(opening.description) > 4000:
        raise InvalidInput("the description must be 1 to 4000 characters", field="description")
    if not 2 <= len(opening.parties) <= 20:
        raise InvalidInput("a dispute has 2 to 20 parties", field="parties")
    for party in opening.parties:
        if not party.name.strip() or len(party.name) > 100:
            raise InvalidInput("a party's name must be 1 to 100 characters", field="parties")
        if party.role not in PARTY_ROLES:
            raise InvalidInput(f"a party's role is one of {', '.join(PARTY_ROLES)}", field="parties")
        _check_principal(party.principal, "parties")
    _check_principal(opening.mediator, "mediator")


async def open_case(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    opening: Opening,
    *,
    now: datetime | None = None,
) -> MediationCase:
    moment = _now(now)
    labels = opening.scope.split(".")
    if len(labels) != 4 or labels[3][0] != "t":
        raise InvalidInput("a mediation case is opened at a station", field="stationId")
    if not reaches(actor, Target(actor.tenant_id, opening.scope)):
        raise not_found(f"station {opening.scope}", field="stationId")
    _check_opening(opening)
    if opening.request_id is not None and not await repository.request_exists(
        session, actor.tenant_id, opening.request_id
    ):
        raise not_found(f"request {opening.request_id}", field="requestId")
    applicant = next((p.principal for p in opening.parties if p.role == "applicant" and p.principal), None)
    case = MediationCase(
        tenant_id=actor.tenant_id,
        scope=opening.scope,
        case_type=opening.case_type,
        description=opening.description.strip(),
        request_id=opening.request_id,
        owner_principal=applicant,
        level=1,
        departments=_clean_names(opening.departments, "departments"),
        deadlines=_deadlines(opening.deadlines),
        created_by=actor.principal,
        opened_at=moment,
    )

    async def start() -> None:
        session.add_all(
            MediationParty(
                **same_place(case),
                case_id=case.id,
                name=p.name.strip(),
                role=p.role,
                owner_principal=p.principal,
            )
            for p in opening.parties
        )
        mediator = opening.mediator or actor.principal
        await _start_level(session, case, 1, mediator=mediator, departments=(), now=moment)
        await session.flush()

    payload = {"type": case.case_type}
    await _step(session, case, "open", actor.principal, kinds, payload=payload, effects=start, at=moment)
    await _tell_parties(session, case, "opened", f"调解案件 {case.id} 已受理（社区调解）")
    return case


async def record_session(
    session: AsyncSession,
    tenant_id: int,
    actor: str,
    kinds: Iterable[str],
    case_id: int,
    *,
    held_on: date,
    participants: Sequence[str],
    notes: str,
) -> MediationSession:
    case = await _load(session, tenant_id, case_id)
    sitting = MediationSession(
        **same_place(case),
        case_id=case.id,
        level=case.level,
        held_on=held_on,
        notes=notes,
        recorded_by=actor,
    )

    async def sit() -> dict[str, Any]:
        if len(notes) > 10_000:
            raise InvalidInput("notes are at most 10000 characters", field="notes")
        sitting.participants = _clean_names(participants, "participants", limit=50)
        session.add(sitting)
        await session.flush()
        return {"session_id": sitting.id, "held_on": held_on.isoformat()}

    await _step(session, case, "record_session", actor, kinds, public=False, effects=sit, at=_now(None))
    return sitting


async def assign_mediator(
    session: AsyncSession,
    tenant_id: int,
    actor: str,
    kinds: Iterable[str],
    case_id: int,
    mediator: str,
    *,
    now: datetime | None = None,
) -> MediationCase:
    case = await _load(session, tenant_id, case_id)

    async def name() -> None:
        _check_principal(mediator, "mediator")
        level = await _running_level(session, case)
        level.mediator = case.mediator = mediator
        await _tell_mediator(session, case, mediator)

    payload = {"mediator": mediator}
    await _step(session, case, "assign_mediator", actor, kinds, payload=payload, effects=name, at=_now(now))
    return case


async def record_outcome(
    session: AsyncSession,
    tenant_id: int,
    actor: str,
    kinds: Iterable[str],
    case_id: int,
    *,
    agreed: bool,
    agreement: str | None = None,
    note: str | None = None,
    deputy: str | None = None,
    departments: Sequence[str] = (),
    now: datetime | None = None,
) -> MediationCase:
    """The outcome of the running level: an agreement resolves the case, a failure moves it up."""
    moment = _now(now)
    case = await _load(session, tenant_id, case_id)
    _check_principal(deputy, "deputy")
    if not agreed:
        await _escalate(
            session,
            case,
            actor,
            kinds,
            cause="failed",
            note=note,
            deputy=deputy,
            departments=departments,
            now=moment,
        )
        return case

    async def settle() -> None:
        text = (agreement or "").strip()
        if not text or len(text) > 10_000:
            raise InvalidInput("an agreement needs its text (up to 10000 characters)", field="agreement")
        level = await _running_level(session, case)
        level.outcome, level.agreement, level.ended_at = "agreement", text, moment
        case.agreement, case.closed_at = text, moment
        await cancel_for(session, case, [DEADLINE_TIMER], moment)

    await _step(session, case, "settle", actor, kinds, note=note, effects=settle, at=moment)
    await _tell_parties(session, case, "resolved", f"调解案件 {case.id} 达成协议（第 {case.level} 级）")
    return case


async def level_timed_out(
    session: AsyncSession, tenant_id: int, case_id: int, level: int, now: datetime
) -> MediationCase:
    """The deadline of `level` passed with no outcome: the case moves up as if that level had failed."""
    case = await _load(session, tenant_id, case_id)
    if case.state != f"level{level}":
        raise IllegalTransition(f"case {case_id} has left level {level}")
    await _escalate(session, case, "system:timers", [SYSTEM], cause="timeout", now=now)
    return case


async def _escalate(
    session: AsyncSession,
    case: MediationCase,
    actor: str,
    kinds: Iterable[str],
    *,
    cause: str,
    note: str | None = None,
    deputy: str | None = None,
    departments: Sequence[str] = (),
    now: datetime,
) -> None:
    """The running level ends in failure or a timeout (`cause`): the case moves up one level, or at the
    last one closes unresolved."""

    async def move_up() -> dict[str, Any]:
        running = await _running_level(session, case)
        running.outcome, running.ended_at = cause, now
        if cause == "failed":
            await cancel_for(session, case, [DEADLINE_TIMER], now)
        if running.level == 1:
            # The one named, else the deputy linked to the station whose skills match the dispute best.
            match = await best_deputy(session, case.tenant_id, case.scope, CASE_CATEGORIES[case.case_type])
            chosen = deputy or (match.principal if match is not None else None)
            await _start_level(session, case, 2, mediator=chosen, departments=(), now=now)
            missing = "" if chosen else "；站点未配置代表，请指定"
            await _tell_parties(session, case, "escalated:2", f"调解案件 {case.id} 转由人大代表调解{missing}")
            return {"cause": cause, "mediator": chosen}
        if running.level == 2:
            named = _clean_names(departments, "departments") or list(case.departments)
            if not named:
                _, default_department = await repository.settings_of(session, case.tenant_id)
                named = [default_department]
            await _start_level(session, case, 3, mediator=None, departments=named, now=now)
            await _tell_parties(
                session, case, "escalated:3", f"调解案件 {case.id} 转由部门联动调解：{'、'.join(named)}"
            )
            return {"cause": cause, "departments": named}
        case.closed_at = now
        await _tell_parties(
            session, case, "unresolved", f"调解案件 {case.id} 三级调解未达成协议，建议依法仲裁或诉讼"
        )
        return {"cause": cause}

    await _step(session, case, ON_FAILURE[case.level], actor, kinds, note=note, effects=move_up, at=now)


async def withdraw(
    session: AsyncSession,
    tenant_id: int,
    actor: str,
    kinds: Iterable[str],
    case_id: int,
    reason: str,
    *,
    now: datetime | None = None,
) -> MediationCase:
    moment = _now(now)
    case = await _load(session, tenant_id, case_id)

    async def close() -> None:
        level = await _running_level(session, case)
        level.ended_at = case.closed_at = moment
        await cancel_for(session, case, [DEADLINE_TIMER], moment)

    await _step(session, case, "withdraw", actor, kinds, note=reason, effects=close, at=moment)
    await _tell_parties(session, case, "withdrawn", f"调解案件 {case.id} 已撤回")
    return case
