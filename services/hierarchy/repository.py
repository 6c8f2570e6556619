"""All SQL of the hierarchy: batched pages of children, lookups by id and code, scope rewrites."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, insert, literal, or_, select, text, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tenants.models import City, District, Station, Street

HierarchyModel = District | Street | Station


class Level(StrEnum):
    DISTRICT = "district"
    STREET = "street"
    STATION = "station"

    @property
    def model(self) -> type[HierarchyModel]:
        return _MODELS[self]

    @property
    def scope_prefix(self) -> str:
        return {"district": "d", "street": "s", "station": "t"}[self.value]

    @property
    def parent(self) -> Level | None:
        return {Level.DISTRICT: None, Level.STREET: Level.DISTRICT, Level.STATION: Level.STREET}[self]

    def parent_column(self) -> InstrumentedAttribute[int]:
        """The column that groups this level under its parent; districts hang under the tenant."""
        if self is Level.DISTRICT:
            return District.tenant_id
        if self is Level.STREET:
            return Street.district_id
        return Station.street_id


_MODELS: dict[Level, type[HierarchyModel]] = {
    Level.DISTRICT: District,
    Level.STREET: Street,
    Level.STATION: Station,
}

# Tables whose rows carry a live scope that must follow a node when it moves. The audit log is not
# here on purpose: it records where things were at the time, and its hashes cover that.
LIVE_SCOPE_TABLES = (
    "districts",
    "streets",
    "stations",
    "grid_cells",
    "boundaries",
    "users",
    "role_assignments",
)


@dataclass(frozen=True, slots=True)
class PageArgs:
    first: int
    after: str | None = None
    code: str | None = None
    name_contains: str | None = None
    include_retired: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[Any]
    total: int
    has_next: bool
    has_previous: bool


def _paged_statement(level: Level, *, by_parent: bool, filters: tuple[bool, bool, bool, bool]) -> Select[Any]:
    """The page query for a level, with bound parameters, built once per shape so SQLAlchemy's compiled
    cache serves every later call."""
    with_after, with_code, with_name, include_retired = filters
    model = level.model
    columns = list(model.__table__.columns)
    parent_column: Any = level.parent_column() if by_parent else literal(0)
    conditions: list[Any] = [model.tenant_id == bindparam("tenant_id")]
    if by_parent:
        conditions.append(parent_column.in_(bindparam("parent_ids", expanding=True)))
    if with_code:
        conditions.append(model.code == bindparam("code"))
    if with_name:
        conditions.append(model.name.ilike(bindparam("name_pattern"), escape="\\"))
    if not include_retired:
        conditions.append(model.retired_at.is_(None))
    after = model.code > bindparam("after") if with_after else true()
    ranked = (
        select(
            *columns,
            parent_column.label("parent_key"),
            func.count().over(partition_by=parent_column).label("total"),
            func.count().filter(after).over(partition_by=parent_column).label("remaining"),
            func.count()
            .filter(after)
            .over(partition_by=parent_column, order_by=model.code)
            .label("position"),
            func.row_number().over(partition_by=parent_column, order_by=model.code).label("nth"),
        )
        .where(*conditions)
        .subquery()
    )
    after_in_page = ranked.c.code > bindparam("after") if with_after else true()
    in_page = and_(after_in_page, ranked.c.position <= bindparam("first"))
    return (
        select(
            *(ranked.c[column.key] for column in columns),
            ranked.c.parent_key,
            ranked.c.total,
            ranked.c.remaining,
            in_page.label("in_page"),
        )
        # Each parent's first row comes along even when it is not on the page (first: 0, a cursor past
        # the end), so the parent's totals are still known.
        .where(or_(in_page, ranked.c.nth == 1))
        .order_by(ranked.c.parent_key, ranked.c.code)
    )


_statements: dict[tuple[Level, bool, tuple[bool, bool, bool, bool]], Select[Any]] = {}


def _paged(
    level: Level, tenant_id: int, args: PageArgs, parent_ids: Sequence[int] | None
) -> tuple[Select[Any], dict[str, Any]]:
    shape = (args.after is not None, args.code is not None, bool(args.name_contains), args.include_retired)
    key = (level, parent_ids is not None, shape)
    if key not in _statements:
        _statements[key] = _paged_statement(level, by_parent=parent_ids is not None, filters=shape)
    values: dict[str, Any] = {"tenant_id": tenant_id, "first": args.first}
    if parent_ids is not None:
        values["parent_ids"] = list(parent_ids)
    if args.after is not None:
        values["after"] = args.after
    if args.code is not None:
        values["code"] = args.code
    if args.name_contains:
        escaped = args.name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        values["name_pattern"] = f"%{escaped}%"
    return _statements[key], values


async def pages_by_parent(
    session: AsyncSession, level: Level, tenant_id: int, parent_ids: Sequence[int], args: PageArgs
) -> dict[int, Page]:
    """One statement for the pages of children of many parents (the DataLoader batch)."""
    statement, values = _paged(level, tenant_id, args, parent_ids)
    return _collect(await session.execute(statement, values), parent_ids, args)


async def page_of_all(session: AsyncSession, level: Level, tenant_id: int, args: PageArgs) -> Page:
    """A page of every visible node of a level (one partition)."""
    statement, values = _paged(level, tenant_id, args, None)
    return _collect(await session.execute(statement, values), [0], args)[0]


def _collect(result: Any, parent_ids: Sequence[int], args: PageArgs) -> dict[int, Page]:
    grouped: dict[int, list[Any]] = {}
    totals: dict[int, tuple[int, int]] = {}
    for row in result:
        if row.in_page:
            grouped.setdefault(row.parent_key, []).append(row)
        totals[row.parent_key] = (row.total, row.remaining)
    pages: dict[int, Page] = {}
    for parent_id in parent_ids:
        total, remaining = totals.get(parent_id, (0, 0))
        rows = grouped.get(parent_id, [])
        pages[parent_id] = Page(
            rows=rows,
            total=total,
            has_next=remaining > args.first,
            has_previous=args.after is not None and total > remaining,
        )
    return pages


async def city(session: AsyncSession, tenant_id: int) -> City | None:
    found: City | None = await session.scalar(select(City).where(City.tenant_id == tenant_id))
    return found


async def by_ids(session: AsyncSession, level: Level, tenant_id: int, ids: Sequence[int]) -> dict[int, Any]:
    model = level.model
    rows: Any = await session.scalars(
        select(model).where(model.tenant_id == tenant_id, model.id.in_(list(ids)))
    )
    return {row.id: row for row in rows}


async def by_code(session: AsyncSession, level: Level, tenant_id: int, code: str) -> Any:
    model = level.model
    return await session.scalar(select(model).where(model.tenant_id == tenant_id, model.code == code))


async def next_id(session: AsyncSession, level: Level) -> int:
    table = level.model.__tablename__
    value = await session.scalar(text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))"))
    return int(value)


async def active_children(session: AsyncSession, level: Level, tenant_id: int, node_id: int) -> int:
    child = {Level.DISTRICT: Level.STREET, Level.STREET: Level.STATION}.get(level)
    if child is None:
        return 0
    model = child.model
    count = await session.scalar(
        select(func.count())
        .select_from(model)
        .where(model.tenant_id == tenant_id, child.parent_column() == node_id, model.retired_at.is_(None))
    )
    return int(count or 0)


async def rewrite_scopes(session: AsyncSession, tenant_id: int, old_scope: str, new_scope: str) -> None:
    """Move every live row at or below old_scope to the same place below new_scope."""
    for table in LIVE_SCOPE_TABLES:
        await session.execute(
            # Table names come from the fixed LIVE_SCOPE_TABLES; values are bound.
            text(
                f"UPDATE {table} SET scope = CASE WHEN scope = text2ltree(:old) THEN text2ltree(:new) "  # noqa: S608
                "ELSE text2ltree(:new) || subpath(scope, nlevel(text2ltree(:old))) END "
                "WHERE tenant_id = :tenant_id AND scope <@ text2ltree(:old)"
            ),
            {"tenant_id": tenant_id, "old": old_scope, "new": new_scope},
        )


async def allocate_ids(session: AsyncSession, level: Level, count: int) -> list[int]:
    table = level.model.__tablename__
    rows = await session.scalars(
        text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, :n)"),  # noqa: S608
        {"n": count},
    )
    return [int(value) for value in rows]


async def insert_many(session: AsyncSession, level: Level, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(level.model), rows)


async def codes_of(session: AsyncSession, level: Level, tenant_id: int) -> dict[str, Any]:
    model = level.model
    result = await session.execute(
        select(model.code, model.id, model.scope).where(model.tenant_id == tenant_id)
    )
    return {code: (node_id, scope) for code, node_id, scope in result}
