"""The geography benchmark: locate, bulk assignment and grid tiles, each against the bare PostGIS query.

    .venv/bin/python -m tests.bench.geography [--points N] [--locate-iterations N] [--tile-iterations N]
                                              [--output tests/bench/results.json]

A fresh database `liaison_geobench` gets the migrations and a synthetic tenant: a round synthetic city of
36 districts x 16 streets x 16 communities, each community cut into grid cells (geo.synthetic: communities
of about 0.4 km², so about 8 cells of about 0.05 km² each, the dense urban case), over 60,000 cells in
all. The seeding is timed, then everything is ANALYZEd. In the same run, with the same data:

(a) locate: one point per request (random points inside the city), POST /graphql to the real API in a
    uvicorn subprocess, against the statement that answers it (geo.assignment.COVERING_CELL) run directly
    as the app role under RLS (the API's transaction) and as the owner (no RLS);
(b) bulk assignment: N random points (1,000,000 by default; uniform in the tenant's bounding box, so about
    a fifth fall outside the round city; seeded numpy RNG; loaded with COPY into two identical tables under
    RLS) assigned by geo.bulk.assign_points as the app role under RLS (whole-tenant context, one
    transaction, batches by primary key), against the bare PostGIS statement as the owner (one UPDATE
    with a correlated ST_Covers sub-query: no RLS, no batches). Both must give every point the same cell;
(c) tiles: GET /tiles/grid/{z}/{x}/{y}.mvt with a city admin's token at z 10, 12 and 14, over the tiles
    around the city's centre (the grid is equally dense everywhere inside the city), against the
    statement of geo.tiles run directly as the owner and as the app role under RLS; the bytes must be
    identical.

Latencies are round-robin over the variants with a rotating order, after a warm-up. Ratios are p50 over
p50 (a ratio of 2 means twice as slow as the bare query); bulk ratios compare wall-clock times. There are
no targets: figures are recorded as measured. Figures go to the `geography` key of tests/bench/results.json
(other keys are kept). The exit code is non-zero only when something fails.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import numpy as np
import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deploy import migrate
from deploy.settings import Settings, load
from geo.assignment import COVERING_CELL
from geo.bulk import DEFAULT_BATCH_SIZE, AssignReport, PointsTable, assign_points, batch_statements
from geo.tiles import LAYERS, tile_parameters, tile_statement
from tenants.context import TenantContext, city_scope
from tenants.db import Database
from tenants.rls import Visibility, policy_statements
from tenants.roles import Role
from tests.bench import common

BENCH_DATABASE = "liaison_geobench"
CITY = common.City("geobench", districts=36, streets=16, stations=16, seed=1)
MIN_GRID_CELLS = 60_000
PRINCIPAL = "operator:geobench"
DEFAULT_POINTS = 1_000_000
POINTS_SEED = 20261125
LOCATE_SEED = 7
APP_TABLE, BARE_TABLE = "bench_points", "bench_points_bare"
BREAKDOWN_POINTS = 100_000
ZOOMS = (10, 12, 14)
WARMUP = 5

LOCATE_QUERY = (
    "query($lon: Float!, $lat: Float!) { locate(lon: $lon, lat: $lat) { unassigned "
    "gridCell { code } station { code } street { code } district { code } } }"
)
# Diagnostics: the cell alone (no hierarchy loaders), and the floor of a GraphQL request (no database).
LOCATE_CELL_QUERY = (
    "query($lon: Float!, $lat: Float!) { locate(lon: $lon, lat: $lat) { unassigned gridCell { code } } }"
)
FLOOR_QUERY = "{ __typename }"

# The bare bulk statement: what one would type at psql as the owner. ST_Covers alone (its support
# function adds the index condition when there is no RLS), the lowest covering cell id, as of a moment.
BARE_UPDATE = """
UPDATE {table} p SET grid_cell_id = (
  SELECT min(b.node_id) FROM boundaries b
  WHERE b.tenant_id = p.tenant_id AND b.level = 'grid' AND ST_Covers(b.geom, p.geom)
    AND b.valid_from <= %(as_of)s AND (b.valid_to IS NULL OR b.valid_to > %(as_of)s))
