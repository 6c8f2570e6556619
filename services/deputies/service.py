"""Deputy records, their links to stations and their volunteer teams: staff manage them, every change is
audited; coverage says which stations no deputy serves."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.service import append as audit
from services.deputies import repository
from services.deputies.models import LEVELS, Deputy, DeputyStation, DeputyVolunteer
from services.errors import Conflict, InvalidInput, NotFound
from services.reach import not_found
from services.workflow.machine import NotAllowed
from tenants.context import TenantContext, scope_is_within
from tenants.roles import Role

# Who keeps deputy records and links them to stations (the street working committee and above).
MANAGERS = frozenset({Role.CITY_ADMIN.value, Role.DISTRICT_STAFF.value, Role.STREET_STAFF.value})
# Who may lift a suspension of automatic routing (district staff and above).
LIFTERS = frozenset({Role.CITY_ADMIN.value, Role.DISTRICT_STAFF.value})
# "One deputy + 3-5 volunteers" (一名代表+3-5名志愿者).
TEAM_SMALLEST, TEAM_LARGEST = 3, 5
PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,30}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
PRINCIPAL = re.compile(r"^user:[1-9][0-9]{0,18}$")


@dataclass(frozen=True, slots=True)
class DeputyInput:
    name: str
    level: str
    term_start: date
    term_end: date | None = None
    constituency: str = ""
    phone: str | None = None
    email: str | None = None
    skills: tuple[str, ...] = ()
    monthly_capacity: int = 10
    principal: str | None = None
    synthetic: bool = False


def clean_text(value: str | None, limit: int, name: str, *, required: bool = False) -> str | None:
    cleaned = (value or "").strip()
    if required and not cleaned:
        raise InvalidInput(f"{name} must not be empty", field=name)
    if len(cleaned) > limit:
        raise InvalidInput(f"{name} is longer than {limit} characters", field=name)
    return cleaned or None


async def check_skills(
    session: AsyncSession, tenant_id: int, skills: tuple[str, ...], name: str
) -> list[str]:
    """The skills, each from the city's vocabulary, in the order given, without repeats."""
    known = await repository.categories_of_skills(session, tenant_id)
    unknown = [s for s in skills if s not in known]
    if unknown:
        listed = ", ".join(sorted(known)) or "none yet"
        raise InvalidInput(f"unknown skill {unknown[0]!r}; the city's skills are: {listed}", field=name)
    return list(dict.fromkeys(skills))


async def _validated(session: AsyncSession, tenant_id: int, data: DeputyInput) -> dict[str, object]:
    if data.level not in LEVELS:
        raise InvalidInput(f"level must be one of {', '.join(LEVELS)}", field="level")
    if data.term_end is not None and data.term_end < data.term_start:
        raise InvalidInput("the term cannot end before it starts", field="termEnd")
    if not 0 <= data.monthly_capacity <= 1000:
        raise InvalidInput("monthlyCapacity must be between 0 and 1000", field="monthlyCapacity")
    phone = clean_text(data.phone, 32, "phone")
    if phone is not None and not PHONE.fullmatch(phone):
        raise InvalidInput(f"{phone!r} is not a phone number", field="phone")
    email = clean_text(data.email, 254, "email")
    if email is not None and not EMAIL.fullmatch(email):
        raise InvalidInput(f"{email!r} is not an email address", field="email")
    if data.principal is not None and not PRINCIPAL.fullmatch(data.principal):
        raise InvalidInput("principal must name a user account, as user:<id>", field="principal")
    return {
        "name": clean_text(data.name, 100, "name", required=True),
        "level": data.level,
        "term_start": data.term_start,
        "term_end": data.term_end,
        "constituency": clean_text(data.constituency, 200, "constituency") or "",
        "phone": phone,
        "email": email,
        "skills": await check_skills(session, tenant_id, data.skills, "skills"),
        "monthly_capacity": data.monthly_capacity,
        "principal": data.principal,
        "synthetic": data.synthetic,
    }


def require(kinds: frozenset[str], allowed: frozenset[str], what: str) -> None:
    if not kinds & allowed:
        raise NotAllowed(f"your roles may not {what}")


def keeps(actor: TenantContext, scope: str) -> bool:
    return any(scope_is_within(scope, own) for own in actor.scopes)


async def kept(session: AsyncSession, actor: TenantContext, deputy_id: int) -> Deputy:
    """A deputy whose record the caller keeps (inside their scopes); one they may only read, or cannot
    see, is NOT_FOUND alike."""
    row = await repository.get(session, actor.tenant_id, deputy_id)
    if row is None or not keeps(actor, row.scope):
        raise not_found("deputy")
    return row


async def _record(
    session: AsyncSession, actor: TenantContext, action: str, deputy: Deputy, **payload: object
) -> None:
    await audit(
        session,
        tenant_id=actor.tenant_id,
        actor=actor.principal,
        action=action,
        subject=f"deputy:{deputy.id}",
        scope=deputy.scope,
        payload={"deputy": deputy.id, **payload},
    )


async def create(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], scope: str, data: DeputyInput
) -> Deputy:
    require(kinds, MANAGERS, "keep deputy records")
    if not keeps(actor, scope):
        raise NotFound("the node does not exist or lies outside your scope", field="nodeId")
    values = await _validated(session, actor.tenant_id, data)
    if data.principal is not None and await repository.by_principal(session, actor.tenant_id, data.principal):
        raise Conflict("that user account is already a deputy's", field="principal")
    row = Deputy(tenant_id=actor.tenant_id, scope=scope, **values)
    session.add(row)
    await session.flush()
    await _record(session, actor, "deputy.created", row, name=row.name, level=row.level, skills=row.skills)
    return row


