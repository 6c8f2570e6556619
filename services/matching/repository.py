"""Every statement of the double list: demands, resources, their stations, matches and the candidates a
batch run weighs (with PostGIS distances from each demand to the stations a resource serves)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.matching.models import Demand, Match, MatchRun, Resource, ResourceStation
from services.requests.models import RequestCategory


async def category_by_code(session: AsyncSession, tenant_id: int, code: str) -> RequestCategory | None:
    return await session.scalar(
        select(RequestCategory).where(RequestCategory.tenant_id == tenant_id, RequestCategory.code == code)
    )


async def categories(session: AsyncSession, tenant_id: int) -> dict[str, RequestCategory]:
    rows = await session.scalars(select(RequestCategory).where(RequestCategory.tenant_id == tenant_id))
    return {row.code: row for row in rows}


async def demand(session: AsyncSession, tenant_id: int, demand_id: int) -> Demand | None:
    return await session.scalar(select(Demand).where(Demand.tenant_id == tenant_id, Demand.id == demand_id))


async def demand_of_request(session: AsyncSession, tenant_id: int, request_id: int) -> Demand | None:
    return await session.scalar(
        select(Demand).where(Demand.tenant_id == tenant_id, Demand.request_id == request_id)
    )


async def demands(
    session: AsyncSession, tenant_id: int, *, after: int | None, limit: int, state: str | None
) -> list[Demand]:
    statement = select(Demand).where(Demand.tenant_id == tenant_id)
    if after is not None:
        statement = statement.where(Demand.id > after)
    if state is not None:
        statement = statement.where(Demand.state == state)
    return list(await session.scalars(statement.order_by(Demand.id).limit(limit)))


async def count_demands(session: AsyncSession, tenant_id: int, state: str | None) -> int:
    statement = select(func.count()).select_from(Demand).where(Demand.tenant_id == tenant_id)
    if state is not None:
        statement = statement.where(Demand.state == state)
    return int(await session.scalar(statement) or 0)


async def resource(session: AsyncSession, tenant_id: int, resource_id: int) -> Resource | None:
    return await session.scalar(
        select(Resource).where(Resource.tenant_id == tenant_id, Resource.id == resource_id)
    )


async def resources(
    session: AsyncSession, tenant_id: int, *, after: int | None, limit: int
) -> list[Resource]:
    statement = select(Resource).where(Resource.tenant_id == tenant_id, Resource.retired_at.is_(None))
    if after is not None:
        statement = statement.where(Resource.id > after)
    return list(await session.scalars(statement.order_by(Resource.id).limit(limit)))


async def count_resources(session: AsyncSession, tenant_id: int) -> int:
    statement = (
        select(func.count())
        .select_from(Resource)
        .where(Resource.tenant_id == tenant_id, Resource.retired_at.is_(None))
    )
    return int(await session.scalar(statement) or 0)


async def resource_station(
    session: AsyncSession, tenant_id: int, resource_id: int, station_id: int
) -> ResourceStation | None:
    return await session.scalar(
        select(ResourceStation).where(
            ResourceStation.tenant_id == tenant_id,
            ResourceStation.resource_id == resource_id,
            ResourceStation.station_id == station_id,
        )
    )


async def stations_of(
    session: AsyncSession, tenant_id: int, resource_ids: Sequence[int]
) -> list[tuple[int, int]]:
    """(resource id, station id) for each station the resources serve, as far as the caller may see."""
    if not resource_ids:
        return []
    rows = await session.execute(
        select(ResourceStation.resource_id, ResourceStation.station_id)
        .where(ResourceStation.tenant_id == tenant_id, ResourceStation.resource_id.in_(resource_ids))
        .order_by(ResourceStation.resource_id, ResourceStation.station_id)
    )
    return [(int(r), int(s)) for r, s in rows]


async def match(session: AsyncSession, tenant_id: int, match_id: int) -> Match | None:
    return await session.scalar(select(Match).where(Match.tenant_id == tenant_id, Match.id == match_id))


async def matches(
    session: AsyncSession,
    tenant_id: int,
    *,
    after: int | None,
    limit: int,
    state: str | None,
    owner: str | None,
) -> list[Match]:
    statement = select(Match).where(Match.tenant_id == tenant_id)
    if after is not None:
        statement = statement.where(Match.id > after)
    if state is not None:
        statement = statement.where(Match.state == state)
    if owner is not None:
        statement = statement.where(Match.owner_principal == owner)
    return list(await session.scalars(statement.order_by(Match.id).limit(limit)))


async def count_matches(session: AsyncSession, tenant_id: int, state: str | None, owner: str | None) -> int:
    statement = select(func.count()).select_from(Match).where(Match.tenant_id == tenant_id)
    if state is not None:
        statement = statement.where(Match.state == state)
    if owner is not None:
        statement = statement.where(Match.owner_principal == owner)
    return int(await session.scalar(statement) or 0)


async def matches_of_demands(session: AsyncSession, tenant_id: int, demand_ids: Sequence[int]) -> list[Match]:
    if not demand_ids:
        return []
    rows = await session.scalars(
        select(Match)
        .where(Match.tenant_id == tenant_id, Match.demand_id.in_(demand_ids))
        .order_by(Match.demand_id, Match.id)
    )
    return list(rows)


async def matches_of_run(session: AsyncSession, tenant_id: int, run_id: int) -> list[Match]:
    rows = await session.scalars(
        select(Match).where(Match.tenant_id == tenant_id, Match.run_id == run_id).order_by(Match.id)
    )
    return list(rows)


async def runs(session: AsyncSession, tenant_id: int, limit: int) -> list[MatchRun]:
    rows = await session.scalars(
        select(MatchRun).where(MatchRun.tenant_id == tenant_id).order_by(MatchRun.id.desc()).limit(limit)
    )
    return list(rows)


# Where a station is: a point on its own boundary, or else the centre of its grid cells.
STATION_POINTS = """
SELECT s.id, COALESCE(
  (SELECT ST_PointOnSurface(b.geom) FROM boundaries b
    WHERE b.tenant_id = s.tenant_id AND b.level = 'station' AND b.node_id = s.id AND b.valid_to IS NULL),
  (SELECT ST_Centroid(ST_Collect(b.geom)) FROM grid_cells g
     JOIN boundaries b ON b.tenant_id = g.tenant_id AND b.level = 'grid' AND b.node_id = g.id
                      AND b.valid_to IS NULL
    WHERE g.tenant_id = s.tenant_id AND g.station_id = s.id)) AS geom
