"""The requests domain's SQL."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from geo.heat import DEFAULT_RATING_THRESHOLD
from services.deputies.routing import best_deputy
from services.errors import InvalidInput
from services.reach import not_found
from services.requests.lifecycle import OPEN_STATES, UNANSWERED
from services.requests.models import (
    Holiday,
    Request,
    RequestCategory,
    RequestFollower,
    RequestRating,
    RequestSettings,
    RoutingRule,
)
from services.workflow.rows import same_place

DEFAULT_CITY_MARGIN_METERS = 1000


async def settings_of(session: AsyncSession, tenant_id: int) -> RequestSettings:
    found = await session.get(RequestSettings, tenant_id)
    if found is None:
        # A tenant made before requests existed: defaults until its row is written.
        return RequestSettings(
            tenant_id=tenant_id,
            timezone="Asia/Shanghai",
            rating_threshold=DEFAULT_RATING_THRESHOLD,
            duplicate_radius_meters=200,
            duplicate_window_hours=72,
            due_soon_hours=24,
            escalation_days=3,
            open311_public=True,
            default_department="区职能部门",
            city_margin_meters=DEFAULT_CITY_MARGIN_METERS,
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


async def category_name(session: AsyncSession, tenant_id: int, category_id: int) -> str:
    name = await session.scalar(
        select(RequestCategory.name).where(
            RequestCategory.tenant_id == tenant_id, RequestCategory.id == category_id
        )
    )
    return str(name)


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


def _inside(scopes: Sequence[str]) -> Any:
    return text("requests.scope <@ CAST(:within AS ltree[])").bindparams(within=list(scopes))


async def get(
    session: AsyncSession,
    tenant_id: int,
    request_id: int,
    *,
    for_update: bool = False,
    within: Sequence[str] | None = None,
    field: str = "id",
) -> Request:
    """The request, if the session sees it and (with `within`) it lies inside those scopes: a row a caller
    sees only as its owner is not one they may step on. Else NOT_FOUND, worded as for a missing one."""
    statement = select(Request).where(Request.tenant_id == tenant_id, Request.id == request_id)
    if within is not None:
        statement = statement.where(_inside(within))
    if for_update:
        statement = statement.with_for_update()
    found = await session.scalar(statement)
    if found is None:
        raise not_found(f"request {request_id}", field)
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


async def by_ticket_and_code(
    session: AsyncSession,
    tenant_id: int,
    ticket: str,
    *,
    check_code_hash: str | None = None,
    rating_code_hash: str | None = None,
) -> Request | None:
    """The request of a ticket whose receipt code has this hash; None when either does not match."""
    statement = select(Request).where(Request.tenant_id == tenant_id, Request.ticket == ticket)
    if check_code_hash is not None:
        statement = statement.where(Request.check_code_hash == check_code_hash)
    elif rating_code_hash is not None:
        statement = statement.where(Request.rating_code_hash == rating_code_hash)
    else:
        return None
    found: Request | None = await session.scalar(statement)
    return found


async def by_idempotency_key(session: AsyncSession, tenant_id: int, key_hash: str) -> Request | None:
    # Two submissions under one key wait for each other here, so the second finds the first's row.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, :tenant_id))"),
        {"key": key_hash, "tenant_id": tenant_id},
    )
    found: Request | None = await session.scalar(
        select(Request).where(Request.tenant_id == tenant_id, Request.idempotency_key_hash == key_hash)
    )
    return found


async def next_request_id(session: AsyncSession) -> int:
    return int(await session.scalar(text("SELECT nextval(pg_get_serial_sequence('requests', 'id'))")))


@dataclass(frozen=True, slots=True)
class Rule:
    responsible: str
    department: str | None
    assignee: str | None


async def unrouted(session: AsyncSession, tenant_id: int, limit: int) -> list[Request]:
    """The manual-routing queue: requests outside every grid cell, still unanswered, with a point to locate
    again; oldest first, locked (those another transaction holds are skipped)."""
    statement = (
        select(Request)
        .where(
            Request.tenant_id == tenant_id,
            Request.station_id.is_(None),
            Request.geom.is_not(None),
            Request.state.in_(sorted(UNANSWERED)),
        )
        .order_by(Request.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.scalars(statement)).all())


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


async def deputy_of(
    session: AsyncSession, tenant_id: int, station_scope: str, category_id: int | None
) -> str | None:
    """The deputy linked to the station who matches the category best (services.deputies.routing)."""
    category = None
    if category_id is not None:
        category = await session.scalar(
            select(RequestCategory.code).where(
                RequestCategory.tenant_id == tenant_id, RequestCategory.id == category_id
            )
        )
    choice = await best_deputy(session, tenant_id, station_scope, category)
    return choice.principal if choice is not None else None


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


async def rating_taken(session: AsyncSession, request: Request) -> bool:
    found = await session.scalar(
        select(RequestRating.id).where(
            RequestRating.tenant_id == request.tenant_id,
            RequestRating.request_id == request.id,
            RequestRating.resolution_round == request.resolution_round,
        )
    )
    return found is not None


async def followers(session: AsyncSession, tenant_id: int, request_id: int) -> list[RequestFollower]:
    return list(
        (
            await session.scalars(
                select(RequestFollower)
                .where(RequestFollower.tenant_id == tenant_id, RequestFollower.request_id == request_id)
                .order_by(RequestFollower.id)
            )
        ).all()
    )


async def followed_by(session: AsyncSession, tenant_id: int, merged_id: int) -> RequestFollower | None:
    """The latest request that a merged request's submitter follows (the end of a chain of merges)."""
    found: RequestFollower | None = await session.scalar(
        select(RequestFollower)
        .where(RequestFollower.tenant_id == tenant_id, RequestFollower.merged_id == merged_id)
        .order_by(RequestFollower.id.desc())
        .limit(1)
    )
    return found


