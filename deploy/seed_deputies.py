"""Synthetic deputies for a seeded city: about one per three stations of each street, kept by the street,
linked to those stations, with one to three skills and a volunteer team, all flagged synthetic (like the
synthetic shapes). The names are made up; no real person is meant."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select, text

from services.deputies.catalog import DEFAULT_SKILLS
from services.deputies.models import Deputy, DeputyStation, DeputyVolunteer
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
