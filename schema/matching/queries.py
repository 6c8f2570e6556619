from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession

from schema.context import Info
from schema.deputies.queries import territory_of
from schema.matching.types import (
    Demand,
    DemandState,
    Match,
    MatchAccuracy,
    MatchRun,
    MatchState,
    Resource,
    demand_of,
    match_of,
    resource_of,
    run_of,
)
from schema.permissions import SIGNED_IN
from schema.relay import BadGlobalId, Connection, connection, decode_id, id_page
from services.matching import repository, service

T = TypeVar("T")
# (session, tenant, after id, limit) -> rows; (session, tenant) -> their total; what turns rows into nodes.
Rows = Callable[[AsyncSession, int, int | None, int], Awaitable[Sequence[Any]]]
Total = Callable[[AsyncSession, int], Awaitable[int]]
Converter = Callable[[AsyncSession, int, Sequence[Any]], Awaitable[Callable[[Any], T]]]


def _invalid(message: str, field: str | None = None) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "INVALID_INPUT", "field": field})


async def _list(
    info: Info,
    first: int,
    after: str | None,
    rows_of: Rows,
    total_of: Total,
    convert: Converter[T],
) -> Connection[T]:
    """One page by id: the rows, their total and what `convert` needs, in one session."""
    size, after_id = id_page(first, after)
    tenant_id = info.context.require_principal().tenant_id
    async with info.context.db() as session:
        rows = await rows_of(session, tenant_id, after_id, size + 1)
        total = await total_of(session, tenant_id)
        converter = await convert(session, tenant_id, rows[:size])
    return connection(
        rows[:size],
        converter,
        total=total,
        has_next=len(rows) > size,
        has_previous=after_id is not None,
        cursor_of=lambda row: str(row.id),
    )


async def demand_converter(
    session: AsyncSession, tenant_id: int, rows: Sequence[Any]
) -> Callable[[Any], Demand]:
    if not rows:
        return lambda row: demand_of(row, "")
    codes = {row.id: code for code, row in (await repository.categories(session, tenant_id)).items()}
    return lambda row: demand_of(row, codes.get(row.category_id, ""))


def _convert_with(convert: Callable[[Any], T]) -> Converter[T]:
    async def made(session: AsyncSession, tenant_id: int, rows: Sequence[Any]) -> Callable[[Any], T]:
        return convert

    return made


async def load_demand(info: Info, key: int) -> Demand | None:
    tenant_id = info.context.require_principal().tenant_id
    async with info.context.db() as session:
        row = await repository.demand(session, tenant_id, key)
        convert = await demand_converter(session, tenant_id, [row] if row is not None else [])
    return convert(row) if row is not None else None


async def load_resource(info: Info, key: int) -> Resource | None:
    tenant_id = info.context.require_principal().tenant_id
    async with info.context.db() as session:
        row = await repository.resource(session, tenant_id, key)
    return resource_of(row) if row is not None else None


async def load_match(info: Info, key: int) -> Match | None:
    tenant_id = info.context.require_principal().tenant_id
    async with info.context.db() as session:
        row = await repository.match(session, tenant_id, key)
    return match_of(row) if row is not None else None


def _day(value: date) -> datetime:
    return datetime.combine(value, time.min, tzinfo=UTC)


@strawberry.type
class MatchingQuery:
    @strawberry.field(permission_classes=SIGNED_IN, description="Demands of the stations you may see, by id.")
    async def demands(
        self, info: Info, first: int = 50, after: str | None = None, state: DemandState | None = None
    ) -> Connection[Demand]:
        wanted = state.value if state is not None else None

        async def rows_of(
            session: AsyncSession, tenant_id: int, after: int | None, limit: int
        ) -> Sequence[Any]:
            return await repository.demands(session, tenant_id, after=after, limit=limit, state=wanted)

        async def total_of(session: AsyncSession, tenant_id: int) -> int:
            return await repository.count_demands(session, tenant_id, wanted)

        return await _list(info, first, after, rows_of, total_of, demand_converter)

    @strawberry.field(permission_classes=SIGNED_IN, description="Resources kept in or above your scope.")
    async def resources(self, info: Info, first: int = 50, after: str | None = None) -> Connection[Resource]:
        async def rows_of(
            session: AsyncSession, tenant_id: int, after: int | None, limit: int
        ) -> Sequence[Any]:
            return await repository.resources(session, tenant_id, after=after, limit=limit)

        total_of = repository.count_resources
        return await _list(info, first, after, rows_of, total_of, _convert_with(resource_of))

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Matches in your scope, or proposed to you as a resource's owner (`mine`), by id.",
    )
    async def matches(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        state: MatchState | None = None,
        mine: bool = False,
    ) -> Connection[Match]:
        wanted = state.value if state is not None else None
        owner = info.context.require_principal().sub if mine else None

        async def rows_of(
            session: AsyncSession, tenant_id: int, after: int | None, limit: int
        ) -> Sequence[Any]:
            return await repository.matches(
                session, tenant_id, after=after, limit=limit, state=wanted, owner=owner
            )

        async def total_of(session: AsyncSession, tenant_id: int) -> int:
            return await repository.count_matches(session, tenant_id, wanted, owner)

        return await _list(info, first, after, rows_of, total_of, _convert_with(match_of))

    @strawberry.field(permission_classes=SIGNED_IN, description="The latest batch runs you may see.")
    async def match_runs(self, info: Info, last: int = 20) -> list[MatchRun]:
        if not 1 <= last <= 100:
            raise _invalid("last must be between 1 and 100", "last")
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows = await repository.runs(session, tenant_id, last)
        return [run_of(row) for row in rows]

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Match accuracy of a territory (your whole scope when omitted) for matches proposed "
        "from `since` to `until` (inclusive days; the last 30 days by default).",
    )
    async def match_accuracy(
        self,
        info: Info,
        node_id: strawberry.ID | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> MatchAccuracy:
        last = until or datetime.now(UTC).date()
        first = since or last - timedelta(days=29)
        if first > last:
            raise _invalid("since lies after until", "since")
        scope = await territory_of(info, node_id)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            found = await repository.accuracy(
                session, tenant_id, scope, _day(first), _day(last + timedelta(days=1)), service.SATISFIED_AT
            )
        return MatchAccuracy(
            proposed=found.proposed,
            accepted=found.accepted,
            satisfied=found.satisfied,
            accuracy=round(found.satisfied / found.proposed, 4) if found.proposed else None,
        )


def parse_node(id: strawberry.ID, type_name: str) -> int:
    try:
        return decode_id(id, type_name)[1]
    except BadGlobalId as error:
        raise _invalid(str(error), "id") from None
