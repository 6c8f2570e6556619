"""The heat-map benchmark: heatmap over GraphQL and the heat tile over HTTP against their bare SQL.

    .venv/bin/python -m tests.bench.heat [--iterations N] [--tile-iterations N] [--output ...]

The database `liaison_heatbench` is kept between runs: the first run migrates it, seeds the geography
benchmark's synthetic city (36 districts x 16 streets x 16 communities, 66,812 grid cells) and 1,000,000
requests over 365 days (deploy.seed_requests, as the app role under RLS), then VACUUM ANALYZE; later runs
reuse it. In the same run, with the same data:

(a) heatmap: one district over the last 90 days, per grid cell and per H3 hexagon (resolution 9), as
    POST /graphql to the real API in a uvicorn subprocess with a district-staff token, against the
    statement geo.heat runs, run directly as the app role in the same district context (RLS) and as
    the owner (no RLS). Answers must agree (the GraphQL features equal the SQL's);
(b) rollup: a daily per-cell table (day, cell, category, state: counts and rating sums) built as the
    owner, and the same district's grid heat map over the same 90 whole days aggregated from it, against
    the plain statement over the same days (both as the owner);
(c) heat tiles at z 12 around the district's centre: GET /tiles/heat/... against the tile statement
    run directly (app role under RLS, owner); the bytes must be identical.

Latencies are round-robin over the variants with a rotating order after a warm-up (the geography
benchmark's `round_robin`); ratios are p50 over p50. Figures go to the `heat` key of
tests/bench/results.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deploy import migrate
from deploy.seed_requests import seed_synthetic_requests
from deploy.settings import Settings, load
from geo import heat
from geo.tiles import heat_tile_parameters, heat_tile_statement
from schema.relay import encode_id
from tenants.context import TenantContext
from tenants.db import Database
from tenants.roles import Role
from tests.bench import common, geography
from tests.bench.geography import (
    Connections,
    Tile,
    postgres_facts,
    psycopg_sql,
    round_robin,
    run_in_transaction,
    tile_of,
    time_tiles,
)

BENCH_DATABASE = "liaison_heatbench"
CITY = geography.CITY
REQUESTS = 1_000_000
DAYS = 365
REQUESTS_SEED = 1
PRINCIPAL = "operator:heatbench"
WINDOW_DAYS = 90
H3_RESOLUTION = 9
TILE_ZOOM = 12
console = Console()


def database_exists(settings: Settings) -> bool:
    with psycopg.connect(
        common.with_database(settings.database_url, "postgres"), autocommit=True
    ) as connection:
        row = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DATABASE,)).fetchone()
    return row is not None


def prepare(base: Settings) -> dict[str, Any]:
    settings = common.bench_settings(base, BENCH_DATABASE)
    if not database_exists(base):
        common.admin_execute(base, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DATABASE)))
    migrate.upgrade(settings)
    owner_url = common.superuser_url(settings)
    with psycopg.connect(owner_url, autocommit=True) as connection:
        row = connection.execute("SELECT tenant_id FROM cities WHERE code = %s", (CITY.tenant,)).fetchone()
    facts: dict[str, Any] = {}
    if row is None:
        console.log("seeding the synthetic city (the geography benchmark's)")
        started = time.perf_counter()
        tenant_id = common.seed_city(settings, CITY, shapes=True).tenant_id
        facts["city_seconds"] = round(time.perf_counter() - started, 1)
    else:
        tenant_id = int(row[0])
    with psycopg.connect(owner_url, autocommit=True) as connection:
        found = connection.execute(
            "SELECT count(*) FROM requests WHERE tenant_id = %s", (tenant_id,)
        ).fetchone()
    have = int(found[0]) if found else 0
    if have < REQUESTS:
        console.log(f"seeding {REQUESTS - have:,} requests")

        async def seed() -> float:
            database = Database(settings.app_url, pool_size=1)
            columns = (TextColumn("requests"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            try:
                with Progress(*columns, console=console, transient=True) as bar:
                    task = bar.add_task("requests", total=REQUESTS - have)
                    report = await seed_synthetic_requests(
                        database,
                        CITY.tenant,
                        REQUESTS - have,
                        DAYS,
                        REQUESTS_SEED,
                        progress=lambda done: bar.advance(task, done),
                    )
                return report.seconds
            finally:
                await database.dispose()

        facts["requests_seconds"] = round(asyncio.run(seed()), 1)
        facts["analyze_seconds"] = round(common.maintain(settings, "VACUUM ANALYZE requests"), 1)
    facts["tenant_id"] = tenant_id
    return facts


# The district and the window.


def one_row(connection: psycopg.Connection[Any], statement: str, *params: Any) -> tuple[Any, ...]:
    """The one row `statement` selects."""
    row: tuple[Any, ...] | None = connection.execute(statement, params).fetchone()
    if row is None:
        raise common.BenchError(f"no row: {statement}")
    return row


def pick_district(owner: psycopg.Connection[Any], tenant_id: int) -> tuple[int, str, str]:
    """The district holding the median number of requests (id, code, scope)."""
    rows = owner.execute(
        "SELECT d.id, d.code, d.scope::text, count(r.*) AS n FROM districts d "
        "LEFT JOIN requests r ON r.tenant_id = d.tenant_id AND r.district_id = d.id "
        "WHERE d.tenant_id = %s GROUP BY d.tenant_id, d.id ORDER BY n, d.id",
        (tenant_id,),
    ).fetchall()
    middle = rows[len(rows) // 2]
    return int(middle[0]), str(middle[1]), str(middle[2])


def graphql_features(response: httpx.Response) -> list[dict[str, Any]]:
    if response.status_code != 200:
        raise common.BenchError(f"heatmap: HTTP {response.status_code}: {response.text[:300]}")
    body = response.json()
    if body.get("errors") or body.get("data") is None:
        raise common.BenchError(f"heatmap: GraphQL errors: {body.get('errors')}")
    features: list[dict[str, Any]] = body["data"]["heatmap"]["features"]
    return features


HEATMAP_QUERY = (
    "query($from: DateTime!, $to: DateTime!, $bucket: HeatBucket!, $resolution: Int) "
    "{ heatmap(from: $from, to: $to, bucket: $bucket, resolution: $resolution) }"
)


def heatmap_body(window: heat.Window, bucket: heat.Bucket) -> str:
    """The heatmap request of `window` by `bucket` (H3 at H3_RESOLUTION)."""
    variables = {
        "from": window.start.isoformat(),
        "to": window.end.isoformat(),
        "bucket": "H3" if bucket is heat.Bucket.H3 else "GRID_CELL",
        "resolution": H3_RESOLUTION if bucket is heat.Bucket.H3 else None,
    }
    return json.dumps({"query": HEATMAP_QUERY, "variables": variables})


def count_statements(settings: Settings, token: str, body: str) -> dict[str, int]:
    """Statements one heatmap request runs, counted in-process on the app's engine."""
    counts = common.count_request_statements(
        settings, token, {"heatmap": body}, lambda _, response: graphql_features(response)
    )
    return counts["heatmap"].figures()