async def followed_by_many(
    session: AsyncSession, tenant_id: int, merged_ids: Sequence[int]
) -> dict[int, RequestFollower]:
    """`followed_by` for many merged requests, in one statement."""
    if not merged_ids:
        return {}
    latest = (
        select(func.max(RequestFollower.id))
        .where(RequestFollower.tenant_id == tenant_id, RequestFollower.merged_id.in_(list(merged_ids)))
        .group_by(RequestFollower.merged_id)
    )
    rows = await session.scalars(
        select(RequestFollower).where(RequestFollower.tenant_id == tenant_id, RequestFollower.id.in_(latest))
    )
    return {row.merged_id: row for row in rows}


async def add_followers(
    session: AsyncSession, survivor: Request, merged: Request, recipient: str | None
) -> None:
    """The merged request's submitter, and whoever followed the merged request, now follow the survivor."""
    earlier = await followers(session, merged.tenant_id, merged.id)
    rows = [(merged.id, merged.owner_principal, recipient)]
    rows += [(f.merged_id, f.owner_principal, f.recipient) for f in earlier]
    known = {f.merged_id for f in await followers(session, survivor.tenant_id, survivor.id)}
    for merged_id, owner, address in rows:
        if merged_id in known:
            continue
        known.add(merged_id)
        session.add(
            RequestFollower(
                **same_place(survivor),
                request_id=survivor.id,
                merged_id=merged_id,
                owner_principal=owner,
                recipient=address,
            )
        )
    await session.flush()


async def move_followers(session: AsyncSession, request: Request) -> None:
    """A rerouted request's followers move with it into its new scope."""
    await session.execute(
        update(RequestFollower)
        .where(RequestFollower.tenant_id == request.tenant_id, RequestFollower.request_id == request.id)
        .values(scope=request.scope)
    )


CITY_BOUNDARY = """
SELECT count(*) AS districts,
       coalesce(bool_or(
         b.geom && ST_Expand(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :degrees)
         AND ST_DWithin(b.geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :meters)
       ), false) AS near
FROM boundaries b
WHERE b.tenant_id = :tenant_id AND b.level = 'district'
  AND b.valid_from <= :as_of AND (b.valid_to IS NULL OR b.valid_to > :as_of)
"""


async def near_city(
    session: AsyncSession, tenant_id: int, lon: float, lat: float, meters: int, as_of: datetime
) -> bool:
    """Whether the point lies within `meters` of the city (the union of its districts' boundaries); a city
    whose districts have no boundary yet has no outline to refuse points by."""
    # A box of `meters` around the point, widened for longitude's shrinking with latitude.
    degrees = max(meters, 1) / 111_000 / max(math.cos(math.radians(lat)), 0.05) * 1.1
    row = (
        await session.execute(
            text(CITY_BOUNDARY),
            {
                "tenant_id": tenant_id,
                "lon": lon,
                "lat": lat,
                "degrees": degrees,
                "meters": meters,
                "as_of": as_of,
            },
        )
    ).one()
    return bool(row.near) or int(row.districts) == 0
