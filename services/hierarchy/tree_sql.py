"""A whole hierarchy read as one SQL statement that builds the answer's JSON inside PostgreSQL.

The caller describes what to read as a tree of `Field`s (response key, field name, sub-fields, page
arguments); this module maps the names to fixed SQL: table and column names come from KINDS, response
keys must match KEY_PATTERN, and every value is bound (hence the S608 waivers below). The semantics are
those of `repository._paged_statement` and `_collect`: children by code, the first N after the cursor,
totals read off the page. Runs in the caller's tenant-scoped transaction, so row-level security applies
as everywhere, and every subquery also filters the tenant explicitly.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.hierarchy.repository import Level, PageArgs

# Response keys are written into the SQL as string literals: only names of this shape are accepted.
KEY_PATTERN = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")
# json_build_object takes at most 100 arguments.
MAX_KEYS = 50


class UnsupportedSelection(ValueError):
    """The plan asks for something this module does not build; the caller reads another way."""


@dataclass(frozen=True, slots=True)
class Field:
    """One selected field: its key in the answer, its name, its sub-fields, and for lists the page."""

    key: str
    name: str
    fields: tuple[Field, ...] = ()
    page: PageArgs | None = None


@dataclass(frozen=True, slots=True)
class _Kind:
    type_name: str
    table: str
    key_column: str  # what the global id encodes
    parent_column: str | None = None  # the row's pointer to its parent (None: the city, by tenant)
    parent_field: str | None = None
    parent_kind: str | None = None
    children_field: str | None = None
    child_level: Level | None = None


KINDS = {
    "City": _Kind("City", "cities", "tenant_id", children_field="districts", child_level=Level.DISTRICT),
    "District": _Kind("District", "districts", "id", None, "city", "City", "streets", Level.STREET),
    "Street": _Kind(
        "Street", "streets", "id", "district_id", "district", "District", "stations", Level.STATION
    ),
    "Station": _Kind("Station", "stations", "id", "street_id", "street", "Street"),
}
LEVEL_KINDS = {Level.DISTRICT: "District", Level.STREET: "Street", Level.STATION: "Station"}
ROOT_LISTS = {"districts": Level.DISTRICT, "streets": Level.STREET, "stations": Level.STATION}


def _base64url(expression: str) -> str:
    """URL-safe base64 of a text expression, padded (PostgreSQL also wraps lines every 76 characters)."""
    encoded = f"encode(convert_to({expression}, 'UTF8'), 'base64')"
    return f"translate(replace({encoded}, E'\\n', ''), '+/', '-_')"


def _cursor(code: str) -> str:
    """schema.relay.encode_cursor in SQL."""
    return _base64url(f"'after:' || {code}")


def _global_id(type_name: str, key: str) -> str:
    """schema.relay.encode_id in SQL: without padding."""
    encoded = _base64url(f"'{type_name}:' || {key}")
    return f"rtrim({encoded}, '=')"


def _literal(value: str) -> str:
    # Only ever called with fixed type names from this module.
    return f"'{value}'::text"


def _object(pairs: Sequence[tuple[str, str]]) -> str:
    if len(pairs) > MAX_KEYS:
        raise UnsupportedSelection(f"more than {MAX_KEYS} keys in one object")
    for key, _ in pairs:
        if not KEY_PATTERN.fullmatch(key):
            raise UnsupportedSelection(f"{key!r} is not a name")
    return "json_build_object(" + ", ".join(f"'{key}', {value}" for key, value in pairs) + ")"


class _Statement:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._numbers = itertools.count(1)

    def bind(self, value: Any) -> str:
        name = f"p{next(self._numbers)}"
        self.values[name] = value
        return f":{name}"

    def alias(self) -> str:
        return f"t{next(self._numbers)}"

    def root(self, fields: Sequence[Field]) -> str:
        pairs: list[tuple[str, str]] = []
        for field in fields:
            if field.name == "__typename":
                pairs.append((field.key, _literal("Query")))
            elif field.name == "city":
                pairs.append((field.key, self.city(field.fields)))
            elif field.name in ROOT_LISTS:
                pairs.append((field.key, self.connection(ROOT_LISTS[field.name], None, field)))
            else:
                raise UnsupportedSelection(field.name)
        return f"SELECT {_object(pairs)}::text"

    def city(self, fields: Sequence[Field]) -> str:
        row = self.alias()
        node = self.node(KINDS["City"], row, fields)
        return f"(SELECT {node} FROM cities {row} WHERE {row}.tenant_id = :tenant_id)"  # noqa: S608

    def node(self, kind: _Kind, row: str, fields: Sequence[Field]) -> str:
        pairs: list[tuple[str, str]] = []
        for field in fields:
            if field.name == "__typename":
                value = _literal(kind.type_name)
            elif field.name == "id":
                value = _global_id(kind.type_name, f"{row}.{kind.key_column}")
            elif field.name in ("code", "name"):
                value = f"{row}.{field.name}"
            elif field.name == "scope":
                value = f"{row}.scope::text"
            elif field.name == kind.parent_field and kind.parent_kind is not None:
                value = self.parent(KINDS[kind.parent_kind], kind.parent_column, row, field.fields)
            elif field.name == kind.children_field and kind.child_level is not None:
                parent_key = f"{row}.id" if kind.type_name != "City" else None
                value = self.connection(kind.child_level, parent_key, field)
            else:
                raise UnsupportedSelection(field.name)
            pairs.append((field.key, value))
        return _object(pairs)

    def parent(self, kind: _Kind, pointer: str | None, child: str, fields: Sequence[Field]) -> str:
        if pointer is None:
            return self.city(fields)
        row = self.alias()
        node = self.node(kind, row, fields)
        return (
            f"(SELECT {node} FROM {kind.table} {row} "  # noqa: S608
            f"WHERE {row}.tenant_id = :tenant_id AND {row}.id = {child}.{pointer})"
        )

    def connection(self, level: Level, parent_key: str | None, field: Field) -> str:
        """A page of children of `parent_key` (None: every visible row of the level) as a connection."""
        kind = KINDS[LEVEL_KINDS[level]]
        args = field.page
        if args is None:
            raise UnsupportedSelection(f"{field.name} without page arguments")
        where = self.filters(kind, parent_key, args)
        after = self.bind(args.after) if args.after is not None else None
        first = f"CAST({self.bind(args.first)} AS integer)"
        counts, page, row = self.alias(), self.alias(), self.alias()
        # `remaining` counts the rows after the cursor (all of them without one).
        total = f"{counts}.total"
        has_next = f"({counts}.remaining > {first})"
        has_previous = "false" if after is None else f"({counts}.total > {counts}.remaining)"
        info_values = {
            "__typename": _literal("PageInfo"),
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": _cursor(f"{page}.first_code"),
            "endCursor": _cursor(f"{page}.last_code"),
        }

        aggregates: list[str] = []
        pairs: list[tuple[str, str]] = []
        for part in field.fields:
            if part.name == "__typename":
                pairs.append((part.key, _literal(f"{kind.type_name}Connection")))
            elif part.name == "totalCount":
                pairs.append((part.key, total))
            elif part.name == "edges":
                column = f"edges{len(aggregates)}"
                edge = self.edge(kind, row, part.fields)
                aggregates.append(f"json_agg({edge} ORDER BY {row}.code) AS {column}")
                pairs.append((part.key, f"coalesce({page}.{column}, '[]'::json)"))
            elif part.name == "pageInfo":
                unknown = [item.name for item in part.fields if item.name not in info_values]
                if unknown:
                    raise UnsupportedSelection(unknown[0])
                pairs.append(
                    (part.key, _object([(item.key, info_values[item.name]) for item in part.fields]))
                )
            else:
                raise UnsupportedSelection(part.name)
        built = _object(pairs)

        # Read only what the answer refers to.
        names = {part.name for part in field.fields}
        info = {item.name for part in field.fields if part.name == "pageInfo" for item in part.fields}
        uses_counts = (
            "totalCount" in names
            or "hasNextPage" in info
            or (after is not None and "hasPreviousPage" in info)
        )
        uses_page = "edges" in names or not info.isdisjoint({"startCursor", "endCursor"})
        sources: list[str] = []
        if uses_counts:
            k = self.alias()
            remaining = f"count(*) FILTER (WHERE {k}.code > {after})" if after else "count(*)"
            sources.append(
                f"(SELECT count(*) AS total, {remaining} AS remaining "  # noqa: S608
                f"FROM {kind.table} {k} WHERE {where.format(r=k)}) AS {counts}"
            )
        if uses_page:
            q = self.alias()
            after_condition = f" AND {q}.code > {after}" if after else ""
            rows = (
                f"SELECT * FROM {kind.table} {q} WHERE {where.format(r=q)}{after_condition} "  # noqa: S608
                f"ORDER BY {q}.code LIMIT {first}"
            )
            columns = ", ".join(
                [f"min({row}.code) AS first_code", f"max({row}.code) AS last_code", *aggregates]
            )
            sources.append(f"(SELECT {columns} FROM ({rows}) AS {row}) AS {page}")  # noqa: S608
        source = f" FROM {', '.join(sources)}" if sources else ""
        return f"(SELECT {built}{source})"

    def filters(self, kind: _Kind, parent_key: str | None, args: PageArgs) -> str:
        """The rows of a list as a condition on `{r}`; `_paged_statement`'s conditions."""
        conditions = ["{r}.tenant_id = :tenant_id"]
        if parent_key is not None and kind.parent_column is not None:
            conditions.append(f"{{r}}.{kind.parent_column} = {parent_key}")
        if args.code is not None:
            conditions.append(f"{{r}}.code = {self.bind(args.code)}")
        if args.name_contains:
            escaped = args.name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(f"{{r}}.name ILIKE {self.bind(f'%{escaped}%')} ESCAPE '\\'")
        if not args.include_retired:
            conditions.append("{r}.retired_at IS NULL")
        return " AND ".join(conditions)

    def edge(self, kind: _Kind, row: str, fields: Sequence[Field]) -> str:
        pairs: list[tuple[str, str]] = []
        for field in fields:
            if field.name == "__typename":
                pairs.append((field.key, _literal(f"{kind.type_name}Edge")))
            elif field.name == "cursor":
                pairs.append((field.key, _cursor(f"{row}.code")))
            elif field.name == "node":
                pairs.append((field.key, self.node(kind, row, field.fields)))
            else:
                raise UnsupportedSelection(field.name)
        return _object(pairs)


@dataclass(frozen=True, slots=True)
class TreeStatement:
    """A statement for any tenant: the tenant is bound when it runs. Callers may cache it."""

    sql: str
    values: dict[str, Any]


def build(fields: Sequence[Field]) -> TreeStatement:
    """The statement for a plan; raises UnsupportedSelection for one it cannot build."""
    statement = _Statement()
    return TreeStatement(statement.root(fields), statement.values)


async def read_json(session: AsyncSession, statement: TreeStatement, tenant_id: int) -> str:
    """The answer as JSON text, never parsed here."""
    found = await session.scalar(text(statement.sql), {**statement.values, "tenant_id": tenant_id})
    if not isinstance(found, str):
        raise RuntimeError("the tree statement returned no JSON text")
    return found
