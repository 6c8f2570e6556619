"""Every statement of the deputies' records: the vocabulary, deputies, links, volunteers and coverage."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.deputies.models import (
    WARNING_LEVELS,
    Activity,
    ActivityCheckin,
    ActivityRating,
    ActivityRegistration,
    Deputy,
    DeputySkill,
    DeputyStation,
    DeputyVolunteer,
    DutySettings,
)
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


# --- duty activities ---------------------------------------------------------------------------------------


async def duty_settings(session: AsyncSession, tenant_id: int) -> DutySettings:
    """The city's duty settings; the defaults until the city saves its own."""
    found = await session.get(DutySettings, tenant_id)
    if found is None:
        return DutySettings(
            tenant_id=tenant_id,
            announce_days=3,
            max_travel_kmh=60,
            boundary_margin_meters=50,
            satisfaction_bar=80,
            warning_min_activities=1,
            warning_resolution_bar=80,
            warning_window_days=90,
            warning_levels=json.loads(WARNING_LEVELS),
            suspend_after_weeks=2,
        )
    return found


async def activity(session: AsyncSession, tenant_id: int, activity_id: int) -> Activity | None:
    return await session.scalar(
        select(Activity).where(Activity.tenant_id == tenant_id, Activity.id == activity_id)
    )


async def activities(
    session: AsyncSession,
    tenant_id: int,
    *,
    after: int | None,
    limit: int,
    deputy_id: int | None,
    state: str | None,
) -> list[Activity]:
    statement = select(Activity).where(Activity.tenant_id == tenant_id)
    if after is not None:
        statement = statement.where(Activity.id > after)
    if deputy_id is not None:
        statement = statement.where(Activity.deputy_id == deputy_id)
    if state is not None:
        statement = statement.where(Activity.state == state)
    return list(await session.scalars(statement.order_by(Activity.id).limit(limit)))


async def count_activities(
    session: AsyncSession, tenant_id: int, deputy_id: int | None, state: str | None
) -> int:
    statement = select(func.count()).select_from(Activity).where(Activity.tenant_id == tenant_id)
    if deputy_id is not None:
        statement = statement.where(Activity.deputy_id == deputy_id)
    if state is not None:
        statement = statement.where(Activity.state == state)
    return int(await session.scalar(statement) or 0)


async def checkins_of(
    session: AsyncSession, tenant_id: int, activity_ids: Sequence[int]
) -> list[ActivityCheckin]:
    if not activity_ids:
        return []
    rows = await session.scalars(
        select(ActivityCheckin)
        .where(ActivityCheckin.tenant_id == tenant_id, ActivityCheckin.activity_id.in_(activity_ids))
        .order_by(ActivityCheckin.activity_id, ActivityCheckin.checked_in_at)
    )
    return list(rows)


async def ratings_of(
    session: AsyncSession, tenant_id: int, activity_ids: Sequence[int]
) -> dict[int, tuple[int, float]]:
    """(ratings, mean score) of each activity that has ratings."""
    if not activity_ids:
        return {}
    rows = await session.execute(
        select(ActivityRating.activity_id, func.count(), func.avg(ActivityRating.score))
        .where(ActivityRating.tenant_id == tenant_id, ActivityRating.activity_id.in_(activity_ids))
        .group_by(ActivityRating.activity_id)
    )
    return {int(key): (int(n), float(mean)) for key, n, mean in rows}


async def rated_by(session: AsyncSession, tenant_id: int, activity_id: int, principal: str) -> bool:
    found = await session.scalar(
        select(ActivityRating.id).where(
            ActivityRating.tenant_id == tenant_id,
            ActivityRating.activity_id == activity_id,
            ActivityRating.owner_principal == principal,
        )
    )
    return found is not None


async def registration(
    session: AsyncSession, tenant_id: int, activity_id: int, principal: str
) -> ActivityRegistration | None:
    return await session.scalar(
        select(ActivityRegistration).where(
            ActivityRegistration.tenant_id == tenant_id,
            ActivityRegistration.activity_id == activity_id,
            ActivityRegistration.owner_principal == principal,
        )
    )


async def receptions(
    session: AsyncSession, tenant_id: int, station_id: int, since: datetime
) -> list[Activity]:
    """The reception days announced at a station from `since` on."""
    rows = await session.scalars(
        select(Activity)
        .where(
            Activity.tenant_id == tenant_id,
            Activity.station_id == station_id,
            Activity.kind == "reception",
            Activity.state == "planned",
            Activity.starts_at >= since,
        )
        .order_by(Activity.starts_at)
    )
    return list(rows)


async def residents_of(session: AsyncSession, tenant_id: int, scope: str) -> list[str]:
    """The principals holding the resident role at or below `scope`."""
    rows = await session.execute(
        text(
            "SELECT DISTINCT 'user:' || user_id FROM role_assignments "
            "WHERE tenant_id = :t AND role = 'resident' AND scope <@ text2ltree(:scope) ORDER BY 1"
        ),
        {"t": tenant_id, "scope": scope},
    )
    return [str(row[0]) for row in rows]


async def previous_checkin(
    session: AsyncSession, tenant_id: int, deputy_id: int, before: datetime
) -> ActivityCheckin | None:
    return await session.scalar(
        select(ActivityCheckin)
        .where(
            ActivityCheckin.tenant_id == tenant_id,
            ActivityCheckin.deputy_id == deputy_id,
            ActivityCheckin.checked_in_at <= before,
        )
        .order_by(ActivityCheckin.checked_in_at.desc(), ActivityCheckin.id.desc())
        .limit(1)
    )


# Metres from a point to a station's shape (0 inside): its own boundary, or else its grid cells.
STATION_OFFSET = """
WITH shape AS (
  SELECT COALESCE(
    (SELECT b.geom FROM boundaries b
      WHERE b.tenant_id = :tenant_id AND b.level = 'station' AND b.node_id = :station_id
        AND b.valid_to IS NULL),
    (SELECT ST_Union(b.geom) FROM grid_cells g
       JOIN boundaries b ON b.tenant_id = g.tenant_id AND b.level = 'grid' AND b.node_id = g.id
                        AND b.valid_to IS NULL
      WHERE g.tenant_id = :tenant_id AND g.station_id = :station_id)) AS geom
)
SELECT CASE WHEN shape.geom IS NULL THEN NULL
            ELSE ST_Distance(shape.geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography)
       END
FROM shape
"""


async def station_offset(
    session: AsyncSession, tenant_id: int, station_id: int, lon: float, lat: float
) -> float | None:
    found = await session.scalar(
        text(STATION_OFFSET), {"tenant_id": tenant_id, "station_id": station_id, "lon": lon, "lat": lat}
    )
    return float(found) if found is not None else None


async def meters_from_checkin(
    session: AsyncSession, tenant_id: int, checkin_id: int, lon: float, lat: float
) -> float:
    """Metres on the sphere from an earlier check-in to a WGS84 point."""
    found = await session.scalar(
        text(
            "SELECT ST_DistanceSphere(c.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) "
            "FROM activity_checkins c WHERE c.tenant_id = :tenant_id AND c.id = :id"
        ),
        {"tenant_id": tenant_id, "id": checkin_id, "lon": lon, "lat": lat},
    )
    return float(found or 0.0)
