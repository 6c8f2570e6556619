"""Synthetic requests for benchmarks and demos: N work orders inside a tenant's grid cells, set-based.

The rows are made by PostgreSQL (INSERT ... SELECT over generate_series), in one whole-tenant transaction
under row-level security, in batches so progress can be shown:

- locations: `POINTS_PER_CELL` random points inside every current grid cell (ST_GeneratePoints, seeded),
  whose H3 cells (resolution 12) are computed in Python once per point (the database has no h3
  extension); each request takes one of them, skewed towards the first cells so the map has hot spots;
- rows are submitted in time order (uniform over the last `days`, as a real table fills up);
- every other column is drawn from a seeded hash of the row number (hashint8extended), so the same seed
  gives the same rows: category (weighted), channel, state (by age), resolution time, rating (out of 100,
  on rated closed requests), overdue, supervision colour.

Tickets are `S<seed>-<n>`, numbered after the synthetic requests already there, so running it again adds
`count` more rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import h3
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.requests.catalog import ensure_defaults
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database

POINTS_PER_CELL = 4
BATCH_SIZE = 100_000
H3_RESOLUTION = 12
# Weights of the default categories (codes not listed weigh 1).
CATEGORY_WEIGHTS = {
    "environment": 9,
    "property_housing": 8,
    "parking": 7,
    "elderly_care": 5,
    "safety": 4,
    "disputes": 4,
    "public_toilets": 3,
    "health_care": 3,
    "ev_charging": 2,
    "childcare_education": 2,
    "employment": 1,
    "culture": 1,
}

Progress = Callable[[int], None]


class NoGridCells(ValueError):
    """The tenant has no current grid cell to put requests in."""


@dataclass(frozen=True)
class SeedRequestsReport:
    tenant_id: int
    inserted: int
    points: int
    seconds: float


_POINTS = """
SELECT b.node_id, ST_X(p.geom) AS lon, ST_Y(p.geom) AS lat
FROM boundaries b
CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(b.geom, CAST(:per_cell AS integer), CAST(:seed AS integer))) p
WHERE b.tenant_id = :tenant_id AND b.level = 'grid' AND b.valid_to IS NULL
ORDER BY b.node_id, p.path
"""

# The cells with their station, street and district (a request's scope is its station's path).
_CELLS = """
CREATE TEMP TABLE seed_cells ON COMMIT DROP AS
SELECT g.id AS grid_cell_id, t.id AS station_id, s.id AS street_id, s.district_id, t.scope
FROM grid_cells g
JOIN stations t ON t.tenant_id = g.tenant_id AND t.id = g.station_id
JOIN streets s ON s.tenant_id = t.tenant_id AND s.id = t.street_id
WHERE g.tenant_id = :tenant_id
"""

_POINT_TABLE = """
CREATE TEMP TABLE seed_points ON COMMIT DROP AS
SELECT u.n - 1 AS n, u.grid_cell_id, ST_SetSRID(ST_MakePoint(u.lon, u.lat), 4326) AS geom, u.h3 AS h3_cell
FROM unnest(CAST(:cells AS bigint[]), CAST(:lons AS float8[]), CAST(:lats AS float8[]),
            CAST(:h3 AS bigint[])) WITH ORDINALITY AS u(grid_cell_id, lon, lat, h3, n)
"""

# u(k): a uniform number in [0, 1) drawn from the row number g and salt k.
_U = "((hashint8extended(g, CAST(:seed AS bigint) * 16 + {k}) & 2147483647)::float8 / 2147483648.0)"

_INSERT = f"""
INSERT INTO requests (tenant_id, ticket, scope, category_id, description, channel, geom, h3_cell,
  grid_cell_id, station_id, street_id, district_id, state, level, responsible, supervision,
  submitted_at, response_due_at, resolution_due_at, responded_at, resolved_at, closed_at, overdue,
  rating, solved, updated_at)
