"""The requests domain's SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import InvalidInput, NotFound
from services.requests.lifecycle import OPEN_STATES
from services.requests.models import Holiday, Request, RequestCategory, RequestSettings, RoutingRule


async def settings_of(session: AsyncSession, tenant_id: int) -> RequestSettings:
    found = await session.get(RequestSettings, tenant_id)
    if found is None:
        # A tenant made before requests existed: defaults until its row is written.
        return RequestSettings(
            tenant_id=tenant_id,
            timezone="Asia/Shanghai",
            rating_threshold=3,
            duplicate_radius_meters=200,
            duplicate_window_hours=72,
            due_soon_hours=24,
            escalation_days=3,
            open311_public=True,
            default_department="区职能部门",
        )
    return found


async def category_by_code(session: AsyncSession, tenant_id: int, code: str) -> RequestCategory:
    category = await session.scalar(
        select(RequestCategory).where(
            RequestCategory.tenant_id == tenant_id,
            RequestCategory.code == code,
            RequestCategory.retired_at.is_(None),
        )
    )
    if category is None:
        raise InvalidInput(f"there is no category {code!r}", field="category")
    return category


async def categories(session: AsyncSession, tenant_id: int) -> list[RequestCategory]:
    return list(
        (
            await session.scalars(
                select(RequestCategory)
                .where(RequestCategory.tenant_id == tenant_id, RequestCategory.retired_at.is_(None))
                .order_by(RequestCategory.id)
            )
        ).all()
    )


async def get(session: AsyncSession, tenant_id: int, request_id: int, *, for_update: bool = False) -> Request:
    statement = select(Request).where(Request.tenant_id == tenant_id, Request.id == request_id)
    if for_update:
        statement = statement.with_for_update()
    found = await session.scalar(statement)
    if found is None:
        raise NotFound(f"request {request_id} does not exist or lies outside your scope", field="id")
    return found


async def by_ticket(session: AsyncSession, tenant_id: int, ticket: str) -> Request | None:
    found: Request | None = await session.scalar(
        select(Request).where(Request.tenant_id == tenant_id, Request.ticket == ticket)
    )
    return found


async def by_external_id(
    session: AsyncSession, tenant_id: int, channel: str, external_id: str
) -> Request | None:
    found: Request | None = await session.scalar(
        select(Request).where(
            Request.tenant_id == tenant_id, Request.channel == channel, Request.external_id == external_id
        )
    )
    return found


async def next_request_id(session: AsyncSession) -> int:
    return int(await session.scalar(text("SELECT nextval(pg_get_serial_sequence('requests', 'id'))")))


@dataclass(frozen=True, slots=True)
class Rule:
    responsible: str
    department: str | None
    assignee: str | None


async def routing_rule(
    session: AsyncSession, tenant_id: int, category_id: int, place_scope: str
) -> Rule | None:
    """The most specific rule covering the place: the deepest territory, then the category's own rule."""
    row = (
        await session.execute(
            select(RoutingRule.responsible, RoutingRule.department, RoutingRule.assignee)
            .where(
                RoutingRule.tenant_id == tenant_id,
                (RoutingRule.category_id == category_id) | RoutingRule.category_id.is_(None),
                RoutingRule.scope.op("@>")(func.text2ltree(place_scope)),
            )
            .order_by(func.nlevel(RoutingRule.scope).desc(), RoutingRule.category_id.is_(None))
            .limit(1)
        )
    ).first()
    return Rule(row.responsible, row.department, row.assignee) if row is not None else None


async def deputy_of(session: AsyncSession, tenant_id: int, station_scope: str) -> str | None:
    """A deputy linked to the station (the lowest user id, so the choice is stable)."""
    found = await session.scalar(
        text(
            "SELECT 'user:' || user_id FROM role_assignments "
            "WHERE tenant_id = :t AND role = 'deputy' AND scope @> text2ltree(:scope) "
            "ORDER BY nlevel(scope) DESC, user_id LIMIT 1"
        ),
        {"t": tenant_id, "scope": station_scope},
    )
    return str(found) if found is not None else None


@dataclass(frozen=True, slots=True)
class DuplicateHint:
    request_id: int
    ticket: str
    state: str
    distance_meters: float
    submitted_at: datetime
    scope: str


