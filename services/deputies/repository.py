"""Every statement of the deputies' records: the vocabulary, deputies, links, volunteers and coverage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.deputies.models import Deputy, DeputySkill, DeputyStation, DeputyVolunteer
from tenants.models import Station


async def skills(session: AsyncSession, tenant_id: int) -> list[DeputySkill]:
    rows = await session.scalars(
        select(DeputySkill).where(DeputySkill.tenant_id == tenant_id).order_by(DeputySkill.code)
    )
    return list(rows)


async def skill(session: AsyncSession, tenant_id: int, code: str) -> DeputySkill | None:
    return await session.scalar(
        select(DeputySkill).where(DeputySkill.tenant_id == tenant_id, DeputySkill.code == code)
    )


async def get(session: AsyncSession, tenant_id: int, deputy_id: int) -> Deputy | None:
    return await session.scalar(select(Deputy).where(Deputy.tenant_id == tenant_id, Deputy.id == deputy_id))


async def by_ids(session: AsyncSession, tenant_id: int, ids: Sequence[int]) -> dict[int, Deputy]:
    if not ids:
        return {}
    rows = await session.scalars(select(Deputy).where(Deputy.tenant_id == tenant_id, Deputy.id.in_(ids)))
    return {row.id: row for row in rows}


async def by_principal(session: AsyncSession, tenant_id: int, principal: str) -> Deputy | None:
    return await session.scalar(
        select(Deputy).where(Deputy.tenant_id == tenant_id, Deputy.principal == principal).limit(1)
    )


async def listing(
    session: AsyncSession, tenant_id: int, *, after: int | None, limit: int, skill: str | None
) -> list[Deputy]:
    """Deputies the caller may read, by id, `limit` of them after `after`."""
    statement = select(Deputy).where(Deputy.tenant_id == tenant_id)
    if after is not None:
        statement = statement.where(Deputy.id > after)
    if skill is not None:
        statement = statement.where(Deputy.skills.any(skill))  # type: ignore[arg-type]
    return list(await session.scalars(statement.order_by(Deputy.id).limit(limit)))


async def count(session: AsyncSession, tenant_id: int, skill: str | None) -> int:
    statement = select(func.count()).select_from(Deputy).where(Deputy.tenant_id == tenant_id)
    if skill is not None:
        statement = statement.where(Deputy.skills.any(skill))  # type: ignore[arg-type]
    return int(await session.scalar(statement) or 0)


async def link(
    session: AsyncSession, tenant_id: int, deputy_id: int, station_id: int
) -> DeputyStation | None:
    return await session.scalar(
        select(DeputyStation).where(
            DeputyStation.tenant_id == tenant_id,
            DeputyStation.deputy_id == deputy_id,
            DeputyStation.station_id == station_id,
        )
    )


async def links_of(session: AsyncSession, tenant_id: int, deputy_ids: Sequence[int]) -> dict[int, list[int]]:
    """The stations (ids) each deputy is linked to, as far as the caller may see."""
    found: dict[int, list[int]] = {key: [] for key in deputy_ids}
    if not deputy_ids:
        return found
    rows = await session.execute(
        select(DeputyStation.deputy_id, DeputyStation.station_id)
        .where(DeputyStation.tenant_id == tenant_id, DeputyStation.deputy_id.in_(deputy_ids))
        .order_by(DeputyStation.deputy_id, DeputyStation.station_id)
    )
    for deputy_id, station_id in rows:
        found[deputy_id].append(station_id)
    return found


async def volunteers_of(
    session: AsyncSession, tenant_id: int, deputy_ids: Sequence[int]
) -> dict[int, list[DeputyVolunteer]]:
    found: dict[int, list[DeputyVolunteer]] = {key: [] for key in deputy_ids}
    if not deputy_ids:
        return found
    rows = await session.scalars(
        select(DeputyVolunteer)
        .where(DeputyVolunteer.tenant_id == tenant_id, DeputyVolunteer.deputy_id.in_(deputy_ids))
        .order_by(DeputyVolunteer.deputy_id, DeputyVolunteer.id)
    )
    for row in rows:
        found[row.deputy_id].append(row)
    return found


async def volunteer(session: AsyncSession, tenant_id: int, volunteer_id: int) -> DeputyVolunteer | None:
    return await session.scalar(
        select(DeputyVolunteer).where(
            DeputyVolunteer.tenant_id == tenant_id, DeputyVolunteer.id == volunteer_id
        )
    )


async def station(session: AsyncSession, tenant_id: int, station_id: int) -> Station | None:
    return await session.scalar(
        select(Station).where(Station.tenant_id == tenant_id, Station.id == station_id)
    )


@dataclass(frozen=True, slots=True)
class StationCoverage:
    station_id: int
    code: str
    name: str
    scope: str
    deputies: int


COVERAGE = """
SELECT s.id, s.code, s.name, s.scope::text AS scope, count(l.id) AS deputies
FROM stations s
LEFT JOIN deputy_stations l ON l.tenant_id = s.tenant_id AND l.station_id = s.id
WHERE s.tenant_id = :tenant_id AND s.scope <@ text2ltree(:scope) AND s.retired_at IS NULL
GROUP BY s.id, s.code, s.name, s.scope
ORDER BY s.scope
"""


async def coverage(session: AsyncSession, tenant_id: int, scope: str) -> list[StationCoverage]:
    """Every active station inside `scope` with the number of deputies linked to it."""
    rows = await session.execute(text(COVERAGE), {"tenant_id": tenant_id, "scope": scope})
    return [StationCoverage(int(r[0]), r[1], r[2], r[3], int(r[4])) for r in rows]


TEAM_SIZES = """
SELECT d.id, count(v.id) AS volunteers
FROM deputies d
LEFT JOIN deputy_volunteers v ON v.tenant_id = d.tenant_id AND v.deputy_id = d.id
WHERE d.tenant_id = :tenant_id AND d.scope <@ text2ltree(:scope)
GROUP BY d.id
HAVING count(v.id) NOT BETWEEN :smallest AND :largest
ORDER BY d.id
"""


async def teams_out_of_size(
    session: AsyncSession, tenant_id: int, scope: str, smallest: int, largest: int
) -> list[tuple[int, int]]:
    """(deputy id, volunteers) for each deputy kept inside `scope` whose team is not smallest..largest."""
    rows = await session.execute(
        text(TEAM_SIZES), {"tenant_id": tenant_id, "scope": scope, "smallest": smallest, "largest": largest}
    )
    return [(int(r[0]), int(r[1])) for r in rows]


@dataclass(frozen=True, slots=True)
class RoutingCandidate:
    deputy_id: int
    principal: str
    skills: list[str]
    monthly_capacity: int
    open_requests: int
    satisfaction: float | None


# The deputies linked to a station who can take a request now: signed up (a principal), not suspended,
# with how many open requests each holds and the mean rating of what they resolved.
ROUTING_CANDIDATES = """
SELECT d.id, d.principal, d.skills, d.monthly_capacity,
       (SELECT count(*) FROM requests r
         WHERE r.tenant_id = d.tenant_id AND r.assignee = d.principal
           AND r.state = ANY(:open_states)) AS load,
       (SELECT avg(r.rating) FROM requests r
         WHERE r.tenant_id = d.tenant_id AND r.assignee = d.principal AND r.rating IS NOT NULL)
         AS satisfaction
FROM deputy_stations l
JOIN deputies d ON d.tenant_id = l.tenant_id AND d.id = l.deputy_id
WHERE l.tenant_id = :tenant_id AND l.scope @> text2ltree(:scope)
  AND d.principal IS NOT NULL AND d.routing_suspended_at IS NULL
ORDER BY d.id
"""


async def routing_candidates(
    session: AsyncSession, tenant_id: int, scope: str, open_states: Sequence[str]
) -> list[RoutingCandidate]:
    """The deputies linked to the station at or above `scope` who can take a request now."""
    rows = await session.execute(
        text(ROUTING_CANDIDATES),
        {"tenant_id": tenant_id, "scope": scope, "open_states": list(open_states)},
    )
    return [
        RoutingCandidate(
            int(r[0]), str(r[1]), list(r[2]), int(r[3]), int(r[4]), float(r[5]) if r[5] is not None else None
        )
        for r in rows
    ]


async def categories_of_skills(session: AsyncSession, tenant_id: int) -> dict[str, frozenset[str]]:
    """Each skill of the city and the request categories it serves."""
    return {row.code: frozenset(row.categories) for row in await skills(session, tenant_id)}