SELECT :tenant_id, 'S' || CAST(:seed AS bigint) || '-' || (CAST(:offset AS bigint) + g), c.scope,
  x.category_id, 'synthetic request ' || (CAST(:offset AS bigint) + g), x.channel, p.geom, p.h3_cell,
  c.grid_cell_id, c.station_id, c.street_id, c.district_id, x.state, 0, 'station',
  CASE WHEN x.open AND x.due < CAST(:now AS timestamptz) THEN 'red'
       WHEN x.open AND x.u_supervision < 0.05 THEN 'yellow'
       WHEN x.open AND x.due < CAST(:now AS timestamptz) + interval '2 days' THEN 'blue'
       ELSE 'none' END,
  x.submitted_at, x.submitted_at + interval '1 day', x.due,
  CASE WHEN x.state <> 'submitted' THEN x.submitted_at + interval '3 hours' END,
  x.resolved_at,
  CASE WHEN x.state = 'closed' THEN x.resolved_at + interval '2 days' END,
  CASE WHEN x.open THEN x.due < CAST(:now AS timestamptz) ELSE coalesce(x.resolved_at > x.due, false) END,
  x.rating,
  CASE WHEN x.rating IS NOT NULL THEN x.rating >= 60 OR x.u_rating < 0.05 END,
  x.submitted_at
