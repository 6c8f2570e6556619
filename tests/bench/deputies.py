"""The deputies' benchmark: the double list's batch match, and the statements of the deputies' list pages.

    .venv/bin/python -m tests.bench.deputies [--runs N] [--output ...]

(a) Matching, three ways, in one run:
    - the optimiser alone on a synthetic instance of 10,000 demands x 2,000 resources (stations on a
      10 x 10 grid 3 km apart; each resource serves 1-3 neighbouring stations with 1-3 of 8 skills and a
      monthly capacity of 2-8; each demand wants one skill; candidates lie within 10 km): wall time of the
      exact min-cost flow and of greedy (best pair first), and the ratio of their totals;
    - the optimiser against brute force on random instances small enough to enumerate (the totals must
      agree: any gap fails the benchmark);
    - `run_matching` end to end on a fresh database holding a synthetic city with shapes (4 districts x
      5 streets x 5 stations), 10,000 open demands and 2,000 resources kept by its streets: candidates
      from PostGIS, scores, the optimiser and the matches written, in a transaction rolled back after
      each run; against the bare candidate statement alone (as the owner), as a ratio.
(c) Statements per request of the list pages (deputies with their stations and volunteers; demands with
    their station and matches; matches), each at two page sizes: the counts must not grow with the page.

Figures go to the `deputies` key of tests/bench/results.json.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
from rich.console import Console

from deploy import migrate
from deploy.seed_deputies import seed_synthetic_deputies
from deploy.settings import Settings, load
from services.deputies.catalog import DEFAULT_SKILLS
from services.matching import repository, service
from services.matching.optimiser import Candidate, greedy, optimal
from services.matching.scoring import score
from services.unit_of_work import UnitOfWork
from tenants.context import TenantContext, city_scope
from tenants.db import Database
from tenants.roles import Role
from tests.bench import common
from tests.bench.geography import psycopg_sql
from tests.helpers import brute_force

BENCH_DATABASE = "liaison_deputiesbench"
CITY = common.City("deputiesbench", districts=4, streets=5, stations=5, seed=11)
DEMANDS, RESOURCES = 10_000, 2_000
SKILLS = 8
GRID, SPACING_METERS = 10, 3_000.0
BRUTE_INSTANCES = 400
PRINCIPAL = "operator:deputiesbench"
console = Console()


# (a) the optimiser alone, on a synthetic instance.


def synthetic_instance(seed: int) -> tuple[list[Candidate], dict[int, int]]:
    rng = random.Random(seed)
    stations = [(x * SPACING_METERS, y * SPACING_METERS) for x in range(GRID) for y in range(GRID)]
    served: list[list[int]] = []
    skills: list[set[int]] = []
    capacity: dict[int, int] = {}
    load: dict[int, int] = {}
    satisfaction: dict[int, float | None] = {}
    for r in range(RESOURCES):
        home = rng.randrange(len(stations))
        hx, hy = divmod(home, GRID)
        near = [
            (x * GRID + y)
            for x in range(max(0, hx - 1), min(GRID, hx + 2))
            for y in range(max(0, hy - 1), min(GRID, hy + 2))
        ]
        served.append([home, *rng.sample(near, rng.randint(0, 2))])
        skills.append(set(rng.sample(range(SKILLS), rng.randint(1, 3))))
        capacity[r] = rng.randint(2, 8)
        load[r] = rng.randint(0, 2)
        satisfaction[r] = None if rng.random() < 0.3 else rng.uniform(60, 100)
    candidates: list[Candidate] = []
    by_skill: dict[int, list[int]] = {
        k: [r for r in range(RESOURCES) if k in skills[r]] for k in range(SKILLS)
    }
    for d in range(DEMANDS):
        place = stations[rng.randrange(len(stations))]
        for r in by_skill[rng.randrange(SKILLS)]:
            distance = min(math.dist(place, stations[s]) for s in served[r])
            if distance > service.MAX_MATCH_DISTANCE_METERS:
                continue
            found = score(
                fit=1.0,
                distance_meters=distance,
                load=load[r],
                capacity=capacity[r],
                satisfaction=satisfaction[r],
            )
            candidates.append(Candidate(d, r, found.total))
    spare = {r: capacity[r] - load[r] for r in range(RESOURCES)}
    return candidates, spare


def optimiser_alone(runs: int) -> dict[str, Any]:
    console.log(f"synthetic instance: {DEMANDS:,} demands x {RESOURCES:,} resources")
    candidates, spare = synthetic_instance(CITY.seed)
    optimal_seconds: list[float] = []
    greedy_seconds: list[float] = []
    for _ in range(runs):
        began = time.perf_counter()
        best = optimal(candidates, spare)
        optimal_seconds.append(time.perf_counter() - began)
        began = time.perf_counter()
        baseline = greedy(candidates, spare)
        greedy_seconds.append(time.perf_counter() - began)
    if best.total + 1e-6 < baseline.total:
        raise common.BenchError(f"the optimiser's total {best.total} is below greedy's {baseline.total}")
    return {
        "demands": DEMANDS,
        "resources": RESOURCES,
        "candidates": len(candidates),
        "total_capacity": sum(spare.values()),
        "optimal_seconds": common.summary(optimal_seconds),
        "greedy_seconds": common.summary(greedy_seconds),
        "optimal_total": best.total,
        "greedy_total": baseline.total,
        "optimal_matched": len(best.pairs),
        "greedy_matched": len(baseline.pairs),
        "total_optimal_vs_greedy": round(best.total / baseline.total, 5),
    }


def against_brute_force() -> dict[str, Any]:
    rng = random.Random(CITY.seed)
    worst_gap, greedy_below = 0.0, 0
    for _ in range(BRUTE_INSTANCES):
        demands, resources = rng.randint(1, 8), rng.randint(1, 4)
        candidates = [
            Candidate(d, r, round(rng.uniform(0.05, 1.0), 6))
            for d in range(demands)
            for r in range(resources)
            if rng.random() < 0.7
        ]
        capacity = {r: rng.randint(0, 3) for r in range(resources)}
        exact = brute_force(candidates, capacity)
        found = optimal(candidates, capacity).total
        worst_gap = max(worst_gap, abs(found - exact))
        greedy_below += greedy(candidates, capacity).total < exact - 1e-9
    if worst_gap > 1e-5:
        raise common.BenchError(f"the optimiser missed the brute-force optimum by {worst_gap}")
    return {
        "instances": BRUTE_INSTANCES,
        "largest": "8 demands x 4 resources",
        "largest_gap": round(worst_gap, 9),
        "instances_where_greedy_is_below_the_optimum": greedy_below,
    }


# (a) run_matching end to end on a database.


def seed_double_list(settings: Settings, tenant_id: int) -> None:
    """10,000 open demands at random stations (categories a skill serves) and 2,000 resources kept by
    the streets, each serving 1-2 of its street's stations, written as the owner."""
    rng = random.Random(CITY.seed)
    with psycopg.connect(settings.owner_url) as connection:
        stations = connection.execute(
            "SELECT s.id, s.scope::text, t.scope::text FROM stations s "
            "JOIN streets t ON t.tenant_id = s.tenant_id AND t.id = s.street_id "
            "WHERE s.tenant_id = %s ORDER BY s.id",
            (tenant_id,),
        ).fetchall()
        served = {code for skill in DEFAULT_SKILLS for code in skill.categories}
        categories = [
            (int(i), str(kind))
            for i, code, kind in connection.execute(
                "SELECT id, code, kind FROM request_categories WHERE tenant_id = %s ORDER BY id", (tenant_id,)
            )
            if code in served
        ]
        by_street: dict[str, list[tuple[int, str]]] = {}
        for station_id, scope, street in stations:
            by_street.setdefault(street, []).append((station_id, scope))
        streets = sorted(by_street)
        skill_codes = [s.code for s in DEFAULT_SKILLS]
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO resources (tenant_id, scope, name, owner_kind, offer, skills, monthly_capacity, "
                "synthetic) VALUES (%s, %s::ltree, %s, %s, 'service', %s, %s, true)",
                [
                    (
                        tenant_id,
                        streets[r % len(streets)],
                        f"资源{r}",
                        rng.choice(("deputy", "department", "organisation", "enterprise")),
                        rng.sample(skill_codes, rng.randint(1, 3)),
                        rng.randint(2, 8),
                    )
                    for r in range(RESOURCES)
                ],
            )
            resources = connection.execute(
                "SELECT id, scope::text FROM resources WHERE tenant_id = %s ORDER BY id", (tenant_id,)
            ).fetchall()
            cursor.executemany(
                "INSERT INTO resource_stations (tenant_id, resource_id, station_id, scope) "
                "VALUES (%s, %s, %s, %s::ltree) ON CONFLICT DO NOTHING",
                [
                    (tenant_id, resource_id, station_id, scope)
                    for resource_id, street in resources
                    for station_id, scope in rng.sample(by_street[street], rng.randint(1, 2))
                ],
            )
            cursor.executemany(
                "INSERT INTO demands (tenant_id, scope, station_id, category_id, kind, title, households, "
                "source, created_by, synthetic) "
                "VALUES (%s, %s::ltree, %s, %s, %s, %s, %s, 'survey', %s, true)",
                [
                    (
                        tenant_id,
                        scope,
                        station_id,
                        category_id,
                        kind,
                        f"需求{d}",
                        rng.randint(1, 40),
                        PRINCIPAL,
                    )
                    for d in range(DEMANDS)
                    for (station_id, scope, _), (category_id, kind) in [
                        (rng.choice(stations), rng.choice(categories))
                    ]
                ],
            )
        connection.commit()


