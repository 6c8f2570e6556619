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
(b) Five-ones compliance and the points leaderboard for a city of 2,000 deputies (kept by its streets, each
    linked to one station) and 200,000 activities over the year before a fixed day (90% verified; a point
    entry per verified one, as verification writes it): `fiveOnes` of the whole city (every deputy, what
    each rule still wants) and `pointsLeaderboard` (year, first 50) through the real API over HTTP, against
    the bare SQL that computes the same rows (as the owner), as ratios in the same run.
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
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
from rich.console import Console

from deploy import migrate
from deploy.seed_deputies import seed_synthetic_deputies
from deploy.settings import Settings, load
from services.deputies import five_ones, points
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


# (b) five ones and the leaderboard at city scale.

DUTY_DEPUTIES, DUTY_ACTIVITIES = 2_000, 200_000
AS_OF = date(2026, 11, 18)
BEIJING = ZoneInfo("Asia/Shanghai")
KINDS = ("visit", "visit", "visit", "reception", "policy_talk", "research", "problem_solved", "duty_report")

SEED_ACTIVITIES = """
WITH numbered AS (
  SELECT d.id, d.principal, ds.station_id, ds.scope, row_number() OVER (ORDER BY d.id) - 1 AS n
  FROM deputies d JOIN deputy_stations ds ON ds.tenant_id = d.tenant_id AND ds.deputy_id = d.id
  WHERE d.tenant_id = %(tenant_id)s AND d.name LIKE '履职代表%%'
)
INSERT INTO activities (tenant_id, scope, deputy_id, station_id, owner_principal, kind, title, starts_at,
                        state, created_by, synthetic, reported_at, verified_at)
SELECT %(tenant_id)s, n.scope, n.id, n.station_id, n.principal,
       (%(kinds)s::text[])[1 + (g / %(deputies)s) %% array_length(%(kinds)s::text[], 1)], '走访', at,
       CASE WHEN (g / %(deputies)s) %% 10 = 3 THEN 'reported' ELSE 'verified' END, 'bench', true, at, at
FROM generate_series(0::bigint, %(activities)s - 1) g
JOIN numbered n ON n.n = g %% %(deputies)s  -- a deputy's k-th activity is g / deputies
CROSS JOIN LATERAL (
  SELECT %(as_of)s::timestamptz - ((g * 2654435761) %% 31536000) * interval '1 second' AS at
) t
"""
SEED_ENTRIES = """
INSERT INTO point_entries (tenant_id, scope, deputy_id, owner_principal, event, points, source_kind,
                           source_id, earned_at, created_by)
SELECT tenant_id, scope, deputy_id, owner_principal, 'activity.' || kind,
       CASE kind WHEN 'visit' THEN 2 WHEN 'research' THEN 5 WHEN 'problem_solved' THEN 5
                 WHEN 'duty_report' THEN 5 ELSE 3 END, 'activity', id, verified_at, 'bench'
FROM activities WHERE tenant_id = %(tenant_id)s AND state = 'verified' AND created_by = 'bench'
"""
# What `fiveOnes` answers, in one statement: per deputy and rule, the verified activities in the rule's
# period up to the day, and what is missing.
BARE_FIVE_ONES = """
WITH rules(kind, since, required) AS (SELECT * FROM unnest(%(kinds)s::text[], %(since)s::timestamptz[],
                                                           %(required)s::int[])),
done AS (
  SELECT a.deputy_id, a.kind, count(*) AS n
  FROM activities a JOIN rules r ON r.kind = a.kind AND a.starts_at >= r.since
  WHERE a.tenant_id = %(tenant_id)s AND a.state = 'verified' AND a.starts_at < %(until)s
  GROUP BY a.deputy_id, a.kind
)
SELECT d.id, d.name, r.kind, coalesce(done.n, 0) AS done, greatest(r.required - coalesce(done.n, 0), 0)
FROM deputies d CROSS JOIN rules r
LEFT JOIN done ON done.deputy_id = d.id AND done.kind = r.kind
WHERE d.tenant_id = %(tenant_id)s
ORDER BY d.id, r.kind
"""
FIVE_ONES_QUERY = (
    '{ fiveOnes(asOf: "%s") { deputies compliant share items { compliant deputy { id name } '
    "owed { kind done missing due } } } }"
)
LEADERBOARD_QUERY = (
    '{ pointsLeaderboard(period: YEAR, asOf: "%s", first: 50) { periodStart standings { totalCount '
    "edges { node { rank points entries deputy { id name } } } } } }"
)