FROM (
  SELECT y.*,
    y.submitted_at + make_interval(days => y.resolution_days * 7 / 5) AS due,
    y.state NOT IN ('resolved', 'closed', 'rejected', 'merged') AS open,
    CASE WHEN y.state IN ('resolved', 'closed')
         THEN y.submitted_at + make_interval(secs => y.u_duration * y.resolution_days * 2 * 86400) END
      AS resolved_at,
    CASE WHEN y.state = 'closed' AND y.u_rated < 0.8 THEN
      CASE WHEN y.u_rating < 0.45 THEN 100 WHEN y.u_rating < 0.7 THEN 85 WHEN y.u_rating < 0.85 THEN 70
           WHEN y.u_rating < 0.93 THEN 40 ELSE 20 END END AS rating
  FROM (
    SELECT z.*,
      CAST(:now AS timestamptz) - make_interval(secs => z.age_days * 86400) AS submitted_at,
      (CAST(:category_ids AS bigint[]))[1 + floor(z.u_category * :categories)::int] AS category_id,
      (CAST(:resolution_days AS int[]))[1 + floor(z.u_category * :categories)::int] AS resolution_days,
      (ARRAY['app', 'app', 'app', 'app', 'hotline', 'hotline', 'hotline', 'wechat', 'wechat',
             'visit', 'open311'])[1 + floor(z.u_channel * 11)::int] AS channel,
      CASE WHEN z.age_days < 1
           THEN (ARRAY['submitted', 'accepted', 'assigned'])[1 + floor(z.u_state * 3)::int]
           WHEN z.age_days < 10 THEN (ARRAY['accepted', 'assigned', 'in_progress', 'in_progress', 'resolved',
             'closed', 'closed', 'returned'])[1 + floor(z.u_state * 8)::int]
           ELSE (ARRAY['closed', 'closed', 'closed', 'closed', 'closed', 'closed', 'closed', 'closed',
             'closed', 'closed', 'closed', 'closed', 'resolved', 'in_progress', 'reopened', 'rejected',
             'merged', 'assigned'])[1 + floor(z.u_state * 18)::int] END AS state
    FROM (
      SELECT g,
        {_U.format(k=1)} AS u_point, {_U.format(k=2)} AS u_category, {_U.format(k=3)} AS u_channel,
        {_U.format(k=5)} AS u_state, {_U.format(k=6)} AS u_duration, {_U.format(k=7)} AS u_rated,
        {_U.format(k=8)} AS u_rating, {_U.format(k=9)} AS u_supervision,
        (1 - (g - 1 + {_U.format(k=4)}) / CAST(:count AS float8)) * :days AS age_days
      FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
    ) z
  ) y
) x
JOIN seed_points p ON p.n = floor(CAST(:points AS bigint) * power(x.u_point, 1.3))::bigint
JOIN seed_cells c ON c.grid_cell_id = p.grid_cell_id
"""  # noqa: S608 (fixed fragments; values are bound)


async def _categories(session: AsyncSession, tenant_id: int) -> tuple[list[int], list[int]]:
    """Category ids repeated by weight, and their resolution days alongside."""
    rows = await session.execute(
        text(
            "SELECT id, code, resolution_days FROM request_categories "
            "WHERE tenant_id = :tenant_id AND retired_at IS NULL ORDER BY code"
        ),
        {"tenant_id": tenant_id},
    )
    ids: list[int] = []
    days: list[int] = []
    for category_id, code, resolution_days in rows:
        weight = CATEGORY_WEIGHTS.get(code, 1)
        ids += [int(category_id)] * weight
        days += [int(resolution_days)] * weight
    return ids, days


async def seed_synthetic_requests(
    database: Database,
    tenant_code: str,
    count: int,
    days: int = 365,
    seed: int = 1,
    *,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> SeedRequestsReport:
    """Add `count` synthetic requests to the tenant, submitted over the `days` before `now`."""
    if count < 1 or days < 1 or batch_size < 1:
        raise ValueError("count, days and batch size must be at least 1")
    tenant_id = await database.tenant_id_for(tenant_code)
    if tenant_id is None:
        raise ValueError(f"tenant {tenant_code!r} does not exist")
    moment = now or datetime.now(UTC)
    started = time.perf_counter()
    context = TenantContext.whole_tenant(tenant_id, "system:seed")
    async with unit_of_work(database, context) as session:
        await ensure_defaults(session, tenant_id)
        category_ids, resolution_days = await _categories(session, tenant_id)
        values = {"tenant_id": tenant_id, "per_cell": POINTS_PER_CELL, "seed": seed}
        points = (await session.execute(text(_POINTS), values)).all()
        if not points:
            raise NoGridCells(f"tenant {tenant_code!r} has no grid cells to put requests in")
        cells = [int(row[0]) for row in points]
        lons = [float(row[1]) for row in points]
        lats = [float(row[2]) for row in points]
        cells_h3 = [
            int(h3.latlng_to_cell(lat, lon, H3_RESOLUTION), 16) for lon, lat in zip(lons, lats, strict=True)
        ]
        await session.execute(text(_CELLS), {"tenant_id": tenant_id})
        await session.execute(
            text(_POINT_TABLE), {"cells": cells, "lons": lons, "lats": lats, "h3": cells_h3}
        )
        await session.execute(text("CREATE INDEX ON seed_points (n)"))
        await session.execute(text("CREATE INDEX ON seed_cells (grid_cell_id)"))
        await session.execute(text("ANALYZE seed_points"))
        await session.execute(text("ANALYZE seed_cells"))
        offset = await session.scalar(
            text("SELECT count(*) FROM requests WHERE tenant_id = :tenant_id AND ticket LIKE :prefix"),
            {"tenant_id": tenant_id, "prefix": f"S{seed}-%"},
        )
        inserted = 0
        statement = text(_INSERT)
        for first in range(1, count + 1, batch_size):
            last = min(count, first + batch_size - 1)
            result = await session.execute(
                statement,
                {
                    "tenant_id": tenant_id,
                    "seed": seed,
                    "offset": int(offset or 0),
                    "now": moment,
                    "days": days,
                    "first": first,
                    "count": count,
                    "last": last,
                    "points": len(points),
                    "category_ids": category_ids,
                    "resolution_days": resolution_days,
                    "categories": len(category_ids),
                },
            )
            done = int(result.rowcount)  # type: ignore[attr-defined]
            inserted += done
            if progress is not None:
                progress(done)
    return SeedRequestsReport(tenant_id, inserted, len(points), time.perf_counter() - started)
