"""Three-level mediation run as its participants would: the community mediator, the station's deputy, the
departments; failures and deadlines (a moved clock) move cases up exactly once; success rates are compared
with counts kept independently by the test."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from services.errors import DomainError, NotFound
from services.mediation import repository, service
from services.mediation import stats as rates
from services.mediation import tasks as _registers_timer_handlers  # noqa: F401
from services.mediation.models import MediationCase, MediationLevel, MediationParty
from services.timers.service import sweep
from services.unit_of_work import unit_of_work
from services.workflow.machine import IllegalTransition, NotAllowed
from services.workflow.service import history
from tenants.context import TenantContext
from tenants.db import Database
from tenants.models import Station
from tenants.principals import resident_scope
from tests.helpers import TenantInfo, audit_actions, create_station_user, notices_asked, owner_rows

LIAISON = frozenset({"station_liaison"})
DEPUTY = frozenset({"deputy"})
_people = itertools.count(7000)


async def streets_of_stations(database: Database, tenant: TenantInfo) -> list[list[str]]:
    async with database.scoped(TenantContext.whole_tenant(tenant.tenant_id, "system:test")) as session:
        scopes = (
            await session.scalars(select(Station.scope).where(Station.tenant_id == tenant.tenant_id))
        ).all()
    by_street: dict[str, list[str]] = {}
    for scope in sorted(scopes):
        by_street.setdefault(scope.rsplit(".", 1)[0], []).append(scope)
    return [stations for stations in by_street.values() if len(stations) >= 2]


async def add_deputy(database: Database, tenant: TenantInfo, station: str) -> str:
    n = next(_people)
    async with unit_of_work(database, TenantContext.whole_tenant(tenant.tenant_id, "system:test")) as session:
        user = await create_station_user(
            session, tenant.tenant_id, station, f"deputy{n}", f"代表{n}", password="not-used-here"
        )
    return f"user:{user.id}"


def staff(tenant: TenantInfo, scope: str, principal: str = "user:800") -> TenantContext:
    return TenantContext(tenant.tenant_id, (scope,), principal)


def opening(station: str, applicant: str | None = None, **overrides: Any) -> service.Opening:
    values: dict[str, Any] = {
        "scope": station,
        "case_type": "neighbours",
        "description": "楼上漏水，协商未果",
        "parties": [
            service.Party("张三", "applicant", applicant),
            service.Party("李四", "respondent"),
        ],
        **overrides,
    }
    return service.Opening(**values)


async def open_case(
    database: Database, actor: TenantContext, o: service.Opening, *, now: datetime | None = None
) -> MediationCase:
    async with unit_of_work(database, actor) as session:
        return await service.open_case(session, actor, LIAISON, o, now=now)


async def outcome(
    database: Database, actor: TenantContext, kinds: frozenset[str], case_id: int, **kwargs: Any
) -> MediationCase:
    async with unit_of_work(database, actor) as session:
        return await service.record_outcome(
            session, actor.tenant_id, actor.principal, kinds, case_id, **kwargs
        )


async def notices(owner_dsn: str, tenant_id: int, case_id: int) -> list[dict[str, Any]]:
    return await notices_asked(owner_dsn, tenant_id, f"mediation:{case_id}")


async def level_rows(database: Database, actor: TenantContext, case_id: int) -> list[MediationLevel]:
    async with database.scoped(actor) as session:
        return await repository.levels(session, actor.tenant_id, [case_id])


async def test_a_neighbours_dispute_settled_by_the_community_mediator(
    database: Database, alpha: TenantInfo, owner_dsn: str
) -> None:
    station = (await streets_of_stations(database, alpha))[0][0]
    mediator = staff(alpha, station)
    applicant = f"user:{next(_people)}"
    case = await open_case(database, mediator, opening(station, applicant))
    assert (case.state, case.level, case.mediator) == ("level1", 1, mediator.principal)

    async with unit_of_work(database, mediator) as session:
        sitting = await service.record_session(
            session,
            alpha.tenant_id,
            mediator.principal,
            LIAISON,
            case.id,
            held_on=date(2026, 11, 20),
            participants=["张三", "李四", "调解员王五"],
            notes="双方同意共同维修",
        )
    assert sitting.level == 1
    settled = await outcome(
        database, mediator, LIAISON, case.id, agreed=True, agreement="李四承担维修费用的六成"
    )
    assert (settled.state, settled.agreement) == ("resolved", "李四承担维修费用的六成")
    levels = await level_rows(database, mediator, case.id)
    assert [(lv.level, lv.outcome, lv.agreement) for lv in levels] == [
        (1, "agreement", "李四承担维修费用的六成")
    ]
    with pytest.raises(IllegalTransition):
        await outcome(database, mediator, LIAISON, case.id, agreed=False)

    async with database.scoped(mediator) as session:
        steps = [e.step for e in await history(session, alpha.tenant_id, "mediation", case.id)]
    assert steps == ["open", "record_session", "settle"]
    audit = await audit_actions(owner_dsn, alpha.tenant_id, f"mediation:{case.id}")
    assert audit == [f"mediation.{s}" for s in steps]
    to_applicant = [
        n["kind"] for n in await notices(owner_dsn, alpha.tenant_id, case.id) if n["recipient"] == applicant
    ]
    assert to_applicant == ["mediation.opened", "mediation.resolved"]
    # Pending timers: none (the level's deadline was cancelled with the agreement).
    pending = await owner_rows(
        owner_dsn,
        "SELECT count(*) FROM timers WHERE tenant_id = %s AND subject_id = %s AND kind = %s"
        " AND fired_at IS NULL AND cancelled_at IS NULL",
        alpha.tenant_id,
        case.id,
        service.DEADLINE_TIMER,
    )
    assert pending == [(0,)]

    # The applicant, in a resident's own context, follows the case and their party row, nothing else.
    own = TenantContext(alpha.tenant_id, (resident_scope(alpha.tenant_id),), applicant)
    async with database.scoped(own) as session:
        cases = (await session.scalars(select(MediationCase))).all()
        parties = (await session.scalars(select(MediationParty))).all()
        levels_seen = (await session.scalars(select(MediationLevel))).all()
    assert [c.id for c in cases] == [case.id] and [p.name for p in parties] == ["张三"] and levels_seen == []


async def test_failures_climb_to_the_deputy_then_the_departments(
    database: Database, alpha: TenantInfo, owner_dsn: str
) -> None:
    # A station of the last district: the user rows a deputy adds stay out of other tests' districts.
    station = (await streets_of_stations(database, alpha))[-2][1]
    deputy = await add_deputy(database, alpha, station)
    mediator = staff(alpha, station)
    case = await open_case(database, mediator, opening(station, case_type="property_management"))

    moved = await outcome(database, mediator, LIAISON, case.id, agreed=False, note="物业拒不到场")
    assert (moved.state, moved.level, moved.mediator) == ("level2", 2, deputy)
    told = [n for n in await notices(owner_dsn, alpha.tenant_id, case.id) if n["recipient"] == deputy]
    assert [n["kind"] for n in told] == ["mediation.assigned"]

    as_deputy = staff(alpha, station, deputy)
    with pytest.raises(NotAllowed):  # the deputy may not withdraw a case
        async with unit_of_work(database, as_deputy) as session:
            await service.withdraw(session, alpha.tenant_id, deputy, DEPUTY, case.id, "不调了")
    async with unit_of_work(database, as_deputy) as session:
        await service.record_session(
            session,
            alpha.tenant_id,
            deputy,
            DEPUTY,
            case.id,
            held_on=date(2026, 11, 22),
            participants=[],
            notes="",
        )
    moved = await outcome(
        database, as_deputy, DEPUTY, case.id, agreed=False, departments=["区住建委", "街道城管科"]
    )
    assert (moved.state, moved.level, moved.departments) == ("level3", 3, ["区住建委", "街道城管科"])
    closed = await outcome(database, mediator, LIAISON, case.id, agreed=False)
    assert closed.state == "unresolved" and closed.closed_at is not None

    levels = await level_rows(database, mediator, case.id)
    assert [(lv.level, lv.outcome, lv.mediator) for lv in levels] == [
        (1, "failed", mediator.principal),
        (2, "failed", deputy),
        (3, "failed", None),
    ]
    assert levels[2].departments == ["区住建委", "街道城管科"]
    async with database.scoped(mediator) as session:
        steps = [e.step for e in await history(session, alpha.tenant_id, "mediation", case.id)]
    assert steps == [
        "open",
        "escalate_to_deputy",
        "record_session",
        "escalate_to_departments",
        "close_unresolved",
    ]

    # A deputy named explicitly wins over the station's.
    other = await open_case(database, mediator, opening(station))
    named = await outcome(database, mediator, LIAISON, other.id, agreed=False, deputy="user:424242")
    assert named.mediator == "user:424242"


async def test_a_deadline_moves_the_case_up_once_however_often_swept(
    database: Database, alpha: TenantInfo, owner_dsn: str
) -> None:
    station = (await streets_of_stations(database, alpha))[1][0]  # no deputy assigned here
    mediator = staff(alpha, station)
    case = await open_case(
        database,
        mediator,
        opening(station, deadlines=[service.Deadline(1, hours=24), service.Deadline(2, working_days=5)]),
    )
    assert case.level_due_at == case.opened_at + timedelta(hours=24)
    early = await sweep(database, now=case.opened_at + timedelta(hours=23))
    assert early[service.DEADLINE_TIMER] == 0

    due = case.opened_at + timedelta(hours=25)
    await asyncio.gather(sweep(database, now=due), sweep(database, now=due))
    await sweep(database, now=due)

    async def escalations(step: str) -> int:
        rows = await owner_rows(
            owner_dsn,
            "SELECT count(*) FROM workflow_events WHERE tenant_id = %s AND workflow = 'mediation'"
            " AND subject_id = %s AND step = %s",
            alpha.tenant_id,
            case.id,
            step,
        )
        return int(rows[0][0])

    assert await escalations("escalate_to_deputy") == 1
    levels = await level_rows(database, mediator, case.id)
    assert [(lv.level, lv.outcome) for lv in levels] == [(1, "timeout"), (2, None)]
    assert levels[1].mediator is None  # nobody assigned at the station: staff are told to name one
    # Five working days, counted in whole local days: at least five days on, however the weekend falls
    # (the least is from late on a Sunday to the end of Friday).
    assert levels[1].due_at > due + timedelta(days=5)

    # Staff name a deputy; then level 2 and level 3 time out in turn.
    async with unit_of_work(database, mediator) as session:
        await service.assign_mediator(
            session, alpha.tenant_id, mediator.principal, LIAISON, case.id, "user:515151"
        )
    later = levels[1].due_at + timedelta(minutes=1)
    await sweep(database, now=later)
    await sweep(database, now=later)
    assert await escalations("escalate_to_departments") == 1
    levels = await level_rows(database, mediator, case.id)
    async with database.scoped(mediator) as session:
        _, default_department = await repository.settings_of(session, alpha.tenant_id)
    assert [(lv.level, lv.outcome, lv.mediator) for lv in levels[:2]] == [
        (1, "timeout", mediator.principal),
        (2, "timeout", "user:515151"),
    ]
    assert levels[2].departments == [default_department]
    await sweep(database, now=levels[2].due_at + timedelta(minutes=1))
    await sweep(database, now=levels[2].due_at + timedelta(minutes=2))
    assert await escalations("close_unresolved") == 1
    fired = await owner_rows(
        owner_dsn,
        "SELECT count(*) FROM timers WHERE tenant_id = %s AND subject_id = %s AND kind = %s"
        " AND fired_at IS NOT NULL",
        alpha.tenant_id,
        case.id,
        service.DEADLINE_TIMER,
    )
    assert fired == [(3,)]


async def test_success_rates_per_level_and_per_station(database: Database, alpha: TenantInfo) -> None:
    first, second = (await streets_of_stations(database, alpha))[-1][:2]
    street = first.rsplit(".", 1)[0]
    start = datetime(2090, 1, 1, tzinfo=UTC)
    # Outcomes chosen per case: how many levels fail before an agreement (3: never agrees).
    plans = {first: [0, 0, 1, 3, 2, 1], second: [0, 1, 1, 2]}
    expected: Counter[tuple[str, int, str]] = Counter()
    moment = start
    for station, plan in plans.items():
        actor = staff(alpha, station)
        for failures in plan:
            moment += timedelta(hours=1)
            case = await open_case(database, actor, opening(station), now=moment)
            for level in range(1, 4):
                expected[(station, level, "started")] += 1
                if failures >= level:
                    await outcome(
                        database, actor, LIAISON, case.id, agreed=False, departments=["区司法局"], now=moment
                    )
                    expected[(station, level, "failed")] += 1
                    if level == 3:
                        break
                else:
                    await outcome(
                        database, actor, LIAISON, case.id, agreed=True, agreement="和解", now=moment
                    )
                    expected[(station, level, "agreement")] += 1
                    break
    async with database.scoped(staff(alpha, street)) as session:
        stats = await rates.stats(session, alpha.tenant_id, street, start, start + timedelta(days=30))
        outside = await rates.stats(session, alpha.tenant_id, street, start - timedelta(days=30), start)
    assert outside.by_level == [] and outside.by_scope == []
    for row in stats.by_level:
        started = sum(expected[(s, row.level, "started")] for s in plans)
        agreed = sum(expected[(s, row.level, "agreement")] for s in plans)
        failed = sum(expected[(s, row.level, "failed")] for s in plans)
        assert (row.started, row.agreements, row.failed, row.timeouts) == (started, agreed, failed, 0)
        assert row.success_rate == pytest.approx(agreed / (agreed + failed))
    assert [row.level for row in stats.by_level] == [1, 2, 3]
    assert stats.by_level[0].success_rate == pytest.approx(3 / 10)
    assert {entry.scope for entry in stats.by_scope} == set(plans)
    for entry in stats.by_scope:
        assert entry.name
        for row in entry.levels:
            assert row.agreements == expected[(entry.scope, row.level, "agreement")]
            assert row.concluded == expected[(entry.scope, row.level, "started")]
    # A station's staff see their station only.
    async with database.scoped(staff(alpha, first)) as session:
        mine = await rates.stats(session, alpha.tenant_id, street, start, start + timedelta(days=30))
    assert [entry.scope for entry in mine.by_scope] == [first]


async def test_another_station_neither_sees_nor_acts(database: Database, alpha: TenantInfo) -> None:
    station, sibling = (await streets_of_stations(database, alpha))[0][:2]
    case = await open_case(database, staff(alpha, station), opening(station))
    intruder = staff(alpha, sibling, "user:801")
    with pytest.raises(NotFound):
        await outcome(database, intruder, LIAISON, case.id, agreed=True, agreement="x")
    async with database.scoped(intruder) as session:
        seen = await repository.listing(session, alpha.tenant_id, states=None, limit=1000)
        assert case.id not in {c.id for c in seen}
        assert await repository.levels(session, alpha.tenant_id, [case.id]) == []
    with pytest.raises(DomainError) as outside:
        await open_case(database, intruder, opening(station))
    assert (outside.value.code, outside.value.field) == ("NOT_FOUND", "stationId")
    stranger = TenantContext(alpha.tenant_id, (resident_scope(alpha.tenant_id),), "user:999999")
    async with database.scoped(stranger) as session:
        assert (await session.scalars(select(MediationCase))).all() == []


async def test_bad_input_and_illegal_steps(database: Database, alpha: TenantInfo) -> None:
    station = (await streets_of_stations(database, alpha))[0][0]
    actor = staff(alpha, station)
    for bad, field in (
        (opening(station, case_type="war"), "caseType"),
        (opening(station, parties=[service.Party("独角戏", "applicant")]), "parties"),
        (opening(station, deadlines=[service.Deadline(1, hours=2, working_days=1)]), "deadlines"),
        (opening(station.rsplit(".", 1)[0]), "stationId"),
        (opening(station, request_id=987654321), "requestId"),
    ):
        with pytest.raises(DomainError) as error:
            await open_case(database, actor, bad)
        assert error.value.field == field
    case = await open_case(database, actor, opening(station))
    with pytest.raises(DomainError) as no_text:
        await outcome(database, actor, LIAISON, case.id, agreed=True, agreement=" ")
    assert no_text.value.code == "INVALID_INPUT"
    async with unit_of_work(database, actor) as session:
        with pytest.raises(DomainError) as no_reason:
            await service.withdraw(session, alpha.tenant_id, actor.principal, LIAISON, case.id, "")
    assert (no_reason.value.code, no_reason.value.field) == ("INVALID_INPUT", "note")
    async with unit_of_work(database, actor) as session:
        withdrawn = await service.withdraw(
            session, alpha.tenant_id, actor.principal, LIAISON, case.id, "双方自行和解"
        )
    assert withdrawn.state == "withdrawn"
    with pytest.raises(IllegalTransition):
        await outcome(database, actor, LIAISON, case.id, agreed=True, agreement="晚了")
