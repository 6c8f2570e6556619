"""What a new tenant starts with: the work plan's categories of need, the official holiday calendar,
default settings and a routing rule that sends everything to the community's station."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import chinese_calendar
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.requests.models import Holiday, RequestCategory, RequestSettings, RoutingRule
from tenants.context import city_scope


@dataclass(frozen=True, slots=True)
class CategorySeed:
    code: str
    name: str
    kind: str  # basic (基本需求) or personalised (个性化需求)
    response_days: int
    resolution_days: int


DEFAULT_CATEGORIES = (
    CategorySeed("elderly_care", "养老服务", "basic", 1, 10),
    CategorySeed("childcare_education", "托育与教育", "basic", 1, 10),
    CategorySeed("health_care", "医疗卫生", "basic", 1, 7),
    CategorySeed("employment", "就业服务", "personalised", 2, 15),
    CategorySeed("culture", "文化体育", "personalised", 2, 15),
    CategorySeed("property_housing", "物业管理与住房", "basic", 1, 10),
    CategorySeed("environment", "环境卫生", "basic", 1, 5),
    CategorySeed("parking", "停车", "basic", 1, 7),
    CategorySeed("ev_charging", "充电设施", "personalised", 2, 15),
    CategorySeed("public_toilets", "公共厕所", "basic", 1, 5),
    CategorySeed("disputes", "矛盾纠纷", "basic", 1, 10),
    CategorySeed("safety", "安全隐患", "basic", 1, 3),
)

# The official calendar as published by the State Council, from the `chinesecalendar` package (it covers
# the years the State Council has announced; later years are added by the city admin, see the README).
CALENDAR_FROM = date(2024, 1, 1)


def official_days() -> list[tuple[date, str, str]]:
    days = [(day, "holiday", str(name)) for day, name in chinese_calendar.constants.holidays.items()]
    days += [(day, "workday", str(name)) for day, name in chinese_calendar.constants.workdays.items()]
    return sorted(d for d in days if d[0] >= CALENDAR_FROM)


async def ensure_defaults(session: AsyncSession, tenant_id: int) -> None:
    """Seed a tenant's categories, calendar, settings and default routing; running it again adds nothing."""
    await session.execute(
        insert(RequestCategory)
        .values(
            [
                {
                    "tenant_id": tenant_id,
                    "code": c.code,
                    "name": c.name,
                    "kind": c.kind,
                    "response_days": c.response_days,
                    "resolution_days": c.resolution_days,
                }
                for c in DEFAULT_CATEGORIES
            ]
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "code"])
    )
    await session.execute(
        insert(Holiday)
        .values(
            [
                {"tenant_id": tenant_id, "day": day, "kind": kind, "name": name}
                for day, kind, name in official_days()
            ]
        )
        .on_conflict_do_nothing(index_elements=["tenant_id", "day"])
    )
    await session.execute(
        insert(RequestSettings)
        .values(tenant_id=tenant_id)
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )
    has_rule = await session.scalar(select(RoutingRule.id).where(RoutingRule.tenant_id == tenant_id).limit(1))
    if has_rule is None:
        session.add(
            RoutingRule(
                tenant_id=tenant_id, category_id=None, scope=city_scope(tenant_id), responsible="station"
            )
        )
    await session.flush()