def bench_heatmap(
    c: Connections, window: heat.Window, bucket: heat.Bucket, iterations: int
) -> dict[str, Any]:
    resolution = H3_RESOLUTION if bucket is heat.Bucket.H3 else None
    body = heatmap_body(window, bucket)
    headers = {"authorization": f"Bearer {c.token}", "content-type": "application/json"}
    statement = psycopg_sql(heat.heat_statement(bucket, window.narrowing, False, False))
    values = heat.heat_parameters(window, bucket, resolution)
    name = bucket.value

    def graphql(_: int) -> Any:
        features = graphql_features(c.client.post(f"{c.base_url}/graphql", content=body, headers=headers))
        return [(f["id"], f["properties"]["total"]) for f in features]

    def bare(connection: psycopg.Connection[Any], set_local: str) -> Callable[[int], Any]:
        def run(_: int) -> Any:
            row = run_in_transaction(connection, set_local, statement, values)
            if row is None:
                raise common.BenchError("heatmap SQL: no row")
            features = json.loads(row[1])
            return [
                (format(f["id"], "x") if resolution else f["id"], f["properties"]["total"]) for f in features
            ]

        return run

    variants: dict[str, Callable[[int], Any]] = {
        f"graphql_heatmap_{name}": graphql,
        f"sql_heatmap_{name}_app_rls": bare(c.app, c.app_set_local),
        f"sql_heatmap_{name}_owner": bare(c.owner, c.set_local),
    }
    samples = round_robin(variants, [0], iterations)
    timings = {key: common.summary(value) for key, value in samples.items()}
    answer = graphql(0)
    return {
        "buckets": len(answer),
        "requests": sum(total for _, total in answer),
        "response_bytes": len(c.client.post(f"{c.base_url}/graphql", content=body, headers=headers).content),
        "iterations": iterations,
        "timings_ms": timings,
        "ratios": {
            "graphql_vs_sql_app_rls": geography.ratio(
                timings, f"graphql_heatmap_{name}", f"sql_heatmap_{name}_app_rls"
            ),
            "graphql_vs_sql_owner": geography.ratio(
                timings, f"graphql_heatmap_{name}", f"sql_heatmap_{name}_owner"
            ),
            "rls_overhead": geography.ratio(
                timings, f"sql_heatmap_{name}_app_rls", f"sql_heatmap_{name}_owner"
            ),
        },
    }


