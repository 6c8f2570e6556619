"""All SQL of the deliberation domain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deliberation.models import Ballot, Deliberation, Registration
from services.workflow.repository import Instances

ACTIVE = ("registered", "waitlisted")


_DELIBERATIONS = Instances(Deliberation, newest_by=Deliberation.meeting_at)
get = _DELIBERATIONS.get
listing = _DELIBERATIONS.listing


async def scope_of(session: AsyncSession, tenant_id: int, deliberation_id: int) -> str | None:
    found: str | None = await session.scalar(
        select(Deliberation.scope).where(
            Deliberation.tenant_id == tenant_id, Deliberation.id == deliberation_id
        )
    )
    return found


async def registration_of(
    session: AsyncSession, tenant_id: int, deliberation_id: int, principal: str, *, lock: bool = False
) -> Registration | None:
    statement = select(Registration).where(
        Registration.tenant_id == tenant_id,
        Registration.deliberation_id == deliberation_id,
        Registration.owner_principal == principal,
    )
    if lock:
        statement = statement.with_for_update()
    found: Registration | None = await session.scalar(statement)
    return found


async def registrations_of_many(
    session: AsyncSession,
    tenant_id: int,
    deliberation_ids: Sequence[int],
    *,
    statuses: Sequence[str] = ACTIVE,
) -> list[Registration]:
    """The registrations of several deliberations in one statement, each one's in `registrations` order."""
    rows = await session.scalars(
        select(Registration)
        .where(
            Registration.tenant_id == tenant_id,
            Registration.deliberation_id.in_(list(deliberation_ids)),
            Registration.status.in_(list(statuses)),
        )
        .order_by(Registration.deliberation_id, Registration.status, Registration.queued_at, Registration.id)
    )
    return list(rows.all())


async def registrations(
    session: AsyncSession, tenant_id: int, deliberation_id: int, *, statuses: Sequence[str] = ACTIVE
) -> list[Registration]:
    rows = await session.scalars(
        select(Registration)
        .where(
            Registration.tenant_id == tenant_id,
            Registration.deliberation_id == deliberation_id,
            Registration.status.in_(list(statuses)),
        )
        .order_by(Registration.status, Registration.queued_at, Registration.id)
    )
    return list(rows.all())


async def _count_seated(session: AsyncSession, tenant_id: int, deliberation_id: int, *also: Any) -> int:
    """Registrations holding a seat (and meeting `also`)."""
    return int(
        await session.scalar(
            select(func.count()).where(
                Registration.tenant_id == tenant_id,
                Registration.deliberation_id == deliberation_id,
                Registration.status == "registered",
                *also,
            )
        )
        or 0
    )


async def seats_taken(session: AsyncSession, tenant_id: int, deliberation_id: int) -> int:
    return await _count_seated(session, tenant_id, deliberation_id)


async def first_waitlisted(
    session: AsyncSession, tenant_id: int, deliberation_id: int
) -> Registration | None:
    found: Registration | None = await session.scalar(
        select(Registration)
        .where(
            Registration.tenant_id == tenant_id,
            Registration.deliberation_id == deliberation_id,
            Registration.status == "waitlisted",
        )
        .order_by(Registration.queued_at, Registration.id)
        .limit(1)
        .with_for_update()
    )
    return found


async def ballot_of(session: AsyncSession, tenant_id: int, registration_id: int) -> Ballot | None:
    found: Ballot | None = await session.scalar(
        select(Ballot).where(Ballot.tenant_id == tenant_id, Ballot.registration_id == registration_id)
    )
    return found


async def attendee_count(session: AsyncSession, tenant_id: int, deliberation_id: int) -> int:
    return await _count_seated(session, tenant_id, deliberation_id, Registration.attended_at.is_not(None))


async def ballot_counts(session: AsyncSession, tenant_id: int, deliberation_id: int) -> dict[str, int]:
    rows = await session.execute(
        select(Ballot.choice, func.count())
        .where(Ballot.tenant_id == tenant_id, Ballot.deliberation_id == deliberation_id)
        .group_by(Ballot.choice)
    )
    return {str(choice): int(count) for choice, count in rows.all()}


async def participant_groups(session: AsyncSession, tenant_id: int, deliberation_id: int) -> list[Any]:
    """(age_band, tenure, residency, retired_cadre, voted) of every seated registrant."""
    rows = await session.execute(
        select(
            Registration.age_band,
            Registration.tenure,
            Registration.residency,
            Registration.retired_cadre,
            Ballot.id.is_not(None),
        )
        .outerjoin(
            Ballot,
            (Ballot.tenant_id == Registration.tenant_id) & (Ballot.registration_id == Registration.id),
        )
        .where(
            Registration.tenant_id == tenant_id,
            Registration.deliberation_id == deliberation_id,
            Registration.status == "registered",
        )
    )
    return list(rows.all())
