"""Intake benchmark: `submitRequest` through /graphql over loopback at 16 concurrent clients, with routing,
the history, the audit chain, the deadline timers and the outbox (published to the broker after commit),
on a synthetic tenant already holding 1,000,000 requests; against the same work done as bare SQL by 16
psycopg connections in the same run.

Run with `make bench` (or `python -m tests.bench.intake [--requests N] [--submissions N]`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import h3
import httpx
import psycopg
import redis
from rich.console import Console

from deploy import migrate
from deploy.settings import Settings, load
from geo.assignment import COVERING_CELL
from services.requests.calendar import WorkingCalendar
from services.requests.catalog import official_days
from tenants.context import TenantContext, city_scope
from tenants.roles import Role
from tests.bench import common
from tests.bench.geography import psycopg_sql

BENCH_DATABASE = "liaison_intakebench"
CITY = common.City("intakebench", districts=16, streets=10, stations=10, seed=5)
DEFAULT_REQUESTS = 1_000_000
DEFAULT_SUBMISSIONS = 3_000
CLIENTS = 16
API_WORKERS = os.cpu_count() or 1
WARMUP_PER_CLIENT = 10
# The bench publishes to a Redis database of its own and empties it afterwards (nothing consumes it).
BROKER_DB = 11
CATEGORIES = ("environment", "parking", "property_housing", "safety", "elderly_care", "public_toilets")

PROBLEMS = ("路灯不亮", "垃圾未清运", "楼道堆物", "停车难")

SUBMIT = (
    "mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { __typename "
    "... on SubmitRequestPayload { ticket routed } ... on Error { code message } } }"
)

console = Console()


def prepare(settings: Settings, requests: int) -> tuple[int, float]:
    migrate.upgrade(settings)
    started = time.perf_counter()
    tenant_id = common.seed_city(settings, CITY, shapes=True, requests=requests, request_days=365).tenant_id
    seconds = time.perf_counter() - started
    common.maintain(settings, "VACUUM ANALYZE")
    return tenant_id, seconds


def sample_points(settings: Settings, tenant_id: int, count: int) -> list[tuple[float, float]]:
    """Points inside random grid cells, and one in twenty outside every cell: a few hundred metres east of
    the city's easternmost corner, inside the margin intake accepts, as real intake has."""
    with psycopg.connect(settings.owner_url) as connection:
        rows = connection.execute(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM boundaries "
            "WHERE tenant_id = %s AND level = 'grid' AND valid_to IS NULL "
            "ORDER BY hashint8(id) LIMIT %s) x",
            (tenant_id, count),
        ).fetchall()
        corner = connection.execute(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT (ST_DumpPoints(geom)).geom AS p FROM boundaries "
            "WHERE tenant_id = %s AND level = 'district' AND valid_to IS NULL) d "
            "ORDER BY ST_X(p) DESC LIMIT 1",
            (tenant_id,),
        ).fetchone()
    if corner is None:
        raise common.BenchError("the bench city has no district boundaries to place points outside of")
    rng = random.Random(CITY.seed)
    east, north = float(corner[0]), float(corner[1])
    points = [(float(x), float(y)) for x, y in rows]
    return [
        (east + 0.003 + 0.001 * rng.random(), north + 0.001 * rng.random()) if i % 20 == 19 else p
        for i, p in enumerate(points)
    ]


@dataclass
class Run:
    latencies_ms: list[float]
    seconds: float
    routed: int

    def figures(self) -> dict[str, Any]:
        return {
            "submissions": len(self.latencies_ms),
            "wall_seconds": round(self.seconds, 2),
            "throughput_per_second": round(len(self.latencies_ms) / self.seconds, 1),
            "p50_ms": round(common.percentile(self.latencies_ms, 50), 2),
            "p99_ms": round(common.percentile(self.latencies_ms, 99), 2),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2),
            "routed": self.routed,
        }


def submissions(points: list[tuple[float, float]], count: int) -> list[dict[str, Any]]:
    rng = random.Random(CITY.seed + 1)
    return [
        {
            "category": CATEGORIES[i % len(CATEGORIES)],
            "description": f"基准测试诉求 {i}：{rng.choice(PROBLEMS)}",
            "location": {"longitude": points[i % len(points)][0], "latitude": points[i % len(points)][1]},
            "contactPhone": f"139{i:08d}",
        }
        for i in range(count)
    ]


