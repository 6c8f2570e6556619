"""Bulk (re)assignment of points to grid cells in set-based SQL, for after a boundary changes.

`assign_points` walks a points table in batches by primary key and, per batch, runs ONE UPDATE that sets
every point's `grid_cell_id` to the lowest covering cell id valid at `as_of` (the same answer as
`geo.assignment.locate` gives for one point: `ST_Covers`, so edges and corners belong to a cell, lowest id
on ties), or to NULL where no cell covers the point. It runs inside the caller's tenant-scoped transaction,
so row-level security applies to the cells and to the points table alike; it never commits.

How the SQL is shaped, and why:

- The cells are found per point by a LATERAL sub-query driven by the GiST index `ix_boundaries_geom`.
  The box test is spelled out (`b.geom ~ p.geom`): under row-level security only a LEAKPROOF operator may
  become an index condition, and the migration marks the box operators so while `ST_Covers` is not one
  (see geo/assignment.py). The sub-query is fenced (`OFFSET 0`) so `min(node_id)` is an aggregate over the
  few covering cells, not the planner's "min/max" rewrite into a walk of the tenant's cells in id order.
- A batch is a primary-key range: one small SELECT finds its upper bound, then the UPDATE reads the range,
  places its points and writes only the rows whose cell changed (after a boundary is redrawn most points
  keep theirs: no dead rows, no WAL for them). A point whose geometry changed under us since the batch was
  read is left alone; whoever moved it assigns it.
- Points tables: `id` (bigint, unique), `geom` (`geometry(Point,4326)`), `grid_cell_id` (bigint), and
  optionally `tenant_id` (then `(tenant_id, id)` is the key and only the tenant's rows are touched). The
  table name is a validated plain identifier and its columns are checked in the catalogue before any SQL
  is built from it; every value is bound.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

Progress = Callable[[int], None]

DEFAULT_BATCH_SIZE = 10_000
MAX_BATCH_SIZE = 1_000_000
TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
POINT_TYPE = "geometry(Point,4326)"
ID_TYPES = ("bigint", "integer")


class BadPointsTable(ValueError):
    """A table that cannot be assigned: a bad name, no such table, or missing or mistyped columns."""


@dataclass
class AssignReport:
    points: int = 0  # rows visited
    assigned: int = 0  # rows covered by a cell
    changed: int = 0  # rows whose grid_cell_id was written
    batches: int = 0

    @property
    def unassigned(self) -> int:
        return self.points - self.assigned


@dataclass(frozen=True, slots=True)
class PointsTable:
    """A points table checked in the catalogue (see `points_table`)."""

    name: str
    tenant_scoped: bool


# The catalogue: the relation's columns and types, and whether a unique index is exactly (id) or
# (tenant_id, id).
_COLUMNS = text(
    """
    SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS type
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    WHERE a.attrelid = to_regclass(:name) AND a.attnum > 0 AND NOT a.attisdropped
      AND c.relkind IN ('r', 'p')
    """
)
_UNIQUE_KEYS = text(
    """
    SELECT array_agg(a.attname::text ORDER BY a.attname) AS columns
    FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indrelid = to_regclass(:name) AND i.indisunique AND i.indpred IS NULL
    GROUP BY i.indexrelid
    """
)


async def points_table(session: AsyncSession, table: str) -> PointsTable:
    """Check that `table` is a points table the session can see; raises BadPointsTable if not."""
    if not isinstance(table, str) or not TABLE_NAME.fullmatch(table):
        raise BadPointsTable(f"{table!r} is not a plain lower-case table name")
    columns = {str(row.name): str(row.type) for row in await session.execute(_COLUMNS, {"name": table})}
    if not columns:
        raise BadPointsTable(f"no table {table!r} is visible here")
    wanted = {"id": ID_TYPES, "geom": (POINT_TYPE,), "grid_cell_id": ("bigint",)}
    for column, types in wanted.items():
        if columns.get(column) not in types:
            found = columns.get(column, "missing")
            raise BadPointsTable(f"{table}.{column} must be {' or '.join(types)}, not {found}")
    tenant_scoped = "tenant_id" in columns
    if tenant_scoped and columns["tenant_id"] != "bigint":
        raise BadPointsTable(f"{table}.tenant_id must be bigint, not {columns['tenant_id']}")
    keys = {tuple(row.columns) for row in await session.execute(_UNIQUE_KEYS, {"name": table})}
    key = ("id", "tenant_id") if tenant_scoped else ("id",)
    if key not in keys and ("id",) not in keys:
        raise BadPointsTable(f"{table} needs a primary key or unique index on ({', '.join(sorted(key))})")
    return PointsTable(table, tenant_scoped)


# The cell of a point: the lowest id among the grid cells covering it, valid at :as_of; NULL if none.
_CELL_OF = """
SELECT min(covering.node_id) AS node_id FROM (
  SELECT b.node_id FROM boundaries b
  WHERE b.tenant_id = :tenant_id AND b.level = 'grid'
    AND b.geom ~ {point} AND ST_Covers(b.geom, {point})
    AND b.valid_from <= :as_of AND (b.valid_to IS NULL OR b.valid_to > :as_of)
  OFFSET 0
) covering
"""


# The planner prices ST_Covers high, so a batch's estimated cost crosses jit_above_cost and PostgreSQL
# spends about 0.3 s per batch compiling expressions that then save nothing (the time goes to GEOS and
# the index). JIT is switched off for the batches, transaction-locally, and the caller's value restored
# afterwards (after an error the transaction is rolled back, and the setting with it).
_JIT = text("SELECT current_setting('jit')")
_SET_JIT = text("SELECT set_config('jit', :jit, true)")


def batch_statements(table: PointsTable) -> tuple[str, str]:
    """The SQL of one batch: its upper bound (`:lower` and `:batch_size` given), then its UPDATE (`:lower`
    and `:upper`), both with `:tenant_id` and `:as_of`. The name was checked by `points_table`."""
    name = f'"{table.name}"'

    def rows(alias: str) -> str:
        mine = f"{alias}.tenant_id = :tenant_id AND " if table.tenant_scoped else ""
        return f"{mine}{alias}.id >= :lower"

    bound = (
        f"SELECT max(id) FROM (SELECT q.id FROM {name} q "  # noqa: S608 (a checked identifier)
        f"WHERE {rows('q')} ORDER BY q.id LIMIT :batch_size) batch"
    )
    cell_of = _CELL_OF.format(point="q.geom")
    update = f"""