WHERE p.tenant_id = %(tenant_id)s
"""

# Where the time of one point goes, on the first BREAKDOWN_POINTS points, as the owner (SELECTs only).
BREAKDOWN = {
    # The GiST probe alone: every boundary (any level) whose box holds the point.
    "gist_probe_all_levels": (
        "SELECT sum(c.n) FROM {table} p CROSS JOIN LATERAL "
        "(SELECT count(*) AS n FROM boundaries b WHERE b.geom ~ p.geom) c "
        "WHERE p.tenant_id = %(tenant_id)s AND p.id <= %(limit)s"
    ),
    # The probe keeping grid cells only (the level test runs on the fetched rows).
    "gist_probe_grid_rows": (
        "SELECT sum(c.n) FROM {table} p CROSS JOIN LATERAL "
        "(SELECT count(*) AS n FROM boundaries b WHERE b.geom ~ p.geom AND b.level = 'grid') c "
        "WHERE p.tenant_id = %(tenant_id)s AND p.id <= %(limit)s"
    ),
    # The whole answer: probe, ST_Covers, lowest id.
    "covering_cell": (
        "SELECT count(c.node_id) FROM {table} p CROSS JOIN LATERAL "
        "(SELECT min(b.node_id) AS node_id FROM boundaries b WHERE b.tenant_id = p.tenant_id "
        "AND b.level = 'grid' AND ST_Covers(b.geom, p.geom) AND b.valid_to IS NULL) c "
        "WHERE p.tenant_id = %(tenant_id)s AND p.id <= %(limit)s"
    ),
}
# A what-if, measured last and dropped again: the same answer with a GiST index on grid cells only.

console = Console()
T = TypeVar("T")


# Setup.


@dataclass(frozen=True)
class Dataset:
    tenant_id: int
    shapes: dict[str, int]
    bbox: tuple[float, float, float, float]  # west, south, east, north of the tenant's districts
    seed_seconds: float
    analyze_seconds: float

    @property
    def centre(self) -> tuple[float, float]:
        west, south, east, north = self.bbox
        return (west + east) / 2, (south + north) / 2

    @property
    def radius(self) -> float:
        """The round city's radius in degrees (geo: a circle in lon/lat, see deploy.seed_shapes)."""
        west, south, east, north = self.bbox
        return min(east - west, north - south) / 2


def prepare(settings: Settings) -> Dataset:
    """Migrate, seed the synthetic tenant with shapes and grid cells (timed), ANALYZE (timed)."""
    migrate.upgrade(settings)
    started = time.perf_counter()
    seeded = common.seed_city(settings, CITY, shapes=True)
    seed_seconds = time.perf_counter() - started
    tenant_id, counts = seeded.tenant_id, seeded.shapes
    shapes = (
        {}
        if counts is None
        else {
            "districts": counts.districts,
            "streets": counts.streets,
            "stations": counts.stations,
            "grid_cells": counts.grid_cells,
        }
    )
    if shapes.get("grid_cells", 0) < MIN_GRID_CELLS:
        raise common.BenchError(
            f"the tenant has {shapes.get('grid_cells')} grid cells, fewer than {MIN_GRID_CELLS}"
        )
    analyze_seconds = common.maintain(settings, "ANALYZE")
    with psycopg.connect(common.superuser_url(settings), autocommit=True) as connection:
        row = connection.execute(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) AS e "
            "FROM boundaries WHERE tenant_id = %s AND level = 'district') x",
            (tenant_id,),
        ).fetchone()
    if row is None or row[0] is None:
        raise common.BenchError("the tenant has no district shapes")
    bbox = (float(row[0]), float(row[1]), float(row[2]), float(row[3]))
    return Dataset(tenant_id, shapes, bbox, seed_seconds, analyze_seconds)


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def psycopg_sql(statement: str) -> str:
    """SQLAlchemy's :name parameters as psycopg's %(name)s (casts such as ::text are left alone)."""
    return _NAMED.sub(r"%(\1)s", statement)


def run_in_transaction(
    connection: psycopg.Connection[Any], set_local: str | None, statement: str, params: dict[str, Any]
) -> tuple[Any, ...] | None:
    """BEGIN, SET LOCAL (the API's tenant context), one statement, COMMIT: as the API's transaction."""
    with connection.transaction():
        if set_local is not None:
            connection.execute(set_local)
        return connection.execute(statement, params).fetchone()


# Timing.