# (b) A daily per-cell rollup, measured and dropped.

ROLLUP_BUILD = """
CREATE TABLE bench_heat_daily AS
SELECT tenant_id, (submitted_at AT TIME ZONE 'Asia/Shanghai')::date AS day, scope, grid_cell_id,
  category_id, state, count(*) AS total, count(*) FILTER (WHERE overdue) AS overdue,
  count(rating) AS rated, coalesce(sum(rating), 0) AS rating_sum,
  count(*) FILTER (WHERE rating >= 80) AS satisfied, count(*) FILTER (WHERE solved) AS solved,
  count(solved) AS solved_known
FROM requests WHERE grid_cell_id IS NOT NULL
GROUP BY 1, 2, 3, 4, 5, 6
"""
ROLLUP_INDEXES = (
    "CREATE INDEX ON bench_heat_daily (tenant_id, day)",
    "CREATE INDEX ON bench_heat_daily USING gist (scope)",
)
# The per-cell totals of the heat map, from the rollup and from the requests, over whole days.
ROLLUP_QUERY = """
SELECT grid_cell_id, sum(total)::bigint, sum(overdue)::bigint, sum(rated)::bigint, sum(rating_sum)::bigint
FROM bench_heat_daily
WHERE tenant_id = %(tenant_id)s AND scope <@ %(scope)s::ltree AND day >= %(first)s AND day < %(last)s
GROUP BY grid_cell_id ORDER BY grid_cell_id
"""
PLAIN_QUERY = """
SELECT grid_cell_id, count(*), count(*) FILTER (WHERE overdue), count(rating), coalesce(sum(rating), 0)
FROM requests
WHERE tenant_id = %(tenant_id)s AND scope <@ %(scope)s::ltree AND grid_cell_id IS NOT NULL
  AND submitted_at >= (%(first)s::date::timestamp AT TIME ZONE 'Asia/Shanghai')
  AND submitted_at < (%(last)s::date::timestamp AT TIME ZONE 'Asia/Shanghai')
GROUP BY grid_cell_id ORDER BY grid_cell_id
"""


def bench_rollup(
    owner: psycopg.Connection[Any], tenant_id: int, scope: str, end: datetime, iterations: int
) -> dict[str, Any]:
    owner.execute("DROP TABLE IF EXISTS bench_heat_daily")
    started = time.perf_counter()
    owner.execute(ROLLUP_BUILD)
    for statement in ROLLUP_INDEXES:
        owner.execute(statement)
    owner.execute("ANALYZE bench_heat_daily")
    build_seconds = time.perf_counter() - started
    found = owner.execute(
        "SELECT count(*), pg_total_relation_size('bench_heat_daily') FROM bench_heat_daily"
    ).fetchone()
    base = owner.execute("SELECT count(*) FROM requests WHERE grid_cell_id IS NOT NULL").fetchone()
    assert found is not None and base is not None
    last = (end + timedelta(hours=8)).date()
    values = {
        "tenant_id": tenant_id,
        "scope": scope,
        "first": last - timedelta(days=WINDOW_DAYS),
        "last": last,
    }

    def run(statement: str) -> Callable[[int], Any]:
        return lambda _: owner.execute(statement, values).fetchall()

    try:
        samples = round_robin(
            {"plain_owner": run(PLAIN_QUERY), "rollup_owner": run(ROLLUP_QUERY)}, [0], iterations
        )
    finally:
        owner.execute("DROP TABLE bench_heat_daily")
    timings = {key: common.summary(value) for key, value in samples.items()}
    return {
        "rows_requests": int(base[0]),
        "rows_rollup": int(found[0]),
        "rollup_bytes": int(found[1]),
        "build_seconds": round(build_seconds, 1),
        "timings_ms": timings,
        "ratio_rollup_vs_plain": geography.ratio(timings, "rollup_owner", "plain_owner"),
        "faster": "rollup"
        if geography.p50(timings, "rollup_owner") < geography.p50(timings, "plain_owner")
        else "plain",
        "kept": "plain",
        "why": (
            "at this density (about 0.04 requests per cell and day) the rollup has as many rows as there "
            "are requests, so it saves only the width of the rows; it cannot answer a [from, to) window "
            "that does not fall on whole days, and every state, overdue, rating or routing change would "
            "have to update it"
        ),
    }