WITH placed AS MATERIALIZED (
  SELECT q.id, q.geom, cell.node_id
  FROM {name} q CROSS JOIN LATERAL ({cell_of}) cell
  WHERE {rows("q")} AND q.id <= :upper
),
changed AS (
  UPDATE {name} p SET grid_cell_id = placed.node_id
  FROM placed
  WHERE {rows("p")} AND p.id <= :upper AND p.id = placed.id
    AND p.geom IS NOT DISTINCT FROM placed.geom
    AND p.grid_cell_id IS DISTINCT FROM placed.node_id
  RETURNING p.id
)
SELECT count(*) AS points, count(node_id) AS assigned, (SELECT count(*) FROM changed) AS changed
FROM placed
"""  # noqa: S608 (a checked identifier; every value is bound)
    return bound, update


async def assign_points(
    session: AsyncSession,
    tenant_id: int,
    table: str,
    *,
    as_of: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> AssignReport:
    """Set `grid_cell_id` of every point of `table` (the tenant's, if it has `tenant_id`) to its grid cell
    as the boundaries were at `as_of` (now if None), NULL where no cell covers it.

    Runs in the session's transaction (tenant-scoped by the caller, so row-level security applies) and
    does not commit. `progress` is called after each batch with the number of points it handled."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 0 < batch_size <= MAX_BATCH_SIZE
    ):
        raise ValueError(f"batch_size must be an integer in 1..{MAX_BATCH_SIZE}, not {batch_size!r}")
    when = as_of if as_of is not None else datetime.now(UTC)
    if when.tzinfo is None:
        raise ValueError("as_of needs a time zone")
    checked = await points_table(session, table)
    bound_sql, update_sql = batch_statements(checked)
    values: dict[str, Any] = {"tenant_id": tenant_id, "as_of": when, "batch_size": batch_size}
    jit = await session.scalar(_JIT)
    await session.execute(_SET_JIT, {"jit": "off"})
    report = await _run_batches(session, text(bound_sql), text(update_sql), values, progress)
    await session.execute(_SET_JIT, {"jit": jit})
    return report


async def _run_batches(
    session: AsyncSession,
    bound: TextClause,
    update: TextClause,
    values: dict[str, Any],
    progress: Progress | None,
) -> AssignReport:
    report = AssignReport()
    lower = -(2**63)  # every bigint: ids may be zero or negative
    while True:
        upper = await session.scalar(bound, {**values, "lower": lower})
        if upper is None:
            return report
        row = (await session.execute(update, {**values, "lower": lower, "upper": upper})).one()
        report.points += int(row.points)
        report.assigned += int(row.assigned)
        report.changed += int(row.changed)
        report.batches += 1
        if progress is not None:
            progress(int(row.points))
        if upper >= 2**63 - 1:
            return report
        lower = int(upper) + 1
