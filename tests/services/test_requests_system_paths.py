"""The requests domain's system-context paths, each pinned from a sibling scope or another tenant: the
rating code's one check, the submitter's (and a merged submitter's) way to their rating, follower rows
under row-level security, the manual-routing queue and the hotline import, which are an operator's for
one tenant."""

from __future__ import annotations

import pytest
from shapely import box
from sqlalchemy import select

from services.errors import NotFound
from services.reach import acting_on
from services.requests import service
from services.requests.hotline import import_hotline
from services.requests.intake import Receipt, Submission, intake_context, submit
from services.requests.models import Request, RequestFollower
from services.requests.progress import public_context
from services.requests.relocate import relocate_unrouted
from services.requests.service import Actor
from services.unit_of_work import unit_of_work
from tenants.context import TenantContext
from tenants.db import Database
from tenants.principals import resident_scope
from tests.requests_city import City, add_cell, build_city


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "syscity")


@pytest.fixture(scope="module")
async def other(database: Database) -> City:
    return await build_city(database, "sysother")


async def _submit(database: Database, city: City, k: int, **overrides: object) -> Receipt:
    lon, lat = city.point(k)
    values: dict[str, object] = {"category": "environment", "description": "垃圾", "channel": "app"}
    values.update({"lon": lon, "lat": lat, **overrides})
    async with unit_of_work(database, intake_context(city.tenant.tenant_id)) as session:
        return await submit(session, city.tenant.tenant_id, Submission(**values))  # type: ignore[arg-type]


def _liaison(city: City, k: int) -> tuple[Actor, TenantContext]:
    scope = city.stations[k].scope
    principal = "user:9801"
    return Actor(principal, frozenset({"station_liaison"}), (scope,)), TenantContext(
        city.tenant.tenant_id, (scope,), principal
    )


async def _resolve(database: Database, city: City, k: int, request_id: int) -> None:
    actor, context = _liaison(city, k)
    tenant_id = city.tenant.tenant_id
    async with unit_of_work(database, context) as session:
        await service.accept(session, actor, tenant_id, request_id)
        await service.assign(session, actor, tenant_id, request_id, assignee=actor.principal)
        await service.resolve(session, actor, tenant_id, request_id, "已处理")


async def test_a_rating_code_names_its_own_request_and_nothing_else(database: Database, city: City) -> None:
    """`service.code_rating_place` is the one check of a rating code."""
    tenant_id = city.tenant.tenant_id
    mine = await _submit(database, city, 0, rating_code=True)
    theirs = await _submit(database, city, 1, rating_code=True)
    assert mine.rating_code and theirs.rating_code and mine.check_code
    async with database.scoped(public_context(tenant_id)) as session:
        found = await service.code_rating_place(session, tenant_id, mine.ticket, mine.rating_code)
        for ticket, code in [
            (theirs.ticket, mine.rating_code),  # another request's ticket
            (mine.ticket, mine.check_code),  # the check code reads, it does not rate
            (mine.ticket, "2345-6789-ABCD"),
            (mine.ticket, ""),
            ("no-such-ticket", mine.rating_code),
        ]:
            assert await service.code_rating_place(session, tenant_id, ticket, code) is None, (ticket, code)
    assert found is not None
    holder, place = found
    assert holder.principal == f"ratingcode:{mine.request_id}" and place.request_id == mine.request_id
    assert place.target.scope == city.stations[0].scope
    # Even handed a context on another request, the holder of this code may not rate it.
    await _resolve(database, city, 1, theirs.request_id)
    other_scope = TenantContext(tenant_id, (city.stations[1].scope,), holder.principal)
    async with unit_of_work(database, other_scope) as session:
        actor = Actor(holder.principal, frozenset(), other_scope.scopes)
        with pytest.raises(NotFound):
            await service.rate(session, actor, tenant_id, theirs.request_id, score=100, solved=True)


