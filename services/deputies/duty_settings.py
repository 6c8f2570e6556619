"""Saving the city's duty settings: each within its limits, the warning levels checked, the change audited.
Until the first save the city runs on the defaults (repository.duty_settings)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.service import append as audit
from services.deputies import repository
from services.deputies.models import DutySettings
from services.deputies.warnings import check_levels
from services.errors import InvalidInput
from tenants.context import TenantContext, city_scope

LIMITS = {
    "announce_days": (0, 60),
    "max_travel_kmh": (5, 1000),
    "boundary_margin_meters": (0, 5000),
    "satisfaction_bar": (1, 100),
    "warning_min_activities": (1, 20),
    "warning_resolution_bar": (1, 100),
    "warning_window_days": (7, 366),
    "suspend_after_weeks": (0, 52),
}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


async def save(session: AsyncSession, actor: TenantContext, given: Mapping[str, Any]) -> DutySettings:
    """Change the settings in `given` (names as the columns'; `warning_levels` a list of
    {level, conditions, weeks}); the others keep their value."""
    changes: dict[str, Any] = {}
    for name, value in given.items():
        if name == "warning_levels":
            changes[name] = check_levels(value)
            continue
        lowest, highest = LIMITS[name]
        if not lowest <= value <= highest:
            raise InvalidInput(f"{_camel(name)} must be between {lowest} and {highest}", field=_camel(name))
        changes[name] = value
    if not changes:
        raise InvalidInput("give at least one setting to change", field="input")
    stored = await session.get(DutySettings, actor.tenant_id)
    if stored is None:  # the first change writes the defaults down with it
        stored = await repository.duty_settings(session, actor.tenant_id)
        session.add(stored)
    for name, value in changes.items():
        setattr(stored, name, value)
    await session.flush()
    await audit(
        session,
        tenant_id=actor.tenant_id,
        actor=actor.principal,
        action="duty_settings.saved",
        subject=f"duty_settings:{actor.tenant_id}",
        scope=city_scope(actor.tenant_id),
        payload=changes,
    )
    return stored