def end_to_end(settings: Settings, tenant_id: int, runs: int) -> dict[str, Any]:
    context = TenantContext.whole_tenant(tenant_id, PRINCIPAL)
    kinds = frozenset({Role.CITY_ADMIN.value})

    async def measure() -> tuple[list[float], Any]:
        database = Database(settings.app_url)
        seconds: list[float] = []
        last: Any = None
        try:
            for _ in range(runs + 1):  # the first warms the caches
                work = UnitOfWork(database, context)
                session = await work.session()
                began = time.perf_counter()
                last = await service.run_matching(session, context, kinds, city_scope(tenant_id))
                seconds.append(time.perf_counter() - began)
                last = {
                    "demands": last.demands,
                    "candidates": last.candidates,
                    "matched": last.matched,
                    "total": last.total_score,
                    "greedy": last.greedy_score,
                }
                await work.rollback()
        finally:
            await database.dispose()
        return seconds[1:], last

    console.log(f"run_matching end to end, {runs} runs rolled back")
    seconds, found = asyncio.run(measure())
    bare: list[float] = []
    with psycopg.connect(settings.owner_url) as connection:
        statement = psycopg_sql(repository.CANDIDATES)
        for _ in range(runs + 1):
            began = time.perf_counter()
            pairs = connection.execute(
                statement, {"tenant_id": tenant_id, "scope": city_scope(tenant_id)}
            ).fetchall()
            bare.append(time.perf_counter() - began)
    if len(pairs) < found["candidates"]:
        raise common.BenchError(f"the bare statement found {len(pairs)} pairs, the run {found['candidates']}")
    if found["total"] + 1e-6 < found["greedy"]:
        raise common.BenchError("the run's total is below greedy's")
    run_p50, bare_p50 = statistics.median(seconds), statistics.median(bare[1:])
    return {
        **found,
        "run_seconds": common.summary(seconds),
        "bare_candidates_sql_seconds": common.summary(bare[1:]),
        "run_vs_bare_candidates_sql": round(run_p50 / bare_p50, 2),
        "total_optimal_vs_greedy": round(found["total"] / found["greedy"], 5) if found["greedy"] else None,
    }


