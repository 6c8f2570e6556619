"""The hierarchy benchmark: nested GraphQL over HTTP against one hand-written SQL statement.

    .venv/bin/python -m tests.bench.hierarchy [--iterations N] [--output tests/bench/results.json]

A fresh database `liaison_bench` gets the migrations and a synthetic tenant (16 districts × 20 streets
× 20 stations); the real API runs in a uvicorn subprocess. Each query is timed over HTTP, and the same
data is fetched by hand-written SQL as the app role under RLS and as the owner role (BYPASSRLS). Every
answer is checked against the first, verified one. Targets (from the issue): GraphQL within 3× of the
SQL, RLS overhead within 10%. A missed target is recorded, not an error; the exit code is non-zero
only when something fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table
from sqlalchemy import event
from sqlalchemy.engine import make_url

from deploy import migrate, runtime
from deploy.seed import seed_synthetic
from deploy.settings import REPO_ROOT, Settings, load
from schema.app import create_app
from tenants.context import TenantContext, city_scope
from tenants.db import Database
from tenants.roles import Role

BENCH_DATABASE = "liaison_bench"
TENANT = "bench"
DISTRICTS, STREETS, STATIONS, SEED = 16, 20, 20, 1
DISTRICT_CODE = "D001"
PRINCIPAL = "operator:bench"
WARMUP = 3
GRAPHQL_TARGET = 3.0
RLS_TARGET = 1.10
DEFAULT_OUTPUT = Path("tests/bench/results.json")

FULL_TREE_QUERY = (
    "{ city { code name scope districts(first: 50) { totalCount edges { node { id code name scope "
    "streets(first: 50) { totalCount edges { node { id code name scope stations(first: 50) { totalCount "
    "edges { node { id code name scope } } } } } } } } } } }"
)
DISTRICT_PAGE_QUERY = (
    "query($code: String!) { districts(code: $code, first: 1) { edges { node { id code name scope "
    "streets(first: 20) { totalCount edges { node { id code name scope stations(first: 10) { totalCount "
    "edges { node { id code name scope } } } } } } } } } }"
)


class BenchError(Exception):
    """The benchmark could not measure what it claims to (a wrong answer, a dead server)."""


# Hand-written SQL. Same fields, same order (by code), same first-N per parent and totalCount per parent
# as the GraphQL queries; retired nodes are left out as the API does by default.


def global_id(type_name: str, key: str) -> str:
    """schema.relay.encode_id in SQL: urlsafe base64 of 'Type:id' without padding (and without the
    newlines PostgreSQL's base64 inserts every 76 characters)."""
    encoded = f"encode(convert_to('{type_name}:' || {key}, 'UTF8'), 'base64')"
    return f"rtrim(translate(replace({encoded}, E'\\n', ''), '+/', '-_'), '=')"


@dataclass(frozen=True)
class SqlLevel:
    table: str
    type_name: str
    alias: str


DISTRICTS_SQL = SqlLevel("districts", "District", "d")
STREETS_SQL = SqlLevel("streets", "Street", "s")
STATIONS_SQL = SqlLevel("stations", "Station", "t")


def connection_json(level: SqlLevel, where: str, first: int, children: str = "", total: bool = True) -> str:
    """A Relay connection as JSON: `where` selects the rows (it may refer to the enclosing row)."""
    a = level.alias
    node = (
        f"json_build_object('id', {global_id(level.type_name, a + '.id')}, 'code', {a}.code, "
        f"'name', {a}.name, 'scope', {a}.scope::text{children})"
    )
    rows = f"SELECT * FROM {level.table} WHERE {where} AND retired_at IS NULL"
    edges = (
        f"coalesce((SELECT json_agg(json_build_object('node', {node}) ORDER BY {a}.code) "
        f"FROM ({rows} ORDER BY code LIMIT {first}) {a}), '[]'::json)"
    )
    count = f"'totalCount', (SELECT count(*) FROM {level.table} WHERE {where} AND retired_at IS NULL), "
    return f"json_build_object({count if total else ''}'edges', {edges})"


def full_tree_sql() -> str:
    stations = connection_json(STATIONS_SQL, "tenant_id = s.tenant_id AND street_id = s.id", 50)
    streets = connection_json(
        STREETS_SQL, "tenant_id = d.tenant_id AND district_id = d.id", 50, f", 'stations', {stations}"
    )
    districts = connection_json(DISTRICTS_SQL, "tenant_id = c.tenant_id", 50, f", 'streets', {streets}")
    return (
        "SELECT json_build_object('city', json_build_object('code', c.code, 'name', c.name, "
        f"'scope', c.scope::text, 'districts', {districts}))::text "
        "FROM cities c WHERE c.tenant_id = %(tenant_id)s"
    )


def district_page_sql() -> str:
    stations = connection_json(STATIONS_SQL, "tenant_id = s.tenant_id AND street_id = s.id", 10)
    streets = connection_json(
        STREETS_SQL, "tenant_id = d.tenant_id AND district_id = d.id", 20, f", 'stations', {stations}"
    )
    districts = connection_json(
        DISTRICTS_SQL,
        "tenant_id = %(tenant_id)s AND code = %(code)s",
        1,
        f", 'streets', {streets}",
        total=False,
    )
    return f"SELECT json_build_object('districts', {districts})::text"


@dataclass(frozen=True)
class Case:
    name: str
    query: str
    variables: dict[str, Any]
    sql: str
    sql_params: dict[str, Any]
    expected_nodes: int
    iterations: int


def cases(tenant_id: int, full_tree_iterations: int, district_page_iterations: int) -> list[Case]:
    return [
        Case(
            "full_tree",
            FULL_TREE_QUERY,
            {},
            full_tree_sql(),
            {"tenant_id": tenant_id},
            1 + DISTRICTS + DISTRICTS * STREETS + DISTRICTS * STREETS * STATIONS,
            full_tree_iterations,
        ),
        Case(
            "district_page",
            DISTRICT_PAGE_QUERY,
            {"code": DISTRICT_CODE},
            district_page_sql(),
            {"tenant_id": tenant_id, "code": DISTRICT_CODE},
            1 + min(STREETS, 20) + min(STREETS, 20) * min(STATIONS, 10),
            district_page_iterations,
        ),
    ]


# Checking answers.


def count_nodes(value: Any) -> int:
    """Hierarchy nodes in a result: every object that has a code (the city included)."""
    if isinstance(value, dict):
        return int("code" in value) + sum(count_nodes(item) for item in value.values())
    if isinstance(value, list):
        return sum(count_nodes(item) for item in value)
    return 0


def graphql_data(case: Case, status: int, body: bytes) -> Any:
    if status != 200:
        raise BenchError(f"{case.name}: HTTP {status}: {body[:500]!r}")
    answer = json.loads(body)
    if answer.get("errors") or answer.get("data") is None:
        raise BenchError(f"{case.name}: GraphQL errors: {answer.get('errors')}")
    found = count_nodes(answer["data"])
    if found != case.expected_nodes:
        raise BenchError(f"{case.name}: GraphQL returned {found} nodes, expected {case.expected_nodes}")
    return answer["data"]


def check_sql(case: Case, text: str, graphql: Any) -> None:
    data = json.loads(text)
    found = count_nodes(data)
    if found != case.expected_nodes:
        raise BenchError(f"{case.name}: SQL returned {found} nodes, expected {case.expected_nodes}")
    if data != graphql:
        raise BenchError(f"{case.name}: the SQL answer differs from the GraphQL answer")


# Setup and teardown.


def with_database(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


def admin_execute(settings: Settings, statement: sql.Composed) -> None:
    with psycopg.connect(with_database(settings.database_url, "postgres"), autocommit=True) as connection:
        connection.execute(statement)


@contextmanager
def bench_database(settings: Settings) -> Iterator[Settings]:
    """A fresh database, dropped afterwards; yields settings pointing at it."""
    name = sql.Identifier(BENCH_DATABASE)
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name)
    admin_execute(settings, drop)
    admin_execute(settings, sql.SQL("CREATE DATABASE {}").format(name))
    try:
        # A fresh Settings, not model_copy: app_url and owner_url are cached properties of database_url.
        yield Settings(
            DATABASE_URL=with_database(settings.database_url, BENCH_DATABASE), APP_DATABASE_URL=None
        )
    finally:
        admin_execute(settings, drop)


def prepare(settings: Settings) -> int:
    """Migrate, seed the synthetic tenant, ANALYZE; returns the tenant id."""
    migrate.upgrade(settings)

    async def seed() -> int | None:
        database = Database(settings.app_url)
        try:
            await seed_synthetic(
                database, TENANT, districts=DISTRICTS, streets=STREETS, stations=STATIONS, seed=SEED
            )
            return await database.tenant_id_for(TENANT)
        finally:
            await database.dispose()

    tenant_id = asyncio.run(seed())
    if tenant_id is None:
        raise BenchError(f"tenant {TENANT!r} was not created")
    with psycopg.connect(with_database(settings.database_url, BENCH_DATABASE), autocommit=True) as connection:
        connection.execute("ANALYZE")
    return tenant_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def api_server(settings: Settings, workers: int = 1) -> Iterator[str]:
    """The real API in a uvicorn subprocess (`workers` processes); yields its base URL and always stops it."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "APP_DATABASE_URL"}
    env["DATABASE_URL"] = settings.database_url
    argv = [sys.executable, "-m", "uvicorn", "deploy.asgi:app", "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    process = subprocess.Popen([*argv, "--log-level", "warning"], cwd=REPO_ROOT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise BenchError(f"the API server exited with code {process.returncode}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)  # not listening yet
            if time.monotonic() > deadline:
                raise BenchError("the API server did not answer /healthz within 60 s")
            time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def issue_token(settings: Settings, tenant_id: int) -> str:
    return runtime.token_codec(settings).issue(
        sub=PRINCIPAL,
        tenant=TENANT,
        scopes=[city_scope(tenant_id)],
        roles=[Role.CITY_ADMIN.value],
        ttl=timedelta(hours=2),
    )


def request_body(case: Case) -> bytes:
    return json.dumps({"query": case.query, "variables": case.variables}).encode()


# Statements per request, counted in-process on the app's engine.


@dataclass(frozen=True)
class StatementCount:
    total: int
    set_local: int

    @property
    def excluding_set_local(self) -> int:
        return self.total - self.set_local


async def count_statements(
    settings: Settings, token: str, bench_cases: list[Case]
) -> dict[str, StatementCount]:
    config = runtime.api_config(settings)
    app = create_app(config)
    statements: list[str] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        statements.append(statement)

    event.listen(config.database.engine.sync_engine, "before_cursor_execute", record)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    counts: dict[str, StatementCount] = {}
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as client:
            for case in bench_cases:
                # The first request also resolves the tenant code (cached afterwards): count the second.
                for _ in range(2):
                    statements.clear()
                    response = await client.post("/graphql", content=request_body(case), headers=headers)
                    graphql_data(case, response.status_code, response.content)
                set_local = sum(s.lstrip().upper().startswith("SET LOCAL") for s in statements)
                counts[case.name] = StatementCount(len(statements), set_local)
    finally:
        await config.database.dispose()
    return counts


# Timing.

Measure = Callable[[], bytes | str]


def graphql_measure(client: httpx.Client, url: str, token: str, case: Case) -> Measure:
    body = request_body(case)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    def run() -> bytes:
        response = client.post(url, content=body, headers=headers)
        if response.status_code != 200:
            raise BenchError(f"{case.name}: HTTP {response.status_code}")
        return response.content

    return run


def sql_measure(connection: psycopg.Connection[Any], case: Case, set_local: str | None) -> Measure:
    def run() -> str:
        with connection.transaction():
            if set_local is not None:
                connection.execute(set_local)
            row = connection.execute(case.sql, case.sql_params).fetchone()
        if row is None or not isinstance(row[0], str):
            raise BenchError(f"{case.name}: the SQL returned no JSON text")
        return row[0]

    return run


def time_variants(
    variants: dict[str, Measure], references: dict[str, bytes | str], iterations: int
) -> dict[str, list[float]]:
    """Round-robin, rotating the order each iteration, so drift and noise hit every variant alike.
    Every answer must equal its verified reference byte for byte."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for iteration in range(WARMUP + iterations):
        shift = iteration % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            answer = variants[name]()
            elapsed = (time.perf_counter() - started) * 1000
            if answer != references[name]:
                raise BenchError(f"{name}: the answer changed between iterations")
            if iteration >= WARMUP:
                samples[name].append(elapsed)
    return samples


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summary(values: list[float]) -> dict[str, float | int]:
    return {
        "p50": round(percentile(values, 50), 3),
        "p95": round(percentile(values, 95), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


# The whole run.


@dataclass
class CaseResult:
    case: Case
    statements: StatementCount
    response_bytes: dict[str, int]
    timings: dict[str, dict[str, float | int]]


def measure_case(
    case: Case,
    client: httpx.Client,
    graphql_url: str,
    token: str,
    app: psycopg.Connection[Any],
    owner: psycopg.Connection[Any],
    set_local: str,
    app_set_local: str,
    statements: StatementCount,
) -> CaseResult:
    prefix, suffix = f"graphql_{case.name}", f"sql_{case.name}"
    variants: dict[str, Measure] = {
        prefix: graphql_measure(client, graphql_url, token, case),
        # As the API runs it: a whole-city context also switches to the tenant role (tenants.rls).
        f"{suffix}_app_rls": sql_measure(app, case, app_set_local),
        # The same transaction as the app role's, so the two differ only by the policies.
        f"{suffix}_owner": sql_measure(owner, case, set_local),
        # What a deployment without RLS would run: no SET LOCAL round trip either.
        f"{suffix}_owner_no_set_local": sql_measure(owner, case, None),
    }
    references = {name: run() for name, run in variants.items()}
    reference = references[prefix]
    assert isinstance(reference, bytes)
    data = graphql_data(case, 200, reference)
    for name, answer in references.items():
        if name != prefix:
            assert isinstance(answer, str)
            check_sql(case, answer, data)
    samples = time_variants(variants, references, case.iterations)
    sizes = {
        name: len(answer if isinstance(answer, bytes) else answer.encode())
        for name, answer in references.items()
    }
    return CaseResult(case, statements, sizes, {name: summary(values) for name, values in samples.items()})


def ratios(result: CaseResult) -> dict[str, dict[str, Any]]:
    name, t = result.case.name, result.timings

    def p50(key: str) -> float:
        return float(t[key]["p50"])

    graphql = p50(f"graphql_{name}") / p50(f"sql_{name}_app_rls")
    rls = p50(f"sql_{name}_app_rls") / p50(f"sql_{name}_owner")
    rls_all = p50(f"sql_{name}_app_rls") / p50(f"sql_{name}_owner_no_set_local")
    return {
        f"graphql_vs_sql_{name}": {
            "value": round(graphql, 3),
            "target": GRAPHQL_TARGET,
            "pass": graphql <= GRAPHQL_TARGET,
        },
        f"rls_overhead_{name}": {"value": round(rls, 3), "target": RLS_TARGET, "pass": rls <= RLS_TARGET},
        f"rls_overhead_incl_set_local_{name}": {"value": round(rls_all, 3), "target": None, "pass": None},
    }


def server_version(connection: psycopg.Connection[Any]) -> str:
    row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        return platform.processor() or "unknown"
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    names = ("strawberry-graphql", "graphql-core", "starlette", "uvicorn", "sqlalchemy", "psycopg", "httpx")
    return {name: metadata.version(name) for name in names}


def run(full_tree_iterations: int, district_page_iterations: int) -> dict[str, Any]:
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    with bench_database(load()) as settings:
        tenant_id = prepare(settings)
        token = issue_token(settings, tenant_id)
        bench_cases = cases(tenant_id, full_tree_iterations, district_page_iterations)
        statements = asyncio.run(count_statements(settings, token, bench_cases))
        context = TenantContext(tenant_id, (city_scope(tenant_id),), PRINCIPAL)
        set_local, app_set_local = (
            context.set_local_statement(),
            context.set_local_statement(settings.tenant_role),
        )
        with (
            api_server(settings) as base_url,
            httpx.Client(timeout=60) as client,
            psycopg.connect(settings.app_url, autocommit=True) as app,
            psycopg.connect(settings.owner_url, autocommit=True) as owner,
        ):
            results = [
                measure_case(
                    case,
                    client,
                    f"{base_url}/graphql",
                    token,
                    app,
                    owner,
                    set_local,
                    app_set_local,
                    statements[case.name],
                )
                for case in bench_cases
            ]
            postgres = server_version(app)
    figures: dict[str, Any] = {}
    all_ratios: dict[str, Any] = {}
    for result in results:
        figures.update(result.timings)
        all_ratios.update(ratios(result))
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgresql": postgres,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "packages": versions(),
        },
        "dataset": {
            "tenant": TENANT,
            "districts": DISTRICTS,
            "streets_per_district": STREETS,
            "stations_per_street": STATIONS,
            "seed": SEED,
        },
        "method": (
            f"warm-up {WARMUP} iterations, then round-robin over the variants with a rotating order; "
            "GraphQL: POST over loopback to a uvicorn subprocess, keep-alive client, body read in full; "
            "SQL: psycopg 3 connections kept open, BEGIN, SET LOCAL (except *_no_set_local), one statement "
            "returning the JSON text, COMMIT; ratios use p50"
        ),
        "queries": {
            result.case.name: {
                "nodes": result.case.expected_nodes,
                "iterations": result.case.iterations,
                "response_bytes": result.response_bytes,
                "statements_per_request": {
                    "total": result.statements.total,
                    "excluding_set_local": result.statements.excluding_set_local,
                },
            }
            for result in results
        },
        "timings_ms": figures,
        "ratios": all_ratios,
    }


def write_output(path: Path, figures: dict[str, Any], key: str = "hierarchy") -> None:
    """Merge `figures` into the results file under `key`, keeping the other benchmarks' figures."""
    existing: dict[str, Any] = {}
    if path.exists():
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise BenchError(f"{path} does not hold a JSON object; not overwriting it")
        existing = loaded
    existing[key] = figures
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def table(title: str, *columns: str) -> Table:
    """A table whose first column names the row and the others hold numbers."""
    result = Table(title=title)
    result.add_column(columns[0], no_wrap=True)
    for column in columns[1:]:
        result.add_column(column, justify="right")
    return result


def print_figures(figures: dict[str, Any], console: Console) -> None:
    timings = table("hierarchy benchmark (ms)", "measurement", "p50", "p95", "min", "n")
    for name, values in figures["timings_ms"].items():
        timings.add_row(name, *(f"{values[key]:.2f}" for key in ("p50", "p95", "min")), str(values["n"]))
    console.print(timings)

    checks = table("ratios (p50) against the issue's targets", "ratio", "value", "target", "result")
    for name, ratio in figures["ratios"].items():
        target = "—" if ratio["target"] is None else f"≤ {ratio['target']:.2f}"
        verdict = "—" if ratio["pass"] is None else ("[green]pass[/]" if ratio["pass"] else "[red]miss[/]")
        checks.add_row(name, f"{ratio['value']:.3f}", target, verdict)
    console.print(checks)

    queries = table("per query", "query", "nodes", "statements", "w/o SET LOCAL", "GraphQL B", "SQL B")
    for name, query in figures["queries"].items():
        statements, sizes = query["statements_per_request"], query["response_bytes"]
        queries.add_row(
            name,
            str(query["nodes"]),
            str(statements["total"]),
            str(statements["excluding_set_local"]),
            str(sizes[f"graphql_{name}"]),
            str(sizes[f"sql_{name}_app_rls"]),
        )
    console.print(queries)
    machine = figures["machine"]
    console.print(
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), PostgreSQL {machine['postgresql']}, "
        f"load {machine['load_average_before']} → {machine['load_average_after']}, {figures['date']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.hierarchy", description="The hierarchy benchmark."
    )
    parser.add_argument(
        "--iterations", type=int, help="timed iterations per query (default 30 full tree, 100 page)"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file, relative to the repo root"
    )
    args = parser.parse_args(argv)
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be at least 1")
    output: Path = args.output if args.output.is_absolute() else REPO_ROOT / args.output
    console = Console()
    try:
        figures = run(args.iterations or 30, args.iterations or 100)
    except BenchError as error:
        console.print(f"[red]benchmark failed:[/] {error}")
        return 1
    write_output(output, figures)
    print_figures(figures, console)
    console.print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