async def graphql_run(base_url: str, tokens: list[str], work: list[dict[str, Any]]) -> Run:
    latencies: list[float] = []
    routed = 0
    warm, timed = work[: CLIENTS * WARMUP_PER_CLIENT], list(reversed(work[CLIENTS * WARMUP_PER_CLIENT :]))
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)

    async def submit(client: httpx.AsyncClient, token: str, values: dict[str, Any]) -> bool:
        response = await client.post(
            "/graphql",
            json={"query": SUBMIT, "variables": {"input": values}},
            headers={"authorization": f"Bearer {token}"},
        )
        result = response.json()["data"]["submitRequest"]
        if result["__typename"] != "SubmitRequestPayload":
            raise common.BenchError(f"submitRequest failed: {result}")
        return bool(result["routed"])

    async def warm_up(client: httpx.AsyncClient, token: str, mine: list[dict[str, Any]]) -> None:
        for values in mine:
            await submit(client, token, values)

    async def client_loop(client: httpx.AsyncClient, token: str) -> None:
        nonlocal routed
        while timed:
            values = timed.pop()
            began = time.perf_counter()
            placed = await submit(client, token, values)
            latencies.append((time.perf_counter() - began) * 1000)
            routed += placed

    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        await asyncio.gather(*(warm_up(client, tokens[i], warm[i::CLIENTS]) for i in range(CLIENTS)))
        began = time.perf_counter()
        await asyncio.gather(*(client_loop(client, tokens[i]) for i in range(CLIENTS)))
        seconds = time.perf_counter() - began
    return Run(latencies, seconds, routed)


# The same work as bare SQL: every statement the pipeline runs, in one transaction per submission.

BARE_STATEMENTS = {
    "covering": psycopg_sql(COVERING_CELL),
    "rule": "SELECT responsible, department, assignee FROM routing_rules WHERE tenant_id = %(tenant_id)s "
    "AND (category_id = %(category_id)s OR category_id IS NULL) AND scope @> text2ltree(%(scope)s) "
    "ORDER BY nlevel(scope) DESC, category_id IS NULL LIMIT 1",
    "nextval": "SELECT nextval(pg_get_serial_sequence('requests', 'id'))",
    "insert": "INSERT INTO requests (tenant_id, id, ticket, scope, category_id, description, channel, geom, "
    "photo_urls, h3_cell, grid_cell_id, station_id, street_id, district_id, owner_principal, contact_phone, "
    "state, level, responsible, submitted_at, response_due_at, resolution_due_at, updated_at) VALUES "
    "(%(tenant_id)s, %(id)s, %(ticket)s, text2ltree(%(scope)s), %(category_id)s, %(description)s, 'app', "
    "ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), '[]', %(h3)s, %(grid_cell_id)s, %(station_id)s, "
    "%(street_id)s, %(district_id)s, %(owner)s, %(phone)s, 'submitted', 0, 'station', %(now)s, "
    "%(response_due)s, %(resolution_due)s, %(now)s)",
    "event": "INSERT INTO workflow_events (tenant_id, scope, workflow, subject_id, step, "
    "to_state, actor, note, "
    "public, payload, at) VALUES (%(tenant_id)s, text2ltree(%(scope)s), 'request', %(id)s, 'submit', "
    "'submitted', %(owner)s, '已受理', true, '{}', %(now)s)",
    "audit_next": "SELECT seq, prev_hash FROM liaison_audit_next()",
    "audit_write": "SELECT liaison_audit_write(%(tenant_id)s, %(seq)s, %(now)s, %(owner)s, 'request.submit', "
    "%(subject)s, text2ltree(%(scope)s), '{}', %(hash)s)",
    "timer": "INSERT INTO timers (tenant_id, scope, kind, subject_id, key, due_at, payload) VALUES "
    "(%(tenant_id)s, text2ltree(%(scope)s), %(kind)s, %(id)s, %(key)s, %(due)s, '{}') "
    "ON CONFLICT (tenant_id, key) DO NOTHING",
    "outbox": "INSERT INTO outbox (tenant_id, scope, task, kwargs) VALUES (%(tenant_id)s, "
    "text2ltree(%(scope)s), "
    "'notifications.send', %(kwargs)s) RETURNING id",
    "duplicates": "SELECT id FROM requests WHERE tenant_id = %(tenant_id)s AND category_id = %(category_id)s "
    "AND id <> %(id)s AND state = ANY(%(open)s) AND submitted_at >= %(since)s "
    "AND geom && ST_Expand(ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), 0.0045) "
    "AND ST_DWithin(geom::geography, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), "
    "4326)::geography, 200) LIMIT 5",
    "sent": "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE tenant_id = %(tenant_id)s "
    "AND id = ANY(%(ids)s) AND sent_at IS NULL",
}
OPEN = ["accepted", "assigned", "in_progress", "reopened", "returned", "submitted"]


