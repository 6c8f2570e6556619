"""A city's request configuration (settings, categories, holiday calendar) as the intake pipeline reads it:
kept per process for a short while, since every submission needs it and it changes a few times a year.

A change made through `services.requests.admin` clears this process's copy at once; other processes (API
servers, workers) see it within `TTL`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.requests import repository
from services.requests.calendar import WorkingCalendar, load_calendar
from services.requests.models import RequestCategory, RequestSettings

TTL_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class CityConfig:
    settings: RequestSettings
    categories: dict[str, RequestCategory]
    calendar: WorkingCalendar
    loaded_at: float


_cache: dict[tuple[str, int], CityConfig] = {}


def _key(session: AsyncSession, tenant_id: int) -> tuple[str, int]:
    return str(session.get_bind().engine.url), tenant_id


async def city_config(session: AsyncSession, tenant_id: int) -> CityConfig:
    key = _key(session, tenant_id)
    found = _cache.get(key)
    if found is not None and time.monotonic() - found.loaded_at < TTL_SECONDS:
        return found
    settings = await repository.settings_of(session, tenant_id)
    categories = {c.code: c for c in await repository.categories(session, tenant_id)}
    calendar = await load_calendar(session, tenant_id, settings.timezone)
    # Detached copies: the cached rows outlive the session that read them.
    for row in (settings, *categories.values()):
        if row in session:
            session.expunge(row)
    found = CityConfig(settings, categories, calendar, time.monotonic())
    _cache[key] = found
    return found


def forget(tenant_id: int) -> None:
    for key in [key for key in _cache if key[1] == tenant_id]:
        del _cache[key]
