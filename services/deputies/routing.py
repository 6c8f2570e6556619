"""Which deputy a request (or a level-2 mediation) goes to: of the deputies linked to its station, the one
the double list's score ranks first for its category (skill fit, load against capacity, past ratings)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.deputies import repository
from services.matching.scoring import score

# States of a request still on its assignee's desk (services.requests.lifecycle.OPEN_STATES, without the
# import: requests import this module).
OPEN_REQUEST_STATES = ("submitted", "accepted", "assigned", "in_progress", "returned", "reopened")


@dataclass(frozen=True, slots=True)
class Choice:
    principal: str
    deputy_id: int | None
    total: float
    terms: dict[str, float]


async def best_deputy(
    session: AsyncSession, tenant_id: int, station_scope: str, category: str | None
) -> Choice | None:
    """The best-matching deputy linked to the station at `station_scope` (or above the row at it), who
    has an account and whose routing is not suspended; ties go to the lower deputy id. Without deputy
    records, the user holding the deputy role at the station (as before deputies had records)."""
    candidates = await repository.routing_candidates(session, tenant_id, station_scope, OPEN_REQUEST_STATES)
    if not candidates:
        fallback = await _deputy_role_holder(session, tenant_id, station_scope)
        return Choice(fallback, None, 0.0, {}) if fallback is not None else None
    serves = await repository.categories_of_skills(session, tenant_id)
    best: Choice | None = None
    for candidate in candidates:
        fit = (
            1.0
            if category is not None and any(category in serves.get(s, ()) for s in candidate.skills)
            else 0.0
        )
        found = score(
            fit=fit,
            distance_meters=0.0,
            load=candidate.open_requests,
            capacity=candidate.monthly_capacity,
            satisfaction=candidate.satisfaction,
            require_fit=False,
        )
        if best is None or found.total > best.total:
            best = Choice(candidate.principal, candidate.deputy_id, found.total, dict(found.terms))
    return best


async def _deputy_role_holder(session: AsyncSession, tenant_id: int, station_scope: str) -> str | None:
    found = await session.scalar(
        text(
            "SELECT 'user:' || user_id FROM role_assignments "
            "WHERE tenant_id = :t AND role = 'deputy' AND scope @> text2ltree(:scope) "
            "ORDER BY nlevel(scope) DESC, user_id LIMIT 1"
        ),
        {"t": tenant_id, "scope": station_scope},
    )
    return str(found) if found is not None else None
