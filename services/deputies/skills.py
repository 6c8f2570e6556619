"""The city's skills vocabulary: the city admin adds words and says which request categories each serves."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.service import append as audit
from services.deputies import repository
from services.deputies.models import DeputySkill
from services.errors import InvalidInput
from services.requests.models import RequestCategory
from tenants.context import TenantContext, city_scope

CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


async def save(
    session: AsyncSession, actor: TenantContext, code: str, name: str, categories: tuple[str, ...]
) -> DeputySkill:
    code = code.strip()
    if not CODE.fullmatch(code):
        raise InvalidInput(
            "a skill code is 1-40 lower-case letters, digits or _, starting with a letter", field="code"
        )
    name = name.strip()
    if not name or len(name) > 100:
        raise InvalidInput("name must be 1 to 100 characters", field="name")
    known = set(
        await session.scalars(
            select(RequestCategory.code).where(RequestCategory.tenant_id == actor.tenant_id)
        )
    )
    unknown = [c for c in categories if c not in known]
    if unknown:
        raise InvalidInput(f"unknown request category {unknown[0]!r}", field="categories")
    row = await repository.skill(session, actor.tenant_id, code)
    if row is None:
        row = DeputySkill(tenant_id=actor.tenant_id, code=code)
        session.add(row)
    row.name = name
    row.categories = list(dict.fromkeys(categories))
    await session.flush()
    await audit(
        session,
        tenant_id=actor.tenant_id,
        actor=actor.principal,
        action="deputy_skill.saved",
        subject=f"deputy_skill:{code}",
        scope=city_scope(actor.tenant_id),
        payload={"code": code, "name": name, "categories": row.categories},
    )
    return row