def seed_duty_city(settings: Settings, tenant_id: int) -> dict[str, int]:
    """2,000 deputies over the city's streets, each linked to a station of its street; 200,000 activities
    spread over the year before AS_OF; a point entry for each verified one. As the owner, in SQL."""
    with psycopg.connect(settings.owner_url) as connection:
        stations = connection.execute(
            "SELECT s.id, s.scope::text, t.scope::text FROM stations s "
            "JOIN streets t ON t.tenant_id = s.tenant_id AND t.id = s.street_id "
            "WHERE s.tenant_id = %s ORDER BY s.id",
            (tenant_id,),
        ).fetchall()
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO deputies (tenant_id, scope, name, level, term_start, principal, synthetic) "
                "VALUES (%s, %s::ltree, %s, 'district', '2022-01-01', %s, true)",
                [
                    (tenant_id, stations[n % len(stations)][2], f"履职代表{n}", f"user:{800_000 + n}")
                    for n in range(DUTY_DEPUTIES)
                ],
            )
            deputies = connection.execute(
                "SELECT id FROM deputies WHERE tenant_id = %s AND name LIKE '履职代表%%' ORDER BY id",
                (tenant_id,),
            ).fetchall()
            cursor.executemany(
                "INSERT INTO deputy_stations (tenant_id, deputy_id, station_id, scope, linked_by) "
                "VALUES (%s, %s, %s, %s::ltree, 'bench')",
                [
                    (tenant_id, deputy_id, stations[n % len(stations)][0], stations[n % len(stations)][1])
                    for n, (deputy_id,) in enumerate(deputies)
                ],
            )
        as_of = datetime.combine(AS_OF, clock(18), tzinfo=BEIJING)
        params = {
            "tenant_id": tenant_id,
            "kinds": list(KINDS),
            "activities": DUTY_ACTIVITIES,
            "deputies": DUTY_DEPUTIES,
            "as_of": as_of,
        }
        activities = connection.execute(SEED_ACTIVITIES, params).rowcount
        entries = connection.execute(SEED_ENTRIES, {"tenant_id": tenant_id}).rowcount
        connection.commit()
    return {"deputies": DUTY_DEPUTIES, "activities": activities, "point_entries": entries}


