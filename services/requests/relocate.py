"""The manual-routing queue, tried again: requests that fell outside every grid cell are located once more
(after new cells are imported, say) and routed like new ones when a cell now covers them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from geoalchemy2.shape import to_shape
from shapely import Point
from sqlalchemy.ext.asyncio import AsyncSession

from geo.assignment import Placement, locate
from services.requests import repository
from services.requests.config_cache import city_config
from services.requests.lifecycle import REQUEST
from services.requests.models import Request
from services.requests.notices import tell_staff
from services.requests.routing import Route, route
from services.workflow.machine import SYSTEM
from services.workflow.service import advance


@dataclass(frozen=True, slots=True)
class RelocateReport:
    tried: int
    routed: int

    @property
    def still_outside(self) -> int:
        return self.tried - self.routed


async def _move(request: Request, placement: Placement, routed_to: Route, moment: datetime) -> None:
    """The request goes to the station now covering it, as a new one would."""
    request.scope = placement.station.scope
    request.grid_cell_id = placement.grid_cell_id
    request.station_id, request.street_id = placement.station_id, placement.street_id
    request.district_id = placement.district_id
    request.responsible, request.level = routed_to.responsible, routed_to.level
    request.assignee, request.department = routed_to.assignee, routed_to.department
    request.updated_at = moment


async def relocate_unrouted(
    session: AsyncSession, tenant_id: int, *, now: datetime | None = None, limit: int = 10_000
) -> RelocateReport:
    """Route the queued requests a grid cell now covers; the others stay queued. Runs as the system, for
    one tenant (an operator's command): the session's tenant and the explicit `tenant_id` bound it."""
    moment = now or datetime.now(UTC)
    queued = await repository.unrouted(session, tenant_id, limit)
    config = await city_config(session, tenant_id)
    routed = 0
    for request in queued:
        assert request.geom is not None
        point = to_shape(request.geom)
        assert isinstance(point, Point)
        placement = (await locate(session, tenant_id, point.x, point.y, moment)).placement
        if placement is None:
            continue
        routed_to = await route(session, tenant_id, request.category_id, placement, config.settings)
        event = await advance(
            session,
            REQUEST,
            request,
            "reroute",
            actor=SYSTEM,
            actor_kinds={SYSTEM},
            note="新划网格覆盖该位置，已自动分派",
            payload={"station_id": placement.station_id, "grid_cell_id": placement.grid_cell_id},
            at=moment,
            effects=partial(_move, request, placement, routed_to, moment),
        )
        await repository.move_followers(session, request)
        title = f"新诉求 {request.ticket}（重新定位后分派）"
        await tell_staff(session, request, "request.submitted", title, "", key=f"event:{event.id}")
        routed += 1
    return RelocateReport(len(queued), routed)