FROM stations s
WHERE s.tenant_id = :tenant_id
"""


DISTANCE_TO_STATION = f"""
SELECT ST_Distance(p.geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography)
FROM ({STATION_POINTS} AND s.id = :station_id) p
"""  # noqa: S608 (fixed SQL)


async def distance_to_station(
    session: AsyncSession, tenant_id: int, station_id: int, lon: float, lat: float
) -> float | None:
    """Metres from a WGS84 point to where the station is, when the station has a shape."""
    found = await session.scalar(
        text(DISTANCE_TO_STATION),
        {"tenant_id": tenant_id, "station_id": station_id, "lon": lon, "lat": lat},
    )
    return float(found) if found is not None else None


@dataclass(frozen=True, slots=True)
class CandidatePair:
    demand_id: int
    demand_scope: str
    resource_id: int
    distance_meters: float | None  # None: the resource serves no station the caller sees, or no shapes


# Each open demand of the scope with each resource that may take it: kept at or above the demand's
# station, not retired, with a skill that serves the demand's category, and that has not declined it;
# the distance is from the demand (its point, else its station) to the nearest station the resource
# serves (0 for its own station; on the sphere, which is within 0.5% of the spheroid at these ranges).
# Resources are found through each ancestor of the demand's station (an equality the planner can hash;
# a station lies at depth 4, the VALUES leave room), compared as text, which hashes where ltree may not.
CANDIDATES = f"""
WITH points AS MATERIALIZED ({STATION_POINTS}),
served_by AS (
  SELECT c.id AS category_id, array_agg(k.code) AS skills
  FROM request_categories c
  JOIN deputy_skills k ON k.tenant_id = c.tenant_id AND c.code = ANY(k.categories)
  WHERE c.tenant_id = :tenant_id
  GROUP BY c.id
),
offers AS (
  SELECT r.id AS resource_id, r.scope, f.category_id
  FROM resources r JOIN served_by f ON r.skills && f.skills
  WHERE r.tenant_id = :tenant_id AND r.retired_at IS NULL AND r.monthly_capacity > 0
),
wanted AS (
  SELECT d.id, d.scope, d.station_id, d.category_id, COALESCE(d.geom, p.geom) AS geom,
         subpath(d.scope, 0, depth.n) AS ancestor
  FROM demands d
  LEFT JOIN points p ON p.id = d.station_id
  JOIN (VALUES (1), (2), (3), (4), (5), (6)) AS depth (n) ON depth.n <= nlevel(d.scope)
  WHERE d.tenant_id = :tenant_id AND d.scope <@ text2ltree(:scope) AND d.state = 'open'
),
pairs AS (
  SELECT w.id AS demand_id, w.scope, w.station_id, o.resource_id, w.geom
  FROM wanted w
  JOIN offers o ON o.category_id = w.category_id AND o.scope::text = w.ancestor::text
  WHERE NOT EXISTS (
    SELECT 1 FROM matches m
    WHERE m.tenant_id = :tenant_id AND m.demand_id = w.id AND m.resource_id = o.resource_id
      AND m.state = 'declined'
  )
)
SELECT x.demand_id, x.scope::text, x.resource_id,
       min(CASE WHEN rs.station_id = x.station_id THEN 0 ELSE ST_DistanceSphere(x.geom, sp.geom) END)