async def test_a_submitter_is_led_to_their_own_request_or_the_one_it_follows(
    database: Database, city: City
) -> None:
    tenant_id = city.tenant.tenant_id
    survivor = await _submit(database, city, 2, owner_principal="user:9811", category="parking")
    merged = await _submit(database, city, 2, owner_principal="user:9812", category="parking")
    actor, context = _liaison(city, 2)
    async with unit_of_work(database, context) as session:
        await service.merge(session, actor, tenant_id, merged.request_id, survivor.request_id, "同一处")

    def resident(principal: str) -> TenantContext:
        return TenantContext(tenant_id, (resident_scope(tenant_id),), principal)

    async with database.scoped(resident("user:9812")) as session:
        place = await service.rating_place(
            session, Actor("user:9812", frozenset({"resident"}), ()), tenant_id, merged.request_id
        )
        # Row-level security shows a resident the follower rows naming them, and no others.
        follows = (await session.scalars(select(RequestFollower))).all()
    assert place is not None and place.request_id == survivor.request_id and place.own.id == merged.request_id
    assert [(f.request_id, f.merged_id) for f in follows] == [(survivor.request_id, merged.request_id)]
    assert acting_on(resident("user:9812"), place.target, what="x").scopes == (city.stations[2].scope,)
    async with database.scoped(resident("user:9811")) as session:
        assert (await session.scalars(select(RequestFollower))).all() == []
        with pytest.raises(NotFound):  # not theirs: row-level security does not show it
            await service.rating_place(
                session, Actor("user:9811", frozenset({"resident"}), ()), tenant_id, merged.request_id
            )
    # Another station's liaison reaches neither the survivor nor its followers.
    _, sibling = _liaison(city, 3)
    async with database.scoped(sibling) as session:
        assert (await session.scalars(select(RequestFollower))).all() == []


async def test_the_manual_routing_queue_is_one_tenants(database: Database, city: City, other: City) -> None:
    """`liaison requests relocate --tenant` runs as the system for one tenant: another tenant's queued
    request is neither tried nor routed, even where that tenant has a cell covering it."""
    lon, lat = 116.41, 39.96  # inside both cities' districts, outside every cell
    mine = await _submit(database, city, 0, lon=lon, lat=lat)
    theirs = await _submit(database, other, 0, lon=lon, lat=lat)
    assert not mine.routed and not theirs.routed
    await add_cell(database, other, 1, "G-late", "新网格", box(116.405, 39.955, 116.415, 39.965))
    system = TenantContext.whole_tenant(other.tenant.tenant_id, "system:test")
    async with unit_of_work(
        database, TenantContext.whole_tenant(city.tenant.tenant_id, "system:cli")
    ) as session:
        report = await relocate_unrouted(session, city.tenant.tenant_id)
    assert report.routed == 0
    async with unit_of_work(database, system) as session:
        row = await session.get(Request, (other.tenant.tenant_id, theirs.request_id))
        assert row is not None and row.station_id is None
        again = await relocate_unrouted(session, other.tenant.tenant_id)
    assert again.routed == 1


async def test_a_hotline_import_sees_only_its_own_tenants_tickets(
    database: Database, city: City, other: City
) -> None:
    """The import runs as the system for the tenant named on the command line: another tenant's request
    with the same hotline ticket is neither found nor answered."""
    lon, lat = city.point(1)
    data = (
        "工单编号,来电时间,诉求类别,诉求内容,经度,纬度,联系电话\n"
        f"HL-SHARED-1,2026-11-25 09:30,environment,楼下积水,{lon},{lat},13800000000\n"
    ).encode()
    first = await import_hotline(database, other.tenant.tenant_id, data)
    mine = await import_hotline(database, city.tenant.tenant_id, data)
    assert [o.status for o in first.outcomes] == ["imported"] and [o.status for o in mine.outcomes] == [
        "imported"
    ]
    async with database.scoped(intake_context(city.tenant.tenant_id)) as session:
        rows = (await session.scalars(select(Request).where(Request.external_id == "HL-SHARED-1"))).all()
    assert [row.tenant_id for row in rows] == [city.tenant.tenant_id]