def round_robin(
    variants: dict[str, Callable[[T], Any]],
    inputs: list[T],
    iterations: int,
    unchecked: tuple[str, ...] = (),
) -> dict[str, list[float]]:
    """Iteration i runs every variant on inputs[i % len(inputs)], in an order rotated each iteration;
    all variants but the `unchecked` ones (diagnostics) must give the first one's answer. The first
    WARMUP iterations are not kept."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for iteration in range(WARMUP + iterations):
        item = inputs[iteration % len(inputs)]
        shift = iteration % len(names)
        answers: dict[str, Any] = {}
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            answers[name] = variants[name](item)
            elapsed = (time.perf_counter() - started) * 1000
            if iteration >= WARMUP:
                samples[name].append(elapsed)
        reference = answers[names[0]]
        for name, answer in answers.items():
            if name not in unchecked and answer != reference:
                raise common.BenchError(
                    f"{name} answered {answer!r:.200} where {names[0]} answered {reference!r:.200}"
                )
    return samples


def p50(timings: dict[str, dict[str, float | int]], name: str) -> float:
    return float(timings[name]["p50"])


def ratio(timings: dict[str, dict[str, float | int]], slow: str, fast: str) -> float:
    return round(p50(timings, slow) / p50(timings, fast), 3)


# (a) locate.

LocateAnswer = tuple[str, str, str, str] | None


def locate_points(dataset: Dataset, count: int) -> list[tuple[float, float]]:
    """Uniform random points of the disk of the round city (all but a sliver are covered by a cell)."""
    rng = random.Random(LOCATE_SEED)
    lon0, lat0 = dataset.centre
    radius = dataset.radius * 0.98
    points: list[tuple[float, float]] = []
    while len(points) < count:
        dx, dy = rng.uniform(-radius, radius), rng.uniform(-radius, radius)
        if dx * dx + dy * dy <= radius * radius:
            points.append((lon0 + dx, lat0 + dy))
    return points


def graphql_answer(status: int, body: bytes) -> LocateAnswer:
    if status != 200:
        raise common.BenchError(f"locate: HTTP {status}: {body[:300]!r}")
    answer = json.loads(body)
    if answer.get("errors") or answer.get("data") is None:
        raise common.BenchError(f"locate: GraphQL errors: {answer.get('errors')}")
    found = answer["data"]["locate"]
    if found["gridCell"] is None:
        return None
    return (
        found["gridCell"]["code"],
        found["station"]["code"],
        found["street"]["code"],
        found["district"]["code"],
    )


def count_locate_statements(settings: Settings, token: str, point: tuple[float, float]) -> dict[str, int]:
    """Statements one locate request runs, counted in-process on the app's engine."""
    body = json.dumps({"query": LOCATE_QUERY, "variables": {"lon": point[0], "lat": point[1]}})
    counts = common.count_request_statements(
        settings,
        token,
        {"locate": body},
        lambda _, response: graphql_answer(response.status_code, response.content),
    )
    return counts["locate"].figures()


@dataclass(frozen=True)
class Connections:
    client: httpx.Client
    base_url: str
    token: str
    app: psycopg.Connection[Any]
    owner: psycopg.Connection[Any]
    set_local: str  # the owner's (no role switch)
    app_set_local: str  # the API's: a whole-city context also switches to the tenant role