FROM pairs x
LEFT JOIN resource_stations rs ON rs.tenant_id = :tenant_id AND rs.resource_id = x.resource_id
LEFT JOIN points sp ON sp.id = rs.station_id
GROUP BY x.demand_id, x.scope, x.resource_id
ORDER BY x.demand_id, x.resource_id
"""  # noqa: S608 (fixed SQL)


async def candidate_pairs(session: AsyncSession, tenant_id: int, scope: str) -> list[CandidatePair]:
    rows = await session.execute(text(CANDIDATES), {"tenant_id": tenant_id, "scope": scope})
    return [
        CandidatePair(int(d), str(scope), int(r), float(m) if m is not None else None)
        for d, scope, r, m in rows
    ]


@dataclass(frozen=True, slots=True)
class ResourceRecord:
    owner: str | None
    capacity: int
    load: int  # matches this month, in every station it serves
    satisfaction: float | None  # mean rating of its closed matches


async def resource_records(
    session: AsyncSession, tenant_id: int, resource_ids: Sequence[int], month_start: datetime
) -> dict[int, ResourceRecord]:
    if not resource_ids:
        return {}
    kept = await session.execute(
        select(Resource.id, Resource.monthly_capacity, Resource.owner_principal).where(
            Resource.tenant_id == tenant_id, Resource.id.in_(resource_ids)
        )
    )
    rows = await session.execute(
        text("SELECT resource_id, load, satisfaction FROM liaison_resource_records(:since, :ids)"),
        {"since": month_start, "ids": list(resource_ids)},
    )
    records = {int(r): (int(load), s) for r, load, s in rows}
    found: dict[int, ResourceRecord] = {}
    for key, capacity, owner in kept:
        load, satisfaction = records.get(key, (0, None))
        found[key] = ResourceRecord(
            owner, int(capacity), load, float(satisfaction) if satisfaction is not None else None
        )
    return found


@dataclass(frozen=True, slots=True)
class Accuracy:
    proposed: int
    accepted: int
    satisfied: int


# Matches proposed in the period inside the scope; satisfied = closed with a rating at or above the bar.
ACCURACY = """
SELECT count(*),
       count(*) FILTER (WHERE m.state IN ('accepted', 'closed')),
       count(*) FILTER (WHERE m.state = 'closed' AND m.rating >= :satisfied_at)
FROM matches m
WHERE m.tenant_id = :tenant_id AND m.scope <@ text2ltree(:scope)
  AND m.created_at >= :since AND m.created_at < :until
"""


async def accuracy(
    session: AsyncSession, tenant_id: int, scope: str, since: datetime, until: datetime, satisfied_at: int
) -> Accuracy:
    row = (
        await session.execute(
            text(ACCURACY),
            {
                "tenant_id": tenant_id,
                "scope": scope,
                "since": since,
                "until": until,
                "satisfied_at": satisfied_at,
            },
        )
    ).one()
    return Accuracy(int(row[0]), int(row[1]), int(row[2]))
