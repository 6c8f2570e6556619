"""Requests through the service layer on the real database: intake, routing, the declared lifecycle,
ratings, duplicates, deadlines in working days, and escalation fired by the beat job's sweep."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from shapely import box
from sqlalchemy import func, select, text

from services.audit.service import verify
from services.errors import Conflict, InvalidInput
from services.reach import Target, acting_on
from services.requests import service
from services.requests.intake import Submission, intake_context, submit
from services.requests.models import Request
from services.requests.progress import by_receipt, public_context
from services.requests.relocate import relocate_unrouted
from services.requests.service import Actor
from services.timers.models import Timer
from services.timers.service import sweep
from services.unit_of_work import unit_of_work
from services.workflow.machine import IllegalTransition, NotAllowed
from services.workflow.models import WorkflowEvent
from tenants.context import TenantContext
from tenants.db import Database
from tenants.principals import resident_scope
from tests.requests_city import City, add_cell, build_city

BEIJING = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
async def city(database: Database) -> City:
    return await build_city(database, "reqcity")


def _staff(city: City, k: int = 0) -> tuple[Actor, TenantContext]:
    scope = city.stations[k].scope
    return Actor("user:9001", frozenset({"station_liaison"}), (scope,)), TenantContext(
        city.tenant.tenant_id, (scope,), "user:9001"
    )


def _resident(city: City, request: Request) -> tuple[Actor, TenantContext]:
    """The submitter rating their own request: in the context services.reach opens on it."""
    principal = "user:7001"
    view = TenantContext(city.tenant.tenant_id, (resident_scope(city.tenant.tenant_id),), principal)
    target = Target(city.tenant.tenant_id, request.scope, owner=request.owner_principal)
    context = acting_on(view, target, what=f"request {request.id}")
    return Actor(principal, frozenset({"resident"}), context.scopes), context


async def _submit(database: Database, city: City, k: int = 0, **overrides: object):  # type: ignore[no-untyped-def]
    lon, lat = city.point(k)
    values: dict[str, object] = {
        "category": "environment",
        "description": "楼下垃圾堆放多日无人清理",
        "channel": "app",
        "lon": lon,
        "lat": lat,
        "owner_principal": "user:7001",
    }
    values.update(overrides)
    async with unit_of_work(database, intake_context(city.tenant.tenant_id)) as session:
        return await submit(session, city.tenant.tenant_id, Submission(**values))  # type: ignore[arg-type]


async def _request(database: Database, city: City, request_id: int) -> Request:
    async with unit_of_work(database, intake_context(city.tenant.tenant_id)) as session:
        found = await session.get(Request, (city.tenant.tenant_id, request_id))
        assert found is not None
        return found


async def test_intake_routes_to_the_station_of_the_grid_cell(database: Database, city: City) -> None:
    receipt = await _submit(database, city, 1)
    assert receipt.created and receipt.routed and receipt.state == "submitted"
    request = await _request(database, city, receipt.request_id)
    assert request.station_id == city.stations[1].id
    assert request.grid_cell_id == city.stations[1].grid_cell_id
    assert request.scope == city.stations[1].scope
    assert receipt.ticket == f"{request.submitted_at.astimezone(BEIJING):%Y%m%d}-{request.id:06d}"
    assert request.h3_cell is not None
    async with unit_of_work(database, intake_context(city.tenant.tenant_id)) as session:
        steps = (
            await session.scalars(select(WorkflowEvent.step).where(WorkflowEvent.subject_id == request.id))
        ).all()
        timers = await session.scalar(
            select(func.count())
            .select_from(Timer)
            .where(Timer.subject_id == request.id, Timer.kind.like("request.%"))
        )
    assert list(steps) == ["submit"]
    assert timers == 4


async def test_a_point_outside_every_cell_waits_for_manual_routing(database: Database, city: City) -> None:
    lon, lat = city.uncovered
    receipt = await _submit(database, city, lon=lon, lat=lat)
    request = await _request(database, city, receipt.request_id)
    assert not receipt.routed and request.station_id is None
    assert request.scope == city.tenant.scope
    _, context = _staff(city, 0)
    dispatcher = Actor("user:9002", frozenset({"city_admin"}), (city.tenant.scope,))
    async with unit_of_work(
        database, TenantContext.whole_tenant(city.tenant.tenant_id, "user:9002")
    ) as session:
        routed = await service.reroute(
            session,
            dispatcher,
            city.tenant.tenant_id,
            receipt.request_id,
            city.stations[0].id,
            "按地址人工分派",
        )
        assert routed.scope == city.stations[0].scope and routed.district_id == city.stations[0].district_id
    async with unit_of_work(database, context) as session:
        visible = await session.scalar(select(Request.id).where(Request.id == receipt.request_id))
    assert visible == receipt.request_id


async def test_bad_input_is_refused_with_the_field(database: Database, city: City) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"category": "nope"}, "category"),
        ({"description": "  "}, "description"),
        ({"description": "长" * 4001}, "description"),
        ({"lon": None, "lat": None}, "location"),
        ({"lon": 200.0}, "location"),
        ({"crs": "mars"}, "crs"),
        ({"channel": "fax"}, "channel"),
        ({"contact_email": "not-an-address"}, "contactEmail"),
    ]
    for overrides, field in cases:
        with pytest.raises(InvalidInput) as caught:
            await _submit(database, city, **overrides)
        assert caught.value.field == field, overrides


async def test_the_same_external_id_is_one_request(database: Database, city: City) -> None:
    first = await _submit(database, city, channel="hotline", external_id="12345-0001", owner_principal=None)
    again = await _submit(database, city, channel="hotline", external_id="12345-0001", owner_principal=None)
    assert first.created and not again.created and again.request_id == first.request_id


async def test_a_nearby_open_request_of_the_same_category_is_suggested(
    database: Database, city: City
) -> None:
    lon, lat = city.point(0)
    first = await _submit(database, city, category="parking", lon=lon, lat=lat)
    near = await _submit(database, city, category="parking", lon=lon + 0.0005, lat=lat)  # ~43 m east
    other_kind = await _submit(database, city, category="safety", lon=lon + 0.0005, lat=lat)
    far = await _submit(database, city, category="parking", lon=lon + 0.004, lat=lat)  # ~340 m
    assert [d.request_id for d in near.duplicates] == [first.request_id]
    assert 30 < near.duplicates[0].distance_meters < 60
    assert first.request_id not in [d.request_id for d in other_kind.duplicates]
    assert first.request_id not in [d.request_id for d in far.duplicates]


async def test_the_whole_lifecycle_with_a_low_rating_reopening_it(database: Database, city: City) -> None:
    receipt = await _submit(database, city, 0)
    staff, context = _staff(city, 0)
    tenant_id, request_id = city.tenant.tenant_id, receipt.request_id
    resident, own = _resident(city, await _request(database, city, request_id))
    async with unit_of_work(database, context) as session:
        await service.accept(session, staff, tenant_id, request_id)
        await service.assign(session, staff, tenant_id, request_id, assignee="user:9003")
    worker = Actor("user:9003", frozenset({"grid_worker"}), context.scopes)
    async with unit_of_work(database, context) as session:
        await service.start(session, worker, tenant_id, request_id)
        await service.resolve(session, worker, tenant_id, request_id, "已清运")
    system = TenantContext.whole_tenant(tenant_id, "system:test")
    async with unit_of_work(database, own) as session:
        # 60 out of 100, "solved": below the default threshold (80), so it is rectified.
        reopened = await service.rate(
            session, resident, tenant_id, request_id, score=60, solved=True, comment="还有残留"
        )
        assert reopened.state == "reopened" and reopened.reopen_count == 1
    async with unit_of_work(database, own) as session:
        with pytest.raises(Conflict):
            await service.rate(session, resident, tenant_id, request_id, score=100, solved=True)
    async with unit_of_work(database, context) as session:
        await service.assign(session, staff, tenant_id, request_id, assignee="user:9003")
        await service.resolve(session, worker, tenant_id, request_id, "已彻底清理")
    async with unit_of_work(database, own) as session:
        closed = await service.rate(session, resident, tenant_id, request_id, score=80, solved=True)
        assert closed.state == "closed" and closed.rating == 80 and closed.solved
    async with unit_of_work(database, context) as session:
        with pytest.raises(IllegalTransition):
            await service.accept(session, staff, tenant_id, request_id)
        steps = (
            await session.scalars(
                select(WorkflowEvent.step)
                .where(WorkflowEvent.subject_id == request_id)
                .order_by(WorkflowEvent.id)
            )
        ).all()
    assert list(steps) == [
        "submit", "accept", "assign", "start", "resolve", "reopen", "assign", "resolve", "close"
    ]  # fmt: skip
    async with unit_of_work(database, system) as session:
        report = await verify(session, tenant_id)
        ratings = await session.scalar(
            text("SELECT count(*) FROM request_ratings WHERE request_id = :i"), {"i": request_id}
        )
    assert report.ok and ratings == 2


async def test_who_may_take_a_step_is_declared(database: Database, city: City) -> None:
    receipt = await _submit(database, city, 0)
    _, context = _staff(city, 0)
    resident = Actor("user:7001", frozenset({"resident"}), context.scopes)
    async with unit_of_work(database, context) as session:
        with pytest.raises(NotAllowed):
            await service.accept(session, resident, city.tenant.tenant_id, receipt.request_id)
        with pytest.raises(InvalidInput) as caught:
            await service.reject(session, _staff(city, 0)[0], city.tenant.tenant_id, receipt.request_id, "  ")
    assert (caught.value.code, caught.value.field) == ("INVALID_INPUT", "note")


async def test_another_stations_staff_cannot_reach_it(database: Database, city: City) -> None:
    receipt = await _submit(database, city, 0)
    other, other_context = _staff(city, 1)
    async with unit_of_work(database, other_context) as session:
        with pytest.raises(Exception) as caught:
            await service.accept(session, other, city.tenant.tenant_id, receipt.request_id)
    assert getattr(caught.value, "code", None) == "NOT_FOUND"


async def test_public_progress_shows_states_and_public_notes_only(database: Database, city: City) -> None:
    receipt = await _submit(database, city, 0, contact_phone="13800001111", contact_name="张三")
    staff, context = _staff(city, 0)
    async with unit_of_work(database, context) as session:
        await service.return_(
            session, staff, city.tenant.tenant_id, receipt.request_id, "内部：不属本站，请街道改派"
        )
    assert receipt.check_code is not None
    async with unit_of_work(database, public_context(city.tenant.tenant_id)) as session:
        progress = await by_receipt(session, city.tenant.tenant_id, receipt.ticket, receipt.check_code)
        guessed = await by_receipt(session, city.tenant.tenant_id, receipt.ticket, "ABCD-EFGH-JKMN")
    assert progress is not None and guessed is None
    # The return is shown as a step, its staff note is not.
    assert [(s.step, s.note) for s in progress.steps] == [
        ("submit", "已收到，等待受理"),
        ("return", "正在重新分派"),
    ]
    assert progress.state == "returned"
    assert "张三" not in repr(progress) and "13800001111" not in repr(progress)
    assert "内部" not in repr(progress)


async def test_deadlines_count_working_days_and_escalate_across_a_holiday(
    database: Database, city: City
) -> None:
    # Wednesday 30 September 2026; 1-7 October is the National Day holiday, Saturday 10 October a make-up day.
    submitted = datetime(2026, 9, 30, 10, 0, tzinfo=BEIJING)
    receipt = await _submit(
        database, city, 0, category="safety", submitted_at=submitted
    )  # 1 / 3 working days
    request = await _request(database, city, receipt.request_id)
    assert request.response_due_at == datetime(2026, 10, 9, tzinfo=BEIJING)
    assert request.resolution_due_at == datetime(2026, 10, 11, tzinfo=BEIJING)

    await sweep(database, datetime(2026, 10, 8, 1, 0, tzinfo=BEIJING))
    assert (await _request(database, city, receipt.request_id)).supervision == "blue"

    fired = await sweep(database, datetime(2026, 10, 9, 0, 0, tzinfo=BEIJING))
    again = await sweep(database, datetime(2026, 10, 9, 0, 0, tzinfo=BEIJING))
    assert fired["request.response_overdue"] >= 1 and again["request.response_overdue"] == 0
    escalated = await _request(database, city, receipt.request_id)
    assert (escalated.supervision, escalated.level, escalated.state) == ("yellow", 1, "assigned")
    assert escalated.assignee == city.stations[0].deputy
    # Three working days from Friday 9 October: Saturday 10 (make-up), Monday 12, Tuesday 13.
    assert escalated.resolution_due_at == datetime(2026, 10, 14, tzinfo=BEIJING)

    await sweep(database, datetime(2026, 10, 11, 12, 0, tzinfo=BEIJING))  # the old deadline: nothing
    assert (await _request(database, city, receipt.request_id)).level == 1
    await sweep(database, datetime(2026, 10, 14, 0, 0, tzinfo=BEIJING) + timedelta(minutes=1))
    red = await _request(database, city, receipt.request_id)
    assert (red.supervision, red.level, red.responsible, red.department) == (
        "red",
        2,
        "department",
        "区职能部门",
    )
    async with unit_of_work(database, intake_context(city.tenant.tenant_id)) as session:
        escalations = await session.scalar(
            select(func.count())
            .select_from(WorkflowEvent)
            .where(WorkflowEvent.subject_id == receipt.request_id, WorkflowEvent.step == "escalate")
        )
    assert escalations == 2


async def test_the_manual_routing_queue_is_routed_once_a_new_cell_covers_it(
    database: Database, city: City
) -> None:
    lon, lat = 116.45, 39.95  # in district 2, outside the four cells
    queued = await _submit(database, city, lon=lon, lat=lat)
    stays = await _submit(database, city, lon=116.385, lat=39.975)
    assert not queued.routed and not stays.routed
    await add_cell(database, city, 3, "G-new", "新划网格", box(116.445, 39.945, 116.455, 39.955))
    system = TenantContext.whole_tenant(city.tenant.tenant_id, "system:test")
    async with unit_of_work(database, system) as session:
        report = await relocate_unrouted(session, city.tenant.tenant_id)
    assert report.routed >= 1 and report.still_outside >= 1
    routed = await _request(database, city, queued.request_id)
    assert (routed.station_id, routed.scope, routed.state) == (
        city.stations[3].id,
        city.stations[3].scope,
        "submitted",
    )
    assert (await _request(database, city, stays.request_id)).station_id is None
    async with unit_of_work(database, system) as session:
        again = await relocate_unrouted(session, city.tenant.tenant_id)
        steps = (
            await session.scalars(
                select(WorkflowEvent.step).where(WorkflowEvent.subject_id == queued.request_id)
            )
        ).all()
    assert again.routed == 0 and list(steps) == ["submit", "reroute"]