def bench_locate(c: Connections, dataset: Dataset, iterations: int) -> dict[str, Any]:
    points = locate_points(dataset, WARMUP + iterations)
    covering = psycopg_sql(COVERING_CELL)
    headers = {"authorization": f"Bearer {c.token}", "content-type": "application/json"}

    def post(query: str, variables: dict[str, Any] | None) -> httpx.Response:
        body = json.dumps({"query": query, "variables": variables or {}})
        return c.client.post(f"{c.base_url}/graphql", content=body, headers=headers)

    def graphql(point: tuple[float, float]) -> LocateAnswer:
        response = post(LOCATE_QUERY, {"lon": point[0], "lat": point[1]})
        return graphql_answer(response.status_code, response.content)

    def cell_only(point: tuple[float, float]) -> Any:
        response = post(LOCATE_CELL_QUERY, {"lon": point[0], "lat": point[1]})
        answer = response.json() if response.status_code == 200 else {}
        if answer.get("errors") or answer.get("data") is None:
            raise common.BenchError(f"locate (cell only): {response.status_code} {response.text[:300]}")
        return answer["data"]["locate"]["gridCell"]

    def floor(point: tuple[float, float]) -> Any:
        response = post(FLOOR_QUERY, None)
        if response.status_code != 200:
            raise common.BenchError(f"{{ __typename }}: HTTP {response.status_code}")
        return response.content

    def bare(connection: psycopg.Connection[Any], set_local: str) -> Callable[[tuple[float, float]], Any]:
        def run(point: tuple[float, float]) -> LocateAnswer:
            params = {
                "tenant_id": dataset.tenant_id,
                "lon": point[0],
                "lat": point[1],
                "as_of": datetime.now(UTC),
            }
            row = run_in_transaction(connection, set_local, covering, params)
            return None if row is None else (row[1], row[3], row[5], row[7])

        return run

    variants: dict[str, Callable[[tuple[float, float]], Any]] = {
        "graphql_locate": graphql,
        "sql_locate_app_rls": bare(c.app, c.app_set_local),
        "sql_locate_owner": bare(c.owner, c.set_local),
        "graphql_locate_cell_only": cell_only,
        "graphql_floor_typename": floor,
    }
    samples = round_robin(
        variants, points, iterations, ("graphql_locate_cell_only", "graphql_floor_typename")
    )
    timings = {name: common.summary(values) for name, values in samples.items()}
    covered = sum(graphql(point) is not None for point in points[:200])
    return {
        "points": len(points),
        "iterations": iterations,
        "covered_of_first_200": covered,
        "timings_ms": timings,
        "ratios": {
            "graphql_vs_sql_app_rls": ratio(timings, "graphql_locate", "sql_locate_app_rls"),
            "graphql_vs_sql_owner": ratio(timings, "graphql_locate", "sql_locate_owner"),
            "rls_overhead": ratio(timings, "sql_locate_app_rls", "sql_locate_owner"),
            "graphql_cell_only_vs_sql_app_rls": ratio(
                timings, "graphql_locate_cell_only", "sql_locate_app_rls"
            ),
        },
    }


# (c) tiles.

Tile = tuple[int, int, int]


def tile_of(lon: float, lat: float, z: int) -> Tile:
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return z, x, y


def tile_centre(tile: Tile) -> tuple[float, float]:
    z, x, y = tile
    n = 2**z
    lon = (x + 0.5) / n * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * (y + 0.5) / n))))
    return lon, lat


def dense_tiles(dataset: Dataset, z: int) -> list[Tile]:
    """The 3 x 3 tiles around the one holding the city's centre whose centres lie well inside the city."""
    lon0, lat0 = dataset.centre
    _, x0, y0 = tile_of(lon0, lat0, z)
    tiles = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            tile = (z, x0 + dx, y0 + dy)
            lon, lat = tile_centre(tile)
            if math.hypot(lon - lon0, lat - lat0) <= 0.8 * dataset.radius:
                tiles.append(tile)
    return tiles


def time_tiles(
    c: Connections,
    name: str,
    path: Callable[[Tile], str],
    statement: str,
    params: Callable[[Tile], dict[str, Any]],
    tiles: list[Tile],
    iterations: int,
) -> dict[str, Any]:
    """GET `path(tile)` with the token against `statement` run directly as the app role under RLS and as
    the owner, round-robin over `tiles` (the bytes must be identical): the timings of the variants
    http_{name}, sql_{name}_app_rls and sql_{name}_owner, and their ratios."""
    headers = {"authorization": f"Bearer {c.token}"}

    def http(tile: Tile) -> bytes:
        response = c.client.get(f"{c.base_url}{path(tile)}", headers=headers)
        if response.status_code != 200:
            raise common.BenchError(f"{name} {tile}: HTTP {response.status_code}: {response.text[:200]}")
        return response.content

    def bare(connection: psycopg.Connection[Any], set_local: str) -> Callable[[Tile], bytes]:
        def run(tile: Tile) -> bytes:
            row = run_in_transaction(connection, set_local, statement, params(tile))
            if row is None:
                raise common.BenchError(f"{name} {tile}: no row")
            return bytes(row[0] or b"")

        return run

    http_name, app_name, owner_name = f"http_{name}", f"sql_{name}_app_rls", f"sql_{name}_owner"
    variants: dict[str, Callable[[Tile], bytes]] = {
        http_name: http,
        app_name: bare(c.app, c.app_set_local),
        owner_name: bare(c.owner, c.set_local),
    }
    samples = round_robin(variants, tiles, iterations)
    timings = {variant: common.summary(values) for variant, values in samples.items()}
    return {
        "timings_ms": timings,
        "ratios": {
            "http_vs_sql_owner": ratio(timings, http_name, owner_name),
            "http_vs_sql_app_rls": ratio(timings, http_name, app_name),
            "rls_overhead": ratio(timings, app_name, owner_name),
        },
    }


