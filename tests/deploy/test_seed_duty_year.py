"""The demo's year of duty: synthetic deputies get activities over the last year and the points verifying
them would have earned, once (a second seed adds nothing), audited as one link; some deputies lag enough
for the weekly warnings to have something to say."""

from __future__ import annotations

from collections import Counter

from deploy.seed import seed_synthetic
from deploy.seed_deputies import seed_duty_year, seed_synthetic_deputies
from services.deputies import five_ones, warnings
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tests.helpers import select_rows


async def test_a_year_of_duty_is_seeded_once_with_its_points(database: Database, owner_dsn: str) -> None:
    city = await seed_synthetic(database, "dutyyear", districts=1, streets=2, stations=6, seed=5)
    tenant_id = city.tenant_id
    made = await seed_synthetic_deputies(database, tenant_id)
    assert made.deputies == 4  # one per three stations of each street
    year = await seed_duty_year(database, tenant_id)
    assert 4 * 8 <= year.activities <= 4 * 47
    states = Counter(
        dict(
            select_rows(
                owner_dsn,
                "SELECT state, count(*) FROM activities WHERE tenant_id = %s GROUP BY state",
                tenant_id,
            )
        )
    )
    assert sum(states.values()) == year.activities and states["verified"] > states["reported"]
    assert year.point_entries == states["verified"] + states["rejected"]
    ((balance,),) = select_rows(
        owner_dsn, "SELECT sum(points) FROM point_entries WHERE tenant_id = %s", tenant_id
    )
    assert balance > 0
    assert select_rows(
        owner_dsn,
        "SELECT count(*) FROM audit_log WHERE tenant_id = %s AND action = 'points.seeded'",
        tenant_id,
    ) == [(1,)]
    again = await seed_duty_year(database, tenant_id)
    assert (again.activities, again.point_entries) == (0, 0)

    async with unit_of_work(database, TenantContext.whole_tenant(tenant_id, "system:test")) as session:
        _, found = await five_ones.compliance(session, tenant_id, f"c{tenant_id}", None)
    assert len(found) == 4
    _, outcomes = await warnings.evaluate(database, tenant_id)
    assert sum(outcomes.values()) == 4
    _, rerun = await warnings.evaluate(database, tenant_id)
    assert sum(rerun.values()) == 0