DUPLICATES = """
SELECT id, ticket, state, submitted_at, scope::text AS scope,
       ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography) AS distance
FROM requests
WHERE tenant_id = :tenant_id AND category_id = :category_id AND id <> :exclude
  AND state = ANY(:open_states) AND submitted_at >= :since
  -- A box around the point first (index-driven), then the true distance on the spheroid.
  AND geom && ST_Expand(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :degrees)
  AND ST_DWithin(geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :meters)
ORDER BY distance, id
LIMIT 5
"""


async def possible_duplicates(
    session: AsyncSession,
    tenant_id: int,
    *,
    category_id: int,
    lon: float,
    lat: float,
    now: datetime,
    radius_meters: int,
    window_hours: int,
    exclude: int = 0,
) -> tuple[DuplicateHint, ...]:
    # 1 degree of latitude is ~111 km; longitude shrinks with latitude, so widen generously.
    degrees = radius_meters / 111_000 * 2.5
    rows = await session.execute(
        text(DUPLICATES),
        {
            "tenant_id": tenant_id,
            "category_id": category_id,
            "exclude": exclude,
            "open_states": sorted(OPEN_STATES),
            "since": now - timedelta(hours=window_hours),
            "lon": lon,
            "lat": lat,
            "degrees": degrees,
            "meters": radius_meters,
        },
    )
    return tuple(
        DuplicateHint(int(r.id), str(r.ticket), str(r.state), float(r.distance), r.submitted_at, str(r.scope))
        for r in rows
    )


@dataclass(frozen=True, slots=True)
class RequestFilter:
    states: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    within: str | None = None  # a hierarchy path: only requests inside it
    overdue: bool | None = None
    supervision: tuple[str, ...] = ()
    submitted_from: datetime | None = None
    submitted_to: datetime | None = None
    text: str | None = None
    unrouted: bool | None = None


def _filtered(tenant_id: int, where: RequestFilter) -> Any:
    statement = select(Request).where(Request.tenant_id == tenant_id)
    if where.states:
        statement = statement.where(Request.state.in_(where.states))
    if where.categories:
        codes = select(RequestCategory.id).where(
            RequestCategory.tenant_id == tenant_id, RequestCategory.code.in_(where.categories)
        )
        statement = statement.where(Request.category_id.in_(codes))
    if where.within is not None:
        statement = statement.where(Request.scope.op("<@")(func.text2ltree(where.within)))
    if where.overdue is not None:
        statement = statement.where(Request.overdue.is_(where.overdue))
    if where.supervision:
        statement = statement.where(Request.supervision.in_(where.supervision))
    if where.submitted_from is not None:
        statement = statement.where(Request.submitted_at >= where.submitted_from)
    if where.submitted_to is not None:
        statement = statement.where(Request.submitted_at < where.submitted_to)
    if where.text:
        pattern = "%" + where.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(
            Request.description.ilike(pattern)
            | Request.address.ilike(pattern)
            | (Request.ticket == where.text)
        )
    if where.unrouted is not None:
        statement = statement.where(
            Request.station_id.is_(None) if where.unrouted else Request.station_id.is_not(None)
        )
    return statement


async def page(
    session: AsyncSession, tenant_id: int, where: RequestFilter, *, first: int, before_id: int | None
) -> tuple[list[Request], int, bool]:
    """Newest first, keyset-paged by id; the total of the whole filtered list, and whether more follow."""
    statement = _filtered(tenant_id, where)
    total = int(await session.scalar(select(func.count()).select_from(statement.subquery())) or 0)
    if before_id is not None:
        statement = statement.where(Request.id < before_id)
    rows = list((await session.scalars(statement.order_by(Request.id.desc()).limit(first + 1))).all())
    return rows[:first], total, len(rows) > first


async def categories_by_id(session: AsyncSession, tenant_id: int) -> dict[int, RequestCategory]:
    rows = await session.scalars(select(RequestCategory).where(RequestCategory.tenant_id == tenant_id))
    return {row.id: row for row in rows}


async def calendar_year(session: AsyncSession, tenant_id: int, year: int) -> list[Holiday]:
    return list(
        (
            await session.scalars(
                select(Holiday)
                .where(
                    Holiday.tenant_id == tenant_id,
                    Holiday.day >= date(year, 1, 1),
                    Holiday.day <= date(year, 12, 31),
                )
                .order_by(Holiday.day)
            )
        ).all()
    )