def duty_at_scale(settings: Settings, tenant_id: int, runs: int) -> dict[str, Any]:
    token = common.issue_token(settings, CITY.tenant, PRINCIPAL, [city_scope(tenant_id)], Role.CITY_ADMIN)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    windows = {kind: five_ones.period_of(AS_OF, period)[0] for kind, period, _ in five_ones.DEFAULT_RULES}

    def instant(day: date) -> datetime:
        return datetime.combine(day, clock.min, tzinfo=BEIJING)

    five_params = {
        "tenant_id": tenant_id,
        "kinds": [kind for kind, _, _ in five_ones.DEFAULT_RULES],
        "since": [instant(windows[kind]) for kind, _, _ in five_ones.DEFAULT_RULES],
        "required": [required for _, _, required in five_ones.DEFAULT_RULES],
        "until": instant(AS_OF + timedelta(days=1)),
    }
    year_start, year_end = five_ones.period_of(AS_OF, "year")
    board_params = {
        "tenant_id": tenant_id,
        "scope": city_scope(tenant_id),
        "since": instant(year_start),
        "until": instant(year_end),
        "limit": 51,
        "offset": 0,
    }

    def timed(call: Any) -> tuple[list[float], Any]:
        seconds, answer = [], None
        for _ in range(runs + 1):  # the first warms the caches
            began = time.perf_counter()
            answer = call()
            seconds.append(time.perf_counter() - began)
        return seconds[1:], answer

    with (
        common.api_server(settings) as base_url,
        httpx.Client(timeout=300) as client,
        psycopg.connect(settings.owner_url, autocommit=True) as owner,
    ):

        def graphql(query: str) -> Any:
            response = client.post(
                f"{base_url}/graphql", content=json.dumps({"query": query}), headers=headers
            )
            body = response.json()
            if response.status_code != 200 or body.get("errors"):
                raise common.BenchError(f"{response.status_code} {str(body)[:500]}")
            return body["data"]

        console.log("five ones: GraphQL against the bare statement")
        five_api, report = timed(lambda: graphql(FIVE_ONES_QUERY % AS_OF.isoformat())["fiveOnes"])
        five_sql, bare_rows = timed(lambda: owner.execute(BARE_FIVE_ONES, five_params).fetchall())
        if report["deputies"] * len(five_ones.DEFAULT_RULES) != len(bare_rows):
            raise common.BenchError(
                f"fiveOnes holds {report['deputies']} deputies, the bare SQL {len(bare_rows)} rows"
            )
        if not 0 < report["compliant"] < report["deputies"]:
            raise common.BenchError(
                f"{report['compliant']} of {report['deputies']} compliant: the data is skewed"
            )
        missing_api = sum(o["missing"] for item in report["items"] for o in item["owed"])
        missing_sql = sum(int(row[4]) for row in bare_rows)
        if missing_api != missing_sql:
            raise common.BenchError(f"fiveOnes misses {missing_api}, the bare SQL {missing_sql}")
        console.log("leaderboard: GraphQL against the bare statement")
        board_api, board = timed(lambda: graphql(LEADERBOARD_QUERY % AS_OF.isoformat())["pointsLeaderboard"])
        board_sql, bare_board = timed(
            lambda: owner.execute(psycopg_sql(points.LEADERBOARD), board_params).fetchall()
        )
        top_api = [e["node"]["points"] for e in board["standings"]["edges"]]
        top_sql = [int(row[2]) for row in bare_board[:50]]
        if top_api != top_sql:
            raise common.BenchError(f"the leaderboards differ: {top_api[:5]} against {top_sql[:5]}")
    five_ratio = statistics.median(five_api) / statistics.median(five_sql)
    board_ratio = statistics.median(board_api) / statistics.median(board_sql)
    return {
        "as_of": AS_OF.isoformat(),
        "five_ones": {
            "deputies": report["deputies"],
            "compliant": report["compliant"],
            "graphql_seconds": common.summary(five_api),
            "bare_sql_seconds": common.summary(five_sql),
            "graphql_vs_bare_sql": round(five_ratio, 2),
        },
        "leaderboard": {
            "ranked": board["standings"]["totalCount"],
            "top_points": top_api[0] if top_api else None,
            "graphql_seconds": common.summary(board_api),
            "bare_sql_seconds": common.summary(board_sql),
            "graphql_vs_bare_sql": round(board_ratio, 2),
        },
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
        console.log("seeding a year of duty: 2,000 deputies, 200,000 activities")
        began = time.perf_counter()
        duty_dataset: dict[str, float] = {**seed_duty_city(settings, tenant_id)}
        common.maintain(settings, "VACUUM ANALYZE")
        duty_dataset["seeding_seconds"] = round(time.perf_counter() - began, 1)
        duty = {"dataset": duty_dataset, **duty_at_scale(settings, tenant_id, runs)}
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
        "duty_at_scale": duty,
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
    duty = figures["duty_at_scale"]
    scale = common.table(
        f"five ones and leaderboard: {duty['dataset']['deputies']:,} deputies, "
        f"{duty['dataset']['activities']:,} activities",
        "measurement",
        "GraphQL p50 s",
        "bare SQL p50 s",
        "ratio",
    )
    for name in ("five_ones", "leaderboard"):
        found = duty[name]
        scale.add_row(
            name.replace("_", " "),
            f"{found['graphql_seconds']['p50']:.3f}",
            f"{found['bare_sql_seconds']['p50']:.3f}",
            f"{found['graphql_vs_bare_sql']:.2f}",
        )
    out.print(scale)
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
