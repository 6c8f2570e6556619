"""Synthetic deputies for a seeded city: about one per three stations of each street, kept by the street,
linked to those stations, with one to three skills and a volunteer team, and a year of duty activities
with the points they earned, all flagged synthetic (like the synthetic shapes). The names are made up; no
real person is meant."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select, text

from services.audit.service import append as audit
from services.deputies.catalog import DEFAULT_SKILLS
from services.deputies.models import Deputy, DeputyStation, DeputyVolunteer
from services.deputies.points import ACTIVITY_POINTS, EVENTS
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tenants.models import Station, Street

STATIONS_PER_DEPUTY = 3
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
LEVELS = ("district",) * 8 + ("municipal",) * 2


@dataclass(frozen=True, slots=True)
class DeputyReport:
    deputies: int
    links: int
    volunteers: int


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))


async def seed_synthetic_deputies(
    database: Database, tenant_id: int, *, seed: int = 2026, link_principal: tuple[str, str] | None = None
) -> DeputyReport:
    """Add the synthetic deputies once (nothing when the city has deputies already). `link_principal`,
    (station code, principal), gives the deputy of that station a user account (the demo's deputy)."""
    rng = random.Random(seed)
    skills = [s.code for s in DEFAULT_SKILLS]
    context = TenantContext.whole_tenant(tenant_id, "system:seed")
    async with unit_of_work(database, context) as session:
        present = await session.scalar(
            text("SELECT EXISTS (SELECT 1 FROM deputies WHERE tenant_id = :t)"), {"t": tenant_id}
        )
        if present:
            return DeputyReport(0, 0, 0)
        streets = {
            s.id: s.scope for s in await session.scalars(select(Street).where(Street.tenant_id == tenant_id))
        }
        stations = list(
            await session.scalars(
                select(Station)
                .where(Station.tenant_id == tenant_id, Station.retired_at.is_(None))
                .order_by(Station.street_id, Station.code)
            )
        )
        by_street: dict[int, list[Station]] = {}
        for station in stations:
            by_street.setdefault(station.street_id, []).append(station)
        deputies = links = volunteers = 0
        for street_id, group in by_street.items():
            for start in range(0, len(group), STATIONS_PER_DEPUTY):
                served = group[start : start + STATIONS_PER_DEPUTY]
                principal = None
                if link_principal is not None and any(s.code == link_principal[0] for s in served):
                    principal = link_principal[1]
                deputy = Deputy(
                    tenant_id=tenant_id,
                    scope=streets[street_id],
                    name=_name(rng),
                    level=rng.choice(LEVELS),
                    term_start=date(2022, 1, 1),
                    term_end=date(2026, 12, 31),
                    constituency=f"第{rng.randint(1, 40)}选区",
                    phone=f"1390000{rng.randint(0, 9999):04d}",
                    skills=rng.sample(skills, rng.randint(1, 3)),
                    monthly_capacity=rng.randint(4, 12),
                    principal=principal,
                    synthetic=True,
                    # On record since the term began, so the weekly warnings judge the weeks before the seed.
                    created_at=datetime(2022, 1, 1, tzinfo=UTC),
                )
                session.add(deputy)
                await session.flush()
                deputies += 1
                for station in served:
                    session.add(
                        DeputyStation(
                            tenant_id=tenant_id,
                            deputy_id=deputy.id,
                            station_id=station.id,
                            scope=station.scope,
                            linked_by="system:seed",
                        )
                    )
                    links += 1
                # Most teams have 3-5 volunteers; a few do not, so the team-size report has something to say.
                size = rng.choice((3, 4, 4, 5, 5, 3, 4, 5, 2, 6))
                for _ in range(size):
                    session.add(
                        DeputyVolunteer(
                            tenant_id=tenant_id,
                            deputy_id=deputy.id,
                            scope=deputy.scope,
                            name=_name(rng),
                            skills=rng.sample(skills, 1),
                        )
                    )
                    volunteers += 1
        await session.flush()
    return DeputyReport(deputies, links, volunteers)


# Kinds in the proportions a year of duty has them; titles as a street committee writes them.
YEAR_KINDS = (
    ("visit",) * 10
    + ("reception",) * 3
    + ("policy_talk",) * 2
    + (
        "research",
        "problem_solved",
        "duty_report",
        "meeting",
        "deliberation",
    )
)
TITLES = {
    "visit": "走访联系群众",
    "reception": "代表接待日",
    "policy_talk": "政策宣讲",
    "research": "专题调研",
    "problem_solved": "协调解决群众难题",
    "duty_report": "向选民述职",
    "meeting": "参加六方联席会议",
    "deliberation": "参加居民议事会",
}
# Each synthetic deputy without activities gets 8-47 over the year before `as_of` (so some lag and are
# warned), at their first station; 85% verified, 10% waiting, 5% rejected. Pseudo-random from the ids, so
# the same city gets the same year.
YEAR_ACTIVITIES = """
WITH quiet AS (
  SELECT d.id, d.principal, first.station_id, first.scope
  FROM deputies d
  CROSS JOIN LATERAL (
    SELECT station_id, scope FROM deputy_stations s
    WHERE s.tenant_id = d.tenant_id AND s.deputy_id = d.id ORDER BY station_id LIMIT 1
  ) first
  WHERE d.tenant_id = :tenant_id AND d.synthetic
    AND NOT EXISTS (SELECT 1 FROM activities a WHERE a.tenant_id = d.tenant_id AND a.deputy_id = d.id)
), drawn AS (
  SELECT q.*, abs(hashint8(q.id * 1000 + g)::bigint) AS h
  FROM quiet q CROSS JOIN LATERAL generate_series(1, 8 + abs(hashint8(q.id)::bigint) % 40) g
), dated AS (
  SELECT drawn.*, (CAST(:kinds AS text[]))[1 + h % array_length(CAST(:kinds AS text[]), 1)] AS kind,
         CAST(:as_of AS timestamptz) - (h % 31536000) * interval '1 second' AS at,
         CASE WHEN h / 7 % 20 < 17 THEN 'verified' WHEN h / 7 % 20 < 19 THEN 'reported' ELSE 'rejected' END
           AS state
  FROM drawn
)
INSERT INTO activities (tenant_id, scope, deputy_id, station_id, owner_principal, kind, title, starts_at,
                        households_visited, attendees, state, verification_note, verified_by, created_by,
                        synthetic, reported_at, verified_at)
SELECT :tenant_id, scope, id, station_id, principal, kind, CAST(:titles AS jsonb) ->> kind, at,
       CASE WHEN kind = 'visit' THEN 1 + h % 12 ELSE 0 END,
       CASE WHEN kind = 'visit' THEN 0 ELSE 5 + h % 40 END,
       state, CASE WHEN state = 'rejected' THEN '无现场记录' END,
       CASE WHEN state <> 'reported' THEN 'system:seed' END, 'system:seed', true, at,
       CASE WHEN state <> 'reported' THEN at + interval '2 days' END
FROM dated
"""
# The entries verification would have written for them (under the default rules).
YEAR_POINTS = """
INSERT INTO point_entries (tenant_id, scope, deputy_id, owner_principal, event, points, source_kind,
                           source_id, earned_at, created_by)
SELECT a.tenant_id, a.scope, a.deputy_id, a.owner_principal, e.event, e.points, 'activity', a.id,
       a.verified_at, 'system:seed'
FROM activities a
JOIN (SELECT * FROM unnest(CAST(:events AS text[]), CAST(:points AS int[]))) AS e(event, points)
  ON e.event = CASE WHEN a.state = 'rejected' THEN 'activity.rejected' ELSE 'activity.' || a.kind END
WHERE a.tenant_id = :tenant_id AND a.synthetic AND a.state IN ('verified', 'rejected')
  AND a.verified_at IS NOT NULL
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class DutyYearReport:
    activities: int
    point_entries: int


async def seed_duty_year(database: Database, tenant_id: int, as_of: datetime | None = None) -> DutyYearReport:
    """A year of synthetic activities for the synthetic deputies that have none, and their points. The
    entries are audited as one link naming how many were written (they were not earned one by one)."""
    moment = as_of or datetime.now(UTC)
    context = TenantContext.whole_tenant(tenant_id, "system:seed")
    async with unit_of_work(database, context) as session:
        activities = await session.execute(
            text(YEAR_ACTIVITIES),
            {
                "tenant_id": tenant_id,
                "kinds": list(YEAR_KINDS),
                "titles": json.dumps(TITLES, ensure_ascii=False),
                "as_of": moment,
            },
        )
        added = int(getattr(activities, "rowcount", 0) or 0)
        if not added:
            return DutyYearReport(0, 0)
        events = [f"activity.{kind}" for kind in ACTIVITY_POINTS] + ["activity.rejected"]
        entries = await session.execute(
            text(YEAR_POINTS),
            {"tenant_id": tenant_id, "events": events, "points": [EVENTS[e][0] for e in events]},
        )
        written = int(getattr(entries, "rowcount", 0) or 0)
        await audit(
            session,
            tenant_id=tenant_id,
            actor="system:seed",
            action="points.seeded",
            subject=f"city:{tenant_id}",
            scope=context.scopes[0],
            payload={"activities": added, "entries": written, "synthetic": True},
        )
    return DutyYearReport(added, written)
