"""The skills vocabulary a new city starts with, and the request categories each skill serves."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.deputies.models import DeputySkill


@dataclass(frozen=True, slots=True)
class SkillSeed:
    code: str
    name: str
    categories: tuple[str, ...]  # request category codes (services.requests.catalog)


DEFAULT_SKILLS = (
    SkillSeed("law", "法律", ("disputes", "property_housing", "employment")),
    SkillSeed("medicine", "医疗", ("health_care", "elderly_care")),
    SkillSeed("education", "教育", ("childcare_education", "culture")),
    SkillSeed("elderly_care", "养老", ("elderly_care",)),
    SkillSeed(
        "construction", "建设", ("property_housing", "parking", "ev_charging", "public_toilets", "safety")
    ),
    SkillSeed("employment", "就业", ("employment",)),
    SkillSeed("mediation", "调解", ("disputes", "property_housing")),
    SkillSeed("environment", "环境", ("environment", "public_toilets")),
)


async def ensure_skills(session: AsyncSession, tenant_id: int) -> None:
    """Seed the city's vocabulary; running it again adds nothing and keeps the city's own changes."""
    await session.execute(
        insert(DeputySkill)
        .values(
            [
                {"tenant_id": tenant_id, "code": s.code, "name": s.name, "categories": list(s.categories)}
                for s in DEFAULT_SKILLS
            ]
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "code"])
    )