def bare_submission(
    connection: psycopg.Connection[Any],
    broker: redis.Redis,
    set_local: str,
    calendar: WorkingCalendar,
    tenant_id: int,
    values: dict[str, Any],
    owner: str,
    categories: dict[str, tuple[int, int, int]],
) -> bool:
    s = BARE_STATEMENTS
    now = datetime.now(UTC)
    lon, lat = values["location"]["longitude"], values["location"]["latitude"]
    params: dict[str, Any] = {"tenant_id": tenant_id, "lon": lon, "lat": lat, "as_of": now, "now": now}
    with connection.transaction():
        connection.execute(set_local)
        cell = connection.execute(s["covering"], params).fetchone()
        # The city's categories, settings and calendar are read once and kept, as the pipeline does.
        category = categories[values["category"]]
        scope = cell[9] if cell is not None else city_scope(tenant_id)
        params.update(category_id=category[0], scope=scope)
        if cell is not None:
            connection.execute(s["rule"], params).fetchone()
        request_id = connection.execute(s["nextval"]).fetchone()[0]  # type: ignore[index]
        response_due, resolution_due = (
            calendar.deadline(now, category[1]),
            calendar.deadline(now, category[2]),
        )
        params.update(
            id=request_id,
            ticket=f"{now:%Y%m%d}-{request_id:06d}",
            description=values["description"],
            h3=int(h3.latlng_to_cell(lat, lon, 12), 16),
            grid_cell_id=cell[0] if cell else None,
            station_id=cell[2] if cell else None,
            street_id=cell[4] if cell else None,
            district_id=cell[6] if cell else None,
            owner=owner,
            phone=values["contactPhone"],
            response_due=response_due,
            resolution_due=resolution_due,
            subject=f"request:{request_id}",
        )
        connection.execute(s["insert"], params)
        connection.execute(s["event"], params)
        seq, prev = connection.execute(s["audit_next"]).fetchone()  # type: ignore[misc]
        digest = hashlib.sha256(f"{tenant_id}{seq}{now.isoformat()}{owner}{prev}".encode()).hexdigest()
        params.update(seq=seq, hash=digest)
        connection.execute(s["audit_write"], params)
        soon = timedelta(hours=24)
        for kind, due in (
            ("request.response_due_soon", response_due - soon),
            ("request.response_overdue", response_due),
            ("request.resolution_due_soon", resolution_due - soon),
            ("request.resolution_overdue", resolution_due),
        ):
            key = f"request:{request_id}:{kind}:{due.isoformat()}"
            connection.execute(s["timer"], {**params, "kind": kind, "key": key, "due": due})
        outbox_ids = []
        for recipient in (None, owner):
            kwargs = json.dumps({"recipient": recipient, "source": f"request:{request_id}:{recipient}"})
            outbox_ids.append(connection.execute(s["outbox"], {**params, "kwargs": kwargs}).fetchone()[0])  # type: ignore[index]
        connection.execute(
            s["duplicates"], {**params, "open": OPEN, "since": now - timedelta(hours=72)}
        ).fetchall()
    for outbox_id in outbox_ids:
        broker.lpush("bench-intake", json.dumps({"task": "notifications.send", "id": outbox_id}))
    with connection.transaction():
        connection.execute(set_local)
        connection.execute(s["sent"], {"tenant_id": tenant_id, "ids": outbox_ids})
    return cell is not None


def bare_run(settings: Settings, tenant_id: int, work: list[dict[str, Any]]) -> Run:
    context = TenantContext.whole_tenant(tenant_id, "system:intake")
    set_local = context.set_local_statement(settings.tenant_role)
    calendar = WorkingCalendar(
        ZoneInfo("Asia/Shanghai"),
        holidays=frozenset(d for d, kind, _ in official_days() if kind == "holiday"),
        workdays=frozenset(d for d, kind, _ in official_days() if kind == "workday"),
    )
    with psycopg.connect(settings.owner_url) as connection:
        categories = {
            str(code): (int(i), int(r), int(d))
            for i, code, r, d in connection.execute(
                "SELECT id, code, response_days, resolution_days FROM request_categories "
                "WHERE tenant_id = %s",
                (tenant_id,),
            )
        }
    latencies: list[float] = []
    routed = [0]
    queue = list(reversed(work[CLIENTS * WARMUP_PER_CLIENT :]))
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS + 1)

    def client_loop(index: int) -> None:
        broker = redis.Redis.from_url(settings.celery_broker_url)
        with psycopg.connect(settings.app_url, autocommit=True) as connection:
            owner = f"user:{900000 + index}"
            for values in work[index : CLIENTS * WARMUP_PER_CLIENT : CLIENTS]:
                bare_submission(connection, broker, set_local, calendar, tenant_id, values, owner, categories)
            barrier.wait()
            while True:
                with lock:
                    if not queue:
                        return
                    values = queue.pop()
                began = time.perf_counter()
                placed = bare_submission(
                    connection, broker, set_local, calendar, tenant_id, values, owner, categories
                )
                elapsed = (time.perf_counter() - began) * 1000
                with lock:
                    latencies.append(elapsed)
                    routed[0] += placed

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return Run(latencies, time.perf_counter() - began, routed[0])


