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

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from rich.console import Console

from deploy import migrate
from deploy.settings import Settings, load
from tenants.context import TenantContext, city_scope
from tenants.roles import Role
from tests.bench import common

BENCH_DATABASE = "liaison_bench"
CITY = common.City("bench", districts=16, streets=20, stations=20, seed=1)
DISTRICT_CODE = "D001"
PRINCIPAL = "operator:bench"
WARMUP = 3
GRAPHQL_TARGET = 3.0
RLS_TARGET = 1.10

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
            1
            + CITY.districts
            + CITY.districts * CITY.streets
            + CITY.districts * CITY.streets * CITY.stations,
            full_tree_iterations,
        ),
        Case(
            "district_page",
            DISTRICT_PAGE_QUERY,
            {"code": DISTRICT_CODE},
            district_page_sql(),
            {"tenant_id": tenant_id, "code": DISTRICT_CODE},
            1 + min(CITY.streets, 20) + min(CITY.streets, 20) * min(CITY.stations, 10),
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
        raise common.BenchError(f"{case.name}: HTTP {status}: {body[:500]!r}")
    answer = json.loads(body)
    if answer.get("errors") or answer.get("data") is None:
        raise common.BenchError(f"{case.name}: GraphQL errors: {answer.get('errors')}")
    found = count_nodes(answer["data"])
    if found != case.expected_nodes:
        raise common.BenchError(
            f"{case.name}: GraphQL returned {found} nodes, expected {case.expected_nodes}"
        )
    return answer["data"]


def check_sql(case: Case, text: str, graphql: Any) -> None:
    data = json.loads(text)
    found = count_nodes(data)
    if found != case.expected_nodes:
        raise common.BenchError(f"{case.name}: SQL returned {found} nodes, expected {case.expected_nodes}")
    if data != graphql:
        raise common.BenchError(f"{case.name}: the SQL answer differs from the GraphQL answer")


# Setup.


def prepare(settings: Settings) -> int:
    """Migrate, seed the synthetic tenant, ANALYZE; returns the tenant id."""
    migrate.upgrade(settings)
    tenant_id = common.seed_city(settings, CITY).tenant_id
    common.maintain(settings, "ANALYZE")
    return tenant_id


def request_body(case: Case) -> bytes:
    return json.dumps({"query": case.query, "variables": case.variables}).encode()


def count_statements(
    settings: Settings, token: str, bench_cases: list[Case]
) -> dict[str, common.StatementCount]:
    """Statements per request of each case, counted in-process on the app's engine."""
    by_name = {case.name: case for case in bench_cases}
    return common.count_request_statements(
        settings,
        token,
        {case.name: request_body(case) for case in bench_cases},
        lambda name, response: graphql_data(by_name[name], response.status_code, response.content),
    )


# Timing.

Measure = Callable[[], bytes | str]


def graphql_measure(client: httpx.Client, url: str, token: str, case: Case) -> Measure:
    body = request_body(case)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    def run() -> bytes:
        response = client.post(url, content=body, headers=headers)
        if response.status_code != 200:
            raise common.BenchError(f"{case.name}: HTTP {response.status_code}")
        return response.content

    return run


def sql_measure(connection: psycopg.Connection[Any], case: Case, set_local: str | None) -> Measure:
    def run() -> str:
        with connection.transaction():
            if set_local is not None:
                connection.execute(set_local)
            row = connection.execute(case.sql, case.sql_params).fetchone()
        if row is None or not isinstance(row[0], str):
            raise common.BenchError(f"{case.name}: the SQL returned no JSON text")
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
                raise common.BenchError(f"{name}: the answer changed between iterations")
            if iteration >= WARMUP:
                samples[name].append(elapsed)
    return samples


# The whole run.


@dataclass
class CaseResult:
    case: Case
    statements: common.StatementCount
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
    statements: common.StatementCount,
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
    return CaseResult(
        case, statements, sizes, {name: common.summary(values) for name, values in samples.items()}
    )


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


def run(full_tree_iterations: int, district_page_iterations: int) -> dict[str, Any]:
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    with common.bench_database(load(), BENCH_DATABASE) as settings:
        tenant_id = prepare(settings)
        token = common.issue_token(settings, CITY.tenant, PRINCIPAL, [city_scope(tenant_id)], Role.CITY_ADMIN)
        bench_cases = cases(tenant_id, full_tree_iterations, district_page_iterations)
        statements = count_statements(settings, token, bench_cases)
        context = TenantContext(tenant_id, (city_scope(tenant_id),), PRINCIPAL)
        set_local, app_set_local = (
            context.set_local_statement(),
            context.set_local_statement(settings.tenant_role),
        )
        with (
            common.api_server(settings) as base_url,
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
            postgres = common.server_version(app)
    figures: dict[str, Any] = {}
    all_ratios: dict[str, Any] = {}
    for result in results:
        figures.update(result.timings)
        all_ratios.update(ratios(result))
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": common.machine(load_before, {"postgresql": postgres}),
        "dataset": CITY.dataset(),
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
                "statements_per_request": result.statements.figures(),
            }
            for result in results
        },
        "timings_ms": figures,
        "ratios": all_ratios,
    }


def print_figures(figures: dict[str, Any], console: Console) -> None:
    console.print(common.timings_table("hierarchy benchmark (ms)", [figures["timings_ms"]]))

    checks = common.table("ratios (p50) against the issue's targets", "ratio", "value", "target", "result")
    for name, ratio in figures["ratios"].items():
        target = "—" if ratio["target"] is None else f"≤ {ratio['target']:.2f}"
        verdict = "—" if ratio["pass"] is None else ("[green]pass[/]" if ratio["pass"] else "[red]miss[/]")
        checks.add_row(name, f"{ratio['value']:.3f}", target, verdict)
    console.print(checks)

    queries = common.table("per query", "query", "nodes", "statements", "w/o SET LOCAL", "GraphQL B", "SQL B")
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
    parser = common.argument_parser("hierarchy", "The hierarchy benchmark.")
    parser.add_argument(
        "--iterations", type=int, help="timed iterations per query (default 30 full tree, 100 page)"
    )
    args = parser.parse_args(argv)
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be at least 1")
    return common.measure_and_record(
        lambda: run(args.iterations or 30, args.iterations or 100), args.output, "hierarchy", print_figures
    )


if __name__ == "__main__":
    sys.exit(main())