# (c) statements per list page.

PAGES = {
    "deputies": "{ deputies(first: %d) { totalCount edges { node { name skills "
    "stations { code street { name } } volunteers { name } } } } }",
    "demands": "{ demands(first: %d) { totalCount edges { node { title category station { code } "
    "matches { state score } } } } }",
    "matches": "{ matches(first: %d) { totalCount edges { node { state score terms } } } }",
}
PAGE_SIZES = (10, 30)


def statements_per_page(settings: Settings, tenant_id: int) -> dict[str, Any]:
    async def seed_deputies_and_matches() -> None:
        database = Database(settings.app_url)
        try:
            await seed_synthetic_deputies(database, tenant_id)
            context = TenantContext.whole_tenant(tenant_id, PRINCIPAL)
            work = UnitOfWork(database, context)
            session = await work.session()
            await service.run_matching(
                session, context, frozenset({Role.CITY_ADMIN.value}), city_scope(tenant_id)
            )
            await work.commit()
        finally:
            await database.dispose()

    asyncio.run(seed_deputies_and_matches())
    token = common.issue_token(settings, CITY.tenant, PRINCIPAL, [city_scope(tenant_id)], Role.CITY_ADMIN)
    bodies = {
        f"{name} first {size}": json.dumps({"query": query % size})
        for name, query in PAGES.items()
        for size in PAGE_SIZES
    }

    def check(name: str, response: httpx.Response) -> None:
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise common.BenchError(f"{name}: {response.status_code} {body}")
        (listed,) = body["data"].values()
        if len(listed["edges"]) != int(name.rsplit(" ", 1)[1]):
            raise common.BenchError(f"{name}: the page holds {len(listed['edges'])} rows")

    counts = common.count_request_statements(settings, token, bodies, check)
    figures = {name: count.figures() for name, count in counts.items()}
    for name in PAGES:
        sizes = {figures[f"{name} first {size}"]["total"] for size in PAGE_SIZES}
        if len(sizes) != 1:
            raise common.BenchError(f"{name}: statements grow with the page: {figures}")
    return figures