def bench_tiles(c: Connections, dataset: Dataset, iterations: int) -> dict[str, Any]:
    layer = LAYERS["grid"]
    statement = psycopg_sql(tile_statement(layer).text)
    scopes = [city_scope(dataset.tenant_id)]

    def path(tile: Tile) -> str:
        z, x, y = tile
        return f"/tiles/grid/{z}/{x}/{y}.mvt"

    def params(tile: Tile) -> dict[str, Any]:
        z, x, y = tile
        return tile_parameters(layer, tenant_id=dataset.tenant_id, scopes=scopes, z=z, x=x, y=y)

    results: dict[str, Any] = {}
    for z in ZOOMS:
        tiles = dense_tiles(dataset, z)
        if not tiles:
            raise common.BenchError(f"no tile at z {z} lies inside the city")
        described = []
        for tile in tiles:
            row = run_in_transaction(c.owner, c.set_local, statement, params(tile))
            assert row is not None
            described.append(
                {"tile": list(tile), "features": int(row[1]), "truncated": bool(row[2]), "bytes": len(row[0])}
            )
        measured = time_tiles(c, f"tile_z{z}", path, statement, params, tiles, iterations)
        results[f"z{z}"] = {"tiles": described, "iterations": iterations, **measured}
    return results


# (b) bulk assignment.


def create_points_tables(owner: psycopg.Connection[Any], settings: Settings) -> None:
    """Two identical tenant-owned points tables under row-level security (the tenant's rows only)."""
    for name in (APP_TABLE, BARE_TABLE):
        owner.execute(
            f"CREATE TABLE {name} (tenant_id bigint NOT NULL, id bigint NOT NULL, "
            "geom geometry(Point,4326) NOT NULL, grid_cell_id bigint, PRIMARY KEY (tenant_id, id))"
        )
        for statement in policy_statements(
            name, Visibility.TENANT, app_role=settings.app_role, tenant_role=settings.tenant_role
        ):
            owner.execute(statement)


def load_points(owner: psycopg.Connection[Any], dataset: Dataset, count: int) -> dict[str, float]:
    """`count` uniform random points of the tenant's bounding box, COPYed into both tables."""
    started = time.perf_counter()
    rng = np.random.default_rng(POINTS_SEED)
    west, south, east, north = dataset.bbox
    lons = rng.uniform(west, east, count).tolist()
    lats = rng.uniform(south, north, count).tolist()
    tenant_id = dataset.tenant_id
    chunk = 100_000
    text_chunks = [
        "".join(
            f"{tenant_id}\t{i + 1}\tSRID=4326;POINT({lons[i]!r} {lats[i]!r})\n"
            for i in range(start, min(count, start + chunk))
        )
        for start in range(0, count, chunk)
    ]
    generated = time.perf_counter()
    copies: dict[str, float] = {}
    for name in (APP_TABLE, BARE_TABLE):
        began = time.perf_counter()
        with owner.cursor().copy(f"COPY {name} (tenant_id, id, geom) FROM STDIN") as copy:
            for text_chunk in text_chunks:
                copy.write(text_chunk)
        copies[name] = time.perf_counter() - began
        owner.execute(f"VACUUM ANALYZE {name}")
    return {
        "generate_seconds": round(generated - started, 2),
        "copy_seconds": round(copies[APP_TABLE], 2),
        "copy_points_per_second": round(count / copies[APP_TABLE]),
    }


def checkpoint(settings: Settings) -> None:
    """So that neither bulk run pays for the other's dirty pages."""
    common.maintain(settings, "CHECKPOINT")