# (c) Heat tiles.


def bench_tiles(
    c: Connections, window: heat.Window, centre: tuple[float, float], iterations: int
) -> dict[str, Any]:
    statement = psycopg_sql(heat_tile_statement().text)
    _, x0, y0 = tile_of(centre[0], centre[1], TILE_ZOOM)
    tiles = [(TILE_ZOOM, x0 + dx, y0 + dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    query = f"from={window.start.isoformat()}&to={window.end.isoformat()}".replace("+", "%2B")
    # What every tile's parameters take from the window (the caller and the time range).
    of_window: dict[str, Any] = dict(
        tenant_id=window.tenant_id, scopes=window.scopes, start=window.start, end=window.end
    )

    def params(tile: Tile) -> dict[str, Any]:
        z, x, y = tile
        return heat_tile_parameters(z=z, x=x, y=y, **of_window)

    def path(tile: Tile) -> str:
        z, x, y = tile
        return f"/tiles/heat/{z}/{x}/{y}.mvt?{query}"

    described = []
    for tile in tiles:
        row = run_in_transaction(c.owner, c.set_local, statement, params(tile))
        assert row is not None
        described.append({"tile": list(tile), "features": int(row[1]), "bytes": len(row[0] or b"")})
    measured = time_tiles(c, f"heat_tile_z{TILE_ZOOM}", path, statement, params, tiles, iterations)
    return {"tiles": described, "iterations": iterations, **measured}


def run(iterations: int, tile_iterations: int) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    load_before = os.getloadavg()
    base = load()
    preparation = prepare(base)
    settings = common.bench_settings(base, BENCH_DATABASE)
    tenant_id = int(preparation["tenant_id"])
    owner_url = settings.owner_url
    with (
        httpx.Client(timeout=120) as client,
        psycopg.connect(settings.app_url, autocommit=True) as app,
        psycopg.connect(owner_url, autocommit=True) as owner,
    ):
        facts = postgres_facts(owner)
        district_id, district_code, scope = pick_district(owner, tenant_id)
        latest, total_requests = one_row(
            owner, "SELECT max(submitted_at), count(*) FROM requests WHERE tenant_id = %s", tenant_id
        )
        end = latest + timedelta(seconds=1)
        centre_row = one_row(
            owner,
            "SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_PointOnSurface(geom) AS c FROM boundaries "
            "WHERE tenant_id = %s AND level = 'district' AND node_id = %s AND valid_to IS NULL) x",
            tenant_id,
            district_id,
        )
        window = heat.Window(tenant_id, (scope,), end - timedelta(days=WINDOW_DAYS), end)
        context = TenantContext(tenant_id, (scope,), PRINCIPAL)
        token = common.issue_token(settings, CITY.tenant, PRINCIPAL, [scope], Role.DISTRICT_STAFF)
        statements = count_statements(settings, token, heatmap_body(window, heat.Bucket.GRID_CELL))
        # Both roles in the same district context: the owner differs only by bypassing RLS.
        set_local = context.set_local_statement()
        with common.api_server(settings) as base_url:
            c = Connections(client, base_url, token, app, owner, set_local, set_local)
            console.log(f"heatmap of district {district_code} over {WINDOW_DAYS} days: GraphQL against SQL")
            heatmaps = {
                bucket.value: bench_heatmap(c, window, bucket, iterations)
                for bucket in (heat.Bucket.GRID_CELL, heat.Bucket.H3)
            }
            console.log(f"heat tiles at z {TILE_ZOOM}: HTTP against SQL")
            tiles = bench_tiles(c, window, (centre_row[0], centre_row[1]), tile_iterations)
        console.log("a daily per-cell rollup against the plain aggregate")
        rollup = bench_rollup(owner, tenant_id, scope, end, iterations)
    grid, hexes = heatmaps["grid_cell"], heatmaps["h3"]
    return {
        "date": started_at.isoformat(timespec="seconds"),
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": common.machine(load_before, facts),
        "dataset": {
            "tenant": CITY.tenant,
            "requests": int(total_requests),
            "days": DAYS,
            "preparation": preparation,
            "district": {
                "id": district_id,
                "code": district_code,
                "scope": scope,
                "node_id": encode_id("District", district_id),
            },
            "window": [window.start.isoformat(), window.end.isoformat()],
        },
        "method": (
            "warm-up, then round-robin over the variants with a rotating order; HTTP over loopback to a "
            "uvicorn subprocess with a district-staff token; SQL: psycopg connections kept open, BEGIN, SET "
            "LOCAL of the same district context, the statement geo.heat (geo.tiles) runs, COMMIT; the owner "
            "variant bypasses RLS; ratios are p50 over p50"
        ),
        "statements_per_heatmap_request": statements,
        "heatmap": heatmaps,
        "tiles": tiles,
        "rollup": rollup,
        "ratios": {
            "heatmap_grid_graphql_vs_sql_app_rls": grid["ratios"]["graphql_vs_sql_app_rls"],
            "heatmap_h3_graphql_vs_sql_app_rls": hexes["ratios"]["graphql_vs_sql_app_rls"],
            f"heat_tile_z{TILE_ZOOM}_http_vs_sql_owner": tiles["ratios"]["http_vs_sql_owner"],
            "rollup_vs_plain": rollup["ratio_rollup_vs_plain"],
        },
    }


def print_figures(figures: dict[str, Any], out: Console) -> None:
    groups = [
        *(h["timings_ms"] for h in figures["heatmap"].values()),
        figures["tiles"]["timings_ms"],
        figures["rollup"]["timings_ms"],
    ]
    out.print(common.timings_table("heat benchmark: latencies (ms)", groups))
    ratios = common.table("ratios (p50 over p50)", "ratio", "value")
    for name, value in figures["ratios"].items():
        ratios.add_row(name, f"{value:.3f}")
    out.print(ratios)
    rollup, dataset = figures["rollup"], figures["dataset"]
    grid, hexes = figures["heatmap"]["grid_cell"], figures["heatmap"]["h3"]
    out.print(
        f"{dataset['requests']:,} requests; district {dataset['district']['code']}: "
        f"{grid['requests']:,} requests in {WINDOW_DAYS} days, {grid['buckets']:,} grid cells "
        f"({grid['response_bytes']:,} bytes), "
        f"{hexes['buckets']:,} hexagons at resolution {H3_RESOLUTION}; "
        f"{figures['statements_per_heatmap_request']['excluding_set_local']} statement(s) per request "
        "besides SET LOCAL"
    )
    out.print(
        f"rollup: {rollup['rows_rollup']:,} rows for {rollup['rows_requests']:,} requests, built in "
        f"{rollup['build_seconds']} s; faster: {rollup['faster']}; kept: {rollup['kept']}"
    )
    machine = figures["machine"]
    out.print(
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), PostgreSQL {machine['postgresql']}, "
        f"PostGIS {machine['postgis']}, "
        f"load {machine['load_average_before']} → {machine['load_average_after']}, "
        f"{figures['date']}, {figures['total_seconds']} s in all"
    )


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser("heat", "The heat-map benchmark.")
    parser.add_argument("--iterations", type=int, default=30, help="timed heatmap iterations per variant")
    parser.add_argument("--tile-iterations", type=int, default=45, help="timed tile iterations per variant")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.tile_iterations < 1:
        parser.error("iterations must be at least 1")
    return common.measure_and_record(
        lambda: run(args.iterations, args.tile_iterations), args.output, "heat", print_figures
    )


if __name__ == "__main__":
    sys.exit(main())