def count_rows(settings: Settings, tenant_id: int) -> int:
    with psycopg.connect(settings.owner_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM requests WHERE tenant_id = %s", (tenant_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def run(requests: int, count: int) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    load_before = os.getloadavg()
    broker = common.redis_broker_url(load(), BROKER_DB, "intake")
    with common.bench_database(load(), BENCH_DATABASE, broker) as settings, common.emptied_afterwards(broker):
        console.log(f"seeding the synthetic tenant and {requests:,} requests")
        tenant_id, seed_seconds = prepare(settings, requests)
        console.log(f"seeded in {seed_seconds:.0f} s")
        points = sample_points(settings, tenant_id, 2000)
        scopes = [city_scope(tenant_id)]
        tokens = [
            common.issue_token(settings, CITY.tenant, f"user:{800000 + i}", scopes, Role.RESIDENT)
            for i in range(CLIENTS)
        ]
        warm = CLIENTS * WARMUP_PER_CLIENT
        before = count_rows(settings, tenant_id)
        # One API process per core, as a deployment would run it (the bare side has 16 backends).
        with common.api_server(settings, workers=API_WORKERS) as base_url:
            console.log(f"GraphQL: {count:,} submissions from {CLIENTS} concurrent clients")
            graphql = asyncio.run(graphql_run(base_url, tokens, submissions(points, count + warm)))
        after_graphql = count_rows(settings, tenant_id)
        console.log(f"bare SQL: {count:,} submissions from {CLIENTS} connections")
        bare = bare_run(settings, tenant_id, submissions(points, count + warm))
        after_bare = count_rows(settings, tenant_id)
        if after_graphql - before != count + warm or after_bare - after_graphql != count + warm:
            raise common.BenchError(
                f"a submission was lost: {before} rows, {after_graphql} after GraphQL, {after_bare} after SQL"
            )
        with psycopg.connect(settings.owner_url) as connection:
            facts = {"postgresql": common.server_version(connection)}
    g, b = graphql.figures(), bare.figures()
    return {
        "date": started_at.isoformat(timespec="seconds"),
        "machine": common.machine(load_before, facts, with_platform=False),
        "dataset": {
            "tenant": CITY.tenant,
            "requests_before": before,
            "seeding_seconds": round(seed_seconds, 1),
        },
        "method": (
            f"{CLIENTS} concurrent clients (asyncio + httpx keep-alive against uvicorn with {API_WORKERS} "
            f"worker processes, one per core; bare: "
            f"{CLIENTS} psycopg connections in threads), {WARMUP_PER_CLIENT} warm-up submissions each, then "
            f"{count} timed; one point in twenty lies outside the city (manual routing). Bare SQL runs every "
            "statement the pipeline runs (locate, category, settings, rule, calendar, id, request, history, "
            "audit link, 4 timers, 2 outbox rows, duplicate search) in one transaction, pushes 2 messages to "
            "Redis and marks them sent, as the unit of work does."
        ),
        "graphql": g,
        "bare_sql": b,
        "ratios": {
            "throughput_bare_vs_graphql": round(b["throughput_per_second"] / g["throughput_per_second"], 2),
            "p50_graphql_vs_bare": round(g["p50_ms"] / b["p50_ms"], 2),
            "p99_graphql_vs_bare": round(g["p99_ms"] / b["p99_ms"], 2),
        },
    }


def print_figures(figures: dict[str, Any], out: Console) -> None:
    result = common.table(
        "intake benchmark: submitRequest at 16 concurrent clients", "path", "per s", "p50 ms", "p99 ms", "n"
    )
    for name in ("graphql", "bare_sql"):
        f = figures[name]
        result.add_row(
            name,
            f"{f['throughput_per_second']:.0f}",
            f"{f['p50_ms']:.1f}",
            f"{f['p99_ms']:.1f}",
            str(f["submissions"]),
        )
    out.print(result)
    out.print(figures["ratios"])


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser("intake", "The intake benchmark.")
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="requests seeded first")
    parser.add_argument("--submissions", type=int, default=DEFAULT_SUBMISSIONS, help="timed submissions")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.submissions < CLIENTS:
        parser.error(f"--requests must be at least 1 and --submissions at least {CLIENTS}")
    return common.measure_and_record(
        lambda: run(args.requests, args.submissions), args.output, "intake", print_figures
    )


if __name__ == "__main__":
    raise SystemExit(main())