def assign_as_app(
    settings: Settings, tenant_id: int, count: int, as_of: datetime
) -> tuple[float, AssignReport]:
    """geo.bulk.assign_points as the API would run it: the app role, a whole-tenant context, under RLS."""

    async def run() -> tuple[float, AssignReport]:
        database = Database(settings.app_url, pool_size=1)
        context = TenantContext.whole_tenant(tenant_id, PRINCIPAL)
        columns = (TextColumn("assign_points"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        try:
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("points", total=count)
                started = time.perf_counter()
                async with database.scoped(context) as session:
                    report = await assign_points(
                        session,
                        tenant_id,
                        APP_TABLE,
                        as_of=as_of,
                        batch_size=DEFAULT_BATCH_SIZE,
                        progress=lambda done: bar.advance(task, done),
                    )
                return time.perf_counter() - started, report
        finally:
            await database.dispose()

    return asyncio.run(run())


def assign_bare(owner: psycopg.Connection[Any], tenant_id: int, as_of: datetime) -> tuple[float, int]:
    statement = BARE_UPDATE.format(table=BARE_TABLE)
    started = time.perf_counter()
    with owner.transaction():
        cursor = owner.execute(statement, {"as_of": as_of, "tenant_id": tenant_id})
        updated = cursor.rowcount
    return time.perf_counter() - started, updated


def bulk_plans(c: Connections, tenant_id: int, as_of: datetime) -> dict[str, Any]:
    """Whether each bulk statement's plan probes the GiST index (EXPLAIN, not run)."""
    _, update = batch_statements(PointsTable(APP_TABLE, tenant_scoped=True))
    values = {"tenant_id": tenant_id, "as_of": as_of, "lower": 1, "upper": DEFAULT_BATCH_SIZE}
    app_plan = plan_text(c.app, c.app_set_local + "; SET LOCAL jit = off", psycopg_sql(update), values)
    bare_plan = plan_text(c.owner, None, BARE_UPDATE.format(table=BARE_TABLE), values)
    return {
        "assign_points_batch_uses_gist": "ix_boundaries_" in app_plan and "geom" in app_plan,
        "bare_update_uses_gist": "ix_boundaries_" in bare_plan and "geom" in bare_plan,
    }


def plan_text(
    connection: psycopg.Connection[Any], set_local: str | None, statement: str, params: dict[str, Any]
) -> str:
    """The plan (EXPLAIN, not run) in a transaction that is rolled back."""
    lines: list[str] = []
    with connection.transaction():
        if set_local is not None:
            connection.execute(set_local)
        lines = [str(row[0]) for row in connection.execute("EXPLAIN " + statement, params)]
        raise psycopg.Rollback()
    return "\n".join(lines)


def breakdown(
    owner: psycopg.Connection[Any], settings: Settings, tenant_id: int, count: int
) -> dict[str, Any]:
    """Microseconds per point of the parts of the work, on the first `count` points, as the owner."""
    params = {"tenant_id": tenant_id, "limit": count}
    found: dict[str, Any] = {}

    def measure(name: str, statement: str) -> float:
        started = time.perf_counter()
        row = owner.execute(statement.format(table=BARE_TABLE), params).fetchone()
        elapsed = time.perf_counter() - started
        found[name] = {
            "us_per_point": round(elapsed / count * 1e6, 1),
            "result": int(row[0]) if row else None,
        }
        return elapsed

    owner.execute("SET jit = off")
    for name, statement in BREAKDOWN.items():
        measure(name, statement)
    found["gist_candidates_per_point"] = round(found["gist_probe_all_levels"]["result"] / count, 2)
    found["grid_candidates_per_point"] = round(found["gist_probe_grid_rows"]["result"] / count, 2)
    owner.execute("RESET jit")
    found["points"] = count
    return found


def bench_bulk(c: Connections, settings: Settings, dataset: Dataset, count: int) -> dict[str, Any]:
    tenant_id = dataset.tenant_id
    create_points_tables(c.owner, settings)
    console.log(f"loading {count:,} points with COPY")
    loading = load_points(c.owner, dataset, count)
    as_of = datetime.now(UTC)
    plans = bulk_plans(c, tenant_id, as_of)

    checkpoint(settings)
    console.log("geo.bulk.assign_points as the app role under RLS")
    app_seconds, report = assign_as_app(settings, tenant_id, count, as_of)
    checkpoint(settings)
    console.log("the bare UPDATE as the owner")
    bare_seconds, updated = assign_bare(c.owner, tenant_id, as_of)

    differ = c.owner.execute(
        f"SELECT count(*) FROM {APP_TABLE} a JOIN {BARE_TABLE} b USING (tenant_id, id) "
        "WHERE a.grid_cell_id IS DISTINCT FROM b.grid_cell_id"
    ).fetchone()
    if differ is None or differ[0] != 0:
        raise common.BenchError(f"assign_points and the bare UPDATE disagree on {differ} points")
    if report.points != count or updated != count:
        raise common.BenchError(f"{report.points} points assigned and {updated} updated, expected {count}")
    console.log(f"where the time goes, on {min(count, BREAKDOWN_POINTS):,} points")
    parts = breakdown(c.owner, settings, tenant_id, min(count, BREAKDOWN_POINTS))
    return {
        "points": count,
        "note": None if count == DEFAULT_POINTS else f"measured on {count:,} points, not 1,000,000",
        "assigned": report.assigned,
        "unassigned": report.unassigned,
        "agree_point_for_point": True,
        "load": loading,
        "assign_points_app_rls": {
            "seconds": round(app_seconds, 2),
            "points_per_second": round(count / app_seconds),
            "batch_size": DEFAULT_BATCH_SIZE,
            "batches": report.batches,
            "rows_written": report.changed,
        },
        "bare_update_owner": {
            "seconds": round(bare_seconds, 2),
            "points_per_second": round(count / bare_seconds),
            "rows_written": updated,
        },
        "ratio_time_vs_bare": round(app_seconds / bare_seconds, 3),
        "plans": plans,
        "breakdown": parts,
    }


# The whole run.


def postgres_facts(connection: psycopg.Connection[Any]) -> dict[str, Any]:
    names = ("shared_buffers", "work_mem", "jit", "max_parallel_workers_per_gather", "synchronous_commit")
    rows = connection.execute(
        "SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name", (list(names),)
    ).fetchall()
    version = connection.execute("SELECT postgis_lib_version(), postgis_geos_version()").fetchone()
    return {
        "postgresql": common.server_version(connection),
        "postgis": version[0] if version else "unknown",
        "geos": version[1] if version else "unknown",
        "settings": {str(name): str(value) for name, value in rows},
    }


def run(points: int, locate_iterations: int, tile_iterations: int) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    load_before = os.getloadavg()
    with common.bench_database(load(), BENCH_DATABASE) as settings:
        console.log("migrating and seeding the synthetic tenant (shapes and grid cells)")
        dataset = prepare(settings)
        console.log(f"{dataset.shapes['grid_cells']:,} grid cells seeded in {dataset.seed_seconds:.1f} s")
        token = common.issue_token(
            settings, CITY.tenant, PRINCIPAL, [city_scope(dataset.tenant_id)], Role.CITY_ADMIN
        )
        centre = dataset.centre
        statements = count_locate_statements(settings, token, centre)
        context = TenantContext.whole_tenant(dataset.tenant_id, PRINCIPAL)
        with (
            httpx.Client(timeout=120) as client,
            psycopg.connect(settings.app_url, autocommit=True) as app,
            psycopg.connect(settings.owner_url, autocommit=True) as owner,
        ):
            facts = postgres_facts(owner)
            with common.api_server(settings) as base_url:
                c = Connections(
                    client,
                    base_url,
                    token,
                    app,
                    owner,
                    context.set_local_statement(),
                    context.set_local_statement(settings.tenant_role),
                )
                console.log("locate: GraphQL against COVERING_CELL")
                located = bench_locate(c, dataset, locate_iterations)
                located["statements_per_request"] = statements
                console.log("tiles: HTTP against the ST_AsMVT statement")
                tiles = bench_tiles(c, dataset, tile_iterations)
            bulk = bench_bulk(c, settings, dataset, points)
    summary_ratios: dict[str, float] = {
        "locate_graphql_vs_sql_app_rls": located["ratios"]["graphql_vs_sql_app_rls"],
        "locate_graphql_vs_sql_owner": located["ratios"]["graphql_vs_sql_owner"],
        "bulk_assign_points_vs_bare_update_time": bulk["ratio_time_vs_bare"],
    }
    for zoom, figures in tiles.items():
        summary_ratios[f"tile_{zoom}_http_vs_sql_owner"] = figures["ratios"]["http_vs_sql_owner"]
    return {
        "date": started_at.isoformat(timespec="seconds"),
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": common.machine(load_before, facts),
        "dataset": {
            **CITY.dataset(),
            "shapes": dataset.shapes,
            "bbox": [round(value, 6) for value in dataset.bbox],
            "seeding_seconds": round(dataset.seed_seconds, 1),
            "analyze_seconds": round(dataset.analyze_seconds, 1),
        },
        "method": {
            "latency": (
                f"warm-up {WARMUP} iterations, then round-robin over the variants with a rotating order; "
                "HTTP over loopback to a uvicorn subprocess with a keep-alive client, body read in full; "
                "SQL: psycopg 3 connections kept open, BEGIN, SET LOCAL of the tenant context (the app role "
                "also switches to the tenant role, as the API does), one statement, COMMIT; ratios use p50"
            ),
            "locate": "one random point of the city per iteration; every variant must return the same codes",
            "tiles": "the tiles around the city's centre in turn; HTTP and SQL bytes must be identical",
            "bulk": (
                "both tables start with grid_cell_id NULL; CHECKPOINT before each run; assign_points in one "
                "transaction including its COMMIT; the bare UPDATE in one transaction as the owner "
                "(BYPASSRLS); afterwards both tables must agree on every point"
            ),
        },
        "locate": located,
        "tiles": tiles,
        "bulk": bulk,
        "ratios": summary_ratios,
    }


def print_figures(figures: dict[str, Any], out: Console) -> None:
    groups = [figures["locate"]["timings_ms"], *(zoom["timings_ms"] for zoom in figures["tiles"].values())]
    out.print(common.timings_table("geography benchmark: latencies (ms)", groups))

    ratios = common.table("ratios (p50 over p50; bulk: wall-clock time)", "ratio", "value")
    for name, value in figures["locate"]["ratios"].items():
        ratios.add_row(f"locate {name}", f"{value:.3f}")
    for zoom, tile in figures["tiles"].items():
        for name, value in tile["ratios"].items():
            ratios.add_row(f"tile {zoom} {name}", f"{value:.3f}")
    ratios.add_row("bulk assign_points vs bare UPDATE", f"{figures['bulk']['ratio_time_vs_bare']:.3f}")
    out.print(ratios)

    bulk = figures["bulk"]
    rows = common.table(f"bulk assignment of {bulk['points']:,} points", "variant", "seconds", "points/s")
    for name in ("assign_points_app_rls", "bare_update_owner"):
        rows.add_row(name, f"{bulk[name]['seconds']:.1f}", f"{bulk[name]['points_per_second']:,}")
    out.print(rows)
    parts = bulk["breakdown"]
    where = common.table(
        f"where a point's time goes (first {parts['points']:,} points, owner)", "part", "µs/point"
    )
    for name, value in parts.items():
        if isinstance(value, dict):
            where.add_row(name, f"{value['us_per_point']:.1f}")
    out.print(where)

    tiles = common.table("tiles measured", "zoom", "tiles", "features (min–max)", "truncated", "bytes (max)")
    for zoom, tile in figures["tiles"].items():
        described = tile["tiles"]
        features = [item["features"] for item in described]
        tiles.add_row(
            zoom,
            str(len(described)),
            f"{min(features)}–{max(features)}",
            str(sum(item["truncated"] for item in described)),
            str(max(item["bytes"] for item in described)),
        )
    out.print(tiles)
    dataset, machine = figures["dataset"], figures["machine"]
    out.print(
        f"{dataset['shapes']['grid_cells']:,} grid cells in {dataset['shapes']['stations']:,} communities, "
        f"seeded in {dataset['seeding_seconds']} s (ANALYZE {dataset['analyze_seconds']} s); "
        f"{bulk['assigned']:,} points assigned, {bulk['unassigned']:,} outside every cell; "
        f"locate: {figures['locate']['statements_per_request']['total']} statements per request"
    )
    out.print(
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), PostgreSQL {machine['postgresql']}, "
        f"PostGIS {machine['postgis']}, GEOS {machine['geos']}, load {machine['load_average_before']} → "
        f"{machine['load_average_after']}, {figures['date']}, {figures['total_seconds']} s in all"
    )


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser("geography", "The geography benchmark.")
    parser.add_argument("--points", type=int, default=DEFAULT_POINTS, help="points of the bulk assignment")
    parser.add_argument("--locate-iterations", type=int, default=300, help="timed locate iterations")
    parser.add_argument("--tile-iterations", type=int, default=45, help="timed iterations per zoom")
    args = parser.parse_args(argv)
    for name in ("points", "locate_iterations", "tile_iterations"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return common.measure_and_record(
        lambda: run(args.points, args.locate_iterations, args.tile_iterations),
        args.output,
        "geography",
        print_figures,
    )


if __name__ == "__main__":
    sys.exit(main())
