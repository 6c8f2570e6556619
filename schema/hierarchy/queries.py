from __future__ import annotations

import strawberry

from schema.context import Info
from schema.hierarchy.types import CONVERTERS, City, District, Station, Street, city_of, page_args
from schema.permissions import SIGNED_IN
from schema.relay import Connection, connection
from services.hierarchy import repository
from services.hierarchy.repository import Level, PageArgs


async def load_city(info: Info) -> City | None:
    row = await info.context.loaders.city()
    return city_of(row) if row is not None else None


async def flat_list(info: Info, level: Level, args: PageArgs) -> Connection[object]:
    async with info.context.db() as session:
        page = await repository.page_of_all(session, level, info.context.require_principal().tenant_id, args)
    nodes = info.context.loaders.nodes(level)
    for row in page.rows:
        nodes.prime(row.id, row)
    return connection(
        page.rows,
        CONVERTERS[level],
        total=page.total,
        has_next=page.has_next,
        has_previous=page.has_previous,
        cursor_of=lambda row: row.code,
    )


@strawberry.type
class HierarchyQuery:
    @strawberry.field(permission_classes=SIGNED_IN, description="The caller's city.")
    async def city(self, info: Info) -> City | None:
        return await load_city(info)

    @strawberry.field(permission_classes=SIGNED_IN, description="Every district visible to the caller.")
    async def districts(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        code: str | None = None,
        name_contains: str | None = None,
        include_retired: bool = False,
    ) -> Connection[District]:
        args = page_args(first, after, code, name_contains, include_retired)
        return await flat_list(info, Level.DISTRICT, args)  # type: ignore[return-value]

    @strawberry.field(permission_classes=SIGNED_IN, description="Every street visible to the caller.")
    async def streets(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        code: str | None = None,
        name_contains: str | None = None,
        include_retired: bool = False,
    ) -> Connection[Street]:
        args = page_args(first, after, code, name_contains, include_retired)
        return await flat_list(info, Level.STREET, args)  # type: ignore[return-value]

    @strawberry.field(permission_classes=SIGNED_IN, description="Every station visible to the caller.")
    async def stations(
        self,
        info: Info,
        first: int = 50,
        after: str | None = None,
        code: str | None = None,
        name_contains: str | None = None,
        include_retired: bool = False,
    ) -> Connection[Station]:
        args = page_args(first, after, code, name_contains, include_retired)
        return await flat_list(info, Level.STATION, args)  # type: ignore[return-value]