def run(runs: int) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    load_before = os.getloadavg()
    alone = optimiser_alone(runs)
    brute = against_brute_force()
    with common.bench_database(load(), BENCH_DATABASE) as settings:
        migrate.upgrade(settings)
        console.log("seeding the synthetic city with shapes, demands and resources")
        began = time.perf_counter()
        tenant_id = common.seed_city(settings, CITY, shapes=True).tenant_id
        seed_double_list(settings, tenant_id)
        common.maintain(settings, "VACUUM ANALYZE")
        seeding = time.perf_counter() - began
        database_run = end_to_end(settings, tenant_id, runs)
        statements = statements_per_page(settings, tenant_id)
        with psycopg.connect(settings.owner_url) as connection:
            facts = {"postgresql": common.server_version(connection)}
    return {
        "date": started_at.isoformat(timespec="seconds"),
        "machine": common.machine(load_before, facts),
        "dataset": {
            **CITY.dataset(),
            "demands": DEMANDS,
            "resources": RESOURCES,
            "seeding_seconds": round(seeding, 1),
        },
        "optimiser_alone": alone,
        "brute_force": brute,
        "run_matching": database_run,
        "statements_per_page": statements,
    }


def print_figures(figures: dict[str, Any], out: Console) -> None:
    alone, db, brute = figures["optimiser_alone"], figures["run_matching"], figures["brute_force"]
    matching = common.table("double list: batch match", "measurement", "value")
    matching.add_row("synthetic candidates", f"{alone['candidates']:,}")
    matching.add_row("optimiser p50 s", f"{alone['optimal_seconds']['p50']:.2f}")
    matching.add_row("greedy p50 s", f"{alone['greedy_seconds']['p50']:.2f}")
    matching.add_row("total optimal / greedy", f"{alone['total_optimal_vs_greedy']:.5f}")
    matching.add_row("brute-force instances, largest gap", f"{brute['instances']}, {brute['largest_gap']}")
    matching.add_row("run_matching candidates (PostGIS)", f"{db['candidates']:,}")
    matching.add_row("run_matching p50 s", f"{db['run_seconds']['p50']:.2f}")
    matching.add_row("bare candidate SQL p50 s", f"{db['bare_candidates_sql_seconds']['p50']:.2f}")
    matching.add_row("run / bare candidate SQL", f"{db['run_vs_bare_candidates_sql']:.2f}")
    matching.add_row("run total optimal / greedy", f"{db['total_optimal_vs_greedy']}")
    out.print(matching)
    pages = common.table("statements per request", "page", "total", "excluding SET LOCAL")
    for name, values in figures["statements_per_page"].items():
        pages.add_row(name, str(values["total"]), str(values["excluding_set_local"]))
    out.print(pages)


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser("deputies", "The deputies' benchmark.")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each measurement")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return common.measure_and_record(lambda: run(args.runs), args.output, "deputies", print_figures)


if __name__ == "__main__":
    raise SystemExit(main())