async def update(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    deputy_id: int,
    changes: Mapping[str, object],
) -> Deputy:
    """Change the fields named in `changes` (DeputyInput's names); the others keep their value."""
    require(kinds, MANAGERS, "keep deputy records")
    row = await kept(session, actor, deputy_id)
    unknown = set(changes) - set(DeputyInput.__dataclass_fields__)
    if unknown:
        raise InvalidInput(f"no such field: {sorted(unknown)[0]}")
    values = await _validated(session, actor.tenant_id, replace(_as_input(row), **changes))  # type: ignore[arg-type]
    principal = values["principal"]
    if (
        principal is not None
        and principal != row.principal
        and await repository.by_principal(session, actor.tenant_id, str(principal)) is not None
    ):
        raise Conflict("that user account is already a deputy's", field="principal")
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    for name, value in changed.items():
        setattr(row, name, value)
    await session.flush()
    if changed:
        await _record(session, actor, "deputy.updated", row, changed=sorted(changed))
    return row


def _as_input(row: Deputy) -> DeputyInput:
    return DeputyInput(
        name=row.name,
        level=row.level,
        term_start=row.term_start,
        term_end=row.term_end,
        constituency=row.constituency,
        phone=row.phone,
        email=row.email,
        skills=tuple(row.skills),
        monthly_capacity=row.monthly_capacity,
        principal=row.principal,
        synthetic=row.synthetic,
    )


async def link(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], deputy_id: int, station_id: int
) -> Deputy:
    """Link a deputy to a station inside the deputy's own territory and the caller's scope."""
    require(kinds, MANAGERS, "link deputies to stations")
    deputy = await kept(session, actor, deputy_id)
    station = await repository.station(session, actor.tenant_id, station_id)
    if station is None or not keeps(actor, station.scope):
        raise not_found("station", "stationId")
    if station.retired_at is not None:
        raise InvalidInput("the station is retired", field="stationId")
    if not scope_is_within(station.scope, deputy.scope):
        raise InvalidInput("the station lies outside the territory that keeps this deputy", field="stationId")
    if await repository.link(session, actor.tenant_id, deputy_id, station_id) is None:
        session.add(
            DeputyStation(
                tenant_id=actor.tenant_id,
                deputy_id=deputy_id,
                station_id=station_id,
                scope=station.scope,
                linked_by=actor.principal,
            )
        )
        await session.flush()
        await _record(session, actor, "deputy.linked", deputy, station=station_id)
    return deputy


async def unlink(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], deputy_id: int, station_id: int
) -> Deputy:
    require(kinds, MANAGERS, "link deputies to stations")
    deputy = await kept(session, actor, deputy_id)
    row = await repository.link(session, actor.tenant_id, deputy_id, station_id)
    if row is None:
        raise NotFound("the deputy is not linked to that station", field="stationId")
    await session.delete(row)
    await session.flush()
    await _record(session, actor, "deputy.unlinked", deputy, station=station_id)
    return deputy


@dataclass(frozen=True, slots=True)
class VolunteerInput:
    name: str
    phone: str | None = None
    skills: tuple[str, ...] = ()


async def add_volunteer(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], deputy_id: int, data: VolunteerInput
) -> DeputyVolunteer:
    require(kinds, MANAGERS, "keep volunteer teams")
    deputy = await kept(session, actor, deputy_id)
    phone = clean_text(data.phone, 32, "phone")
    if phone is not None and not PHONE.fullmatch(phone):
        raise InvalidInput(f"{phone!r} is not a phone number", field="phone")
    row = DeputyVolunteer(
        tenant_id=actor.tenant_id,
        deputy_id=deputy.id,
        scope=deputy.scope,
        name=clean_text(data.name, 100, "name", required=True),
        phone=phone,
        skills=await check_skills(session, actor.tenant_id, data.skills, "skills"),
    )
    session.add(row)
    await session.flush()
    await _record(session, actor, "deputy.volunteer_added", deputy, volunteer=row.id)
    return row


async def remove_volunteer(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], volunteer_id: int
) -> Deputy:
    require(kinds, MANAGERS, "keep volunteer teams")
    row = await repository.volunteer(session, actor.tenant_id, volunteer_id)
    if row is None or not keeps(actor, row.scope):
        raise not_found("volunteer")
    deputy = await kept(session, actor, row.deputy_id)
    await session.delete(row)
    await session.flush()
    await _record(session, actor, "deputy.volunteer_removed", deputy, volunteer=volunteer_id)
    return deputy


async def set_routing_suspended(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], deputy_id: int, suspended: bool
) -> Deputy:
    """Suspend or resume automatic routing to a deputy by hand (lifting is for district staff)."""
    require(kinds, LIFTERS, "suspend or resume a deputy's routing")
    deputy = await kept(session, actor, deputy_id)
    if suspended == (deputy.routing_suspended_at is not None):
        return deputy
    deputy.routing_suspended_at = func.now() if suspended else None
    await session.flush()
    await session.refresh(deputy, ["routing_suspended_at"])
    await _record(
        session, actor, "deputy.routing_suspended" if suspended else "deputy.routing_resumed", deputy
    )
    return deputy
