"""Who answers for a request at a place: the most specific routing rule, with its gaps filled in."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from geo.assignment import Placement
from services.requests import repository
from services.requests.lifecycle import LEVELS
from services.requests.models import RequestSettings


@dataclass(frozen=True, slots=True)
class Route:
    responsible: str
    assignee: str | None
    department: str | None

    @property
    def level(self) -> int:
        return LEVELS.index(self.responsible)


async def route(
    session: AsyncSession,
    tenant_id: int,
    category_id: int,
    placement: Placement | None,
    settings: RequestSettings,
) -> Route:
    """A placed request follows the rule covering its station (the station by default: a deputy rule with
    nobody named goes to the station's deputy, a department rule to the default department); an unplaced
    one waits at the station level for manual routing."""
    if placement is None:
        return Route("station", None, None)
    rule = await repository.routing_rule(session, tenant_id, category_id, placement.station.scope)
    if rule is None:
        return Route("station", None, None)
    assignee, department = rule.assignee, rule.department
    if rule.responsible == "deputy" and assignee is None:
        assignee = await repository.deputy_of(session, tenant_id, placement.station.scope, category_id)
    if rule.responsible == "department" and department is None:
        department = settings.default_department
    return Route(rule.responsible, assignee, department)
