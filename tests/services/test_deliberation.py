"""Deliberation councils run as their participants would: staff propose, residents register and vote with
their own identities, deadlines fire from timer rows on a moved clock, and every effect is counted in the
database afterwards."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.deliberation import repository, service
from services.deliberation import tasks as _registers_timer_handlers  # noqa: F401
from services.deliberation.models import Deliberation, Registration
from services.errors import Conflict, DomainError, InvalidInput, NotFound
from services.timers.service import sweep
from services.unit_of_work import unit_of_work
from services.workflow.machine import IllegalTransition, NotAllowed
from services.workflow.service import history
from tenants.context import TenantContext
from tenants.db import Database
from tenants.models import Station
from tests.helpers import TenantInfo, audit_actions, notices_asked, owner_rows

T = TypeVar("T")
LIAISON = frozenset({"station_liaison"})
_residents = itertools.count(5000)


async def station_scopes(database: Database, tenant: TenantInfo) -> list[str]:
    """Station scopes ordered so the first two share a street and the third lies in another street."""
    async with database.scoped(TenantContext.whole_tenant(tenant.tenant_id, "system:test")) as session:
        scopes = list(
            (await session.scalars(select(Station.scope).where(Station.tenant_id == tenant.tenant_id))).all()
        )
    by_street: dict[str, list[str]] = {}
    for scope in sorted(scopes):
        by_street.setdefault(scope.rsplit(".", 1)[0], []).append(scope)
    streets = [s for s in by_street.values() if len(s) >= 2]
    return [streets[0][0], streets[0][1], streets[1][0]]


class Staff:
    def __init__(
        self, database: Database, tenant: TenantInfo, scope: str, principal: str = "user:900"
    ) -> None:
        self.database = database
        self.context = TenantContext(tenant.tenant_id, (scope,), principal)

    async def __call__(self, work: Callable[[AsyncSession, TenantContext], Awaitable[T]]) -> T:
        async with unit_of_work(self.database, self.context) as session:
            return await work(session, self.context)


class Resident:
    def __init__(self, database: Database, tenant: TenantInfo, home: str) -> None:
        self.database = database
        self.tenant_id = tenant.tenant_id
        self.home = home
        self.principal = f"user:{next(_residents)}"

    async def act(self, deliberation_id: int, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        return await service.as_resident(
            self.database, self.tenant_id, (self.home,), self.principal, deliberation_id, work
        )

    async def register(self, deliberation_id: int, **groups: Any) -> Registration:
        details = {"age_band": "45_59", "tenure": "owner", "residency": "long_term", **groups}
        participant = service.Participant(display_name=f"居民{self.principal[5:]}", **details)
        return await self.act(
            deliberation_id,
            lambda s: service.register(s, self.tenant_id, self.principal, deliberation_id, participant),
        )

    async def withdraw(self, deliberation_id: int) -> Registration:
        return await self.act(
            deliberation_id, lambda s: service.withdraw(s, self.tenant_id, self.principal, deliberation_id)
        )

    async def vote(self, deliberation_id: int, choice: str) -> object:
        return await self.act(
            deliberation_id,
            lambda s: service.vote(s, self.tenant_id, self.principal, deliberation_id, choice),
        )


def proposal(scope: str, *, capacity: int = 20, quorum: int = 1, **overrides: Any) -> service.Proposal:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "scope": scope,
        "topic": "加装电梯",
        "meeting_at": now + timedelta(hours=3),
        "registration_deadline": now + timedelta(hours=2),
        "voting_closes_at": now + timedelta(hours=5),
        "capacity": capacity,
        "quorum": quorum,
        **overrides,
    }
    return service.Proposal(**values)


async def propose(staff: Staff, p: service.Proposal) -> Deliberation:
    return await staff(lambda s, actor: service.propose(s, actor, LIAISON, p))


async def proposed(database: Database, tenant: TenantInfo, **options: Any) -> tuple[str, Staff, Deliberation]:
    """A deliberation put to the first station by its staff (`options` as for `proposal`): the station's
    scope, the staff, and the deliberation."""
    station, _, _ = await station_scopes(database, tenant)
    staff = Staff(database, tenant, station)
    return station, staff, await propose(staff, proposal(station, **options))


async def staff_step(staff: Staff, name: str, deliberation_id: int, *args: Any) -> Deliberation:
    function = getattr(service, name)
    tenant_id, principal = staff.context.tenant_id, staff.context.principal

    async def work(session: AsyncSession, actor: TenantContext) -> Deliberation:
        result: Deliberation = await function(session, tenant_id, principal, LIAISON, deliberation_id, *args)
        return result

    return await staff(work)


async def notices(owner_dsn: str, tenant_id: int, deliberation_id: int) -> list[dict[str, Any]]:
    return await notices_asked(owner_dsn, tenant_id, f"deliberation:{deliberation_id}")


async def run_to_voting(
    staff: Staff, deliberation: Deliberation, residents: list[Resident], attending: int
) -> dict[str, Registration]:
    """Register everyone, close registration on the deadline (moved clock), mark the first `attending`
    present and open the vote."""
    seats = {r.principal: await r.register(deliberation.id) for r in residents}
    await sweep(staff.database, now=deliberation.registration_deadline + timedelta(seconds=1))
    present = [seats[r.principal].id for r in residents[:attending]]
    await staff_step(staff, "mark_attendance", deliberation.id, present)
    await staff_step(staff, "open_voting", deliberation.id)
    return seats


async def test_a_council_on_adding_lifts_from_proposal_to_published_result(
    database: Database, alpha: TenantInfo, owner_dsn: str
) -> None:
    station, staff, deliberation = await proposed(database, alpha, capacity=13, quorum=10)
    residents = [Resident(database, alpha, station) for _ in range(13)]
    await run_to_voting(staff, deliberation, residents, attending=13)
    for resident in residents[:12]:
        await resident.vote(deliberation.id, "yes")
    await residents[12].vote(deliberation.id, "no")

    fired = await sweep(database, now=deliberation.voting_closes_at + timedelta(seconds=1))
    assert fired[service.VOTING_TIMER] >= 1
    published = await staff_step(staff, "publish", deliberation.id)
    assert (published.state, published.attendees, published.yes_votes, published.no_votes) == (
        "published",
        13,
        12,
        1,
    )
    assert published.quorum_met is True and published.passed is True
    assert round((published.yes_votes or 0) / (published.attendees or 1), 2) == 0.92

    async with database.scoped(staff.context) as session:
        steps = [e.step for e in await history(session, alpha.tenant_id, "deliberation", deliberation.id)]
    assert steps[0] == "propose" and steps.count("register") == 13 and steps.count("vote") == 13
    assert [s for s in steps if s not in ("register", "vote")] == [
        "propose",
        "close_registration",
        "attend",
        "open_voting",
        "close_voting",
        "publish",
    ]
    audit = await audit_actions(owner_dsn, alpha.tenant_id, f"deliberation:{deliberation.id}")
    assert audit == [f"deliberation.{step}" for step in steps]

    sent = await notices(owner_dsn, alpha.tenant_id, deliberation.id)
    to_residents = [n for n in sent if n["kind"] == "deliberation.published"]
    assert sorted(n["recipient"] for n in to_residents if n["recipient"]) == sorted(
        r.principal for r in residents
    )
    assert len({n["source"] for n in sent}) == len(sent)


async def test_capacity_waitlist_and_promotion_of_the_first_waitlisted(
    database: Database, alpha: TenantInfo, owner_dsn: str
) -> None:
    station, staff, deliberation = await proposed(database, alpha, capacity=2)
    first, second, third, fourth = (Resident(database, alpha, station) for _ in range(4))
    statuses = [(await r.register(deliberation.id)).status for r in (first, second, third, fourth)]
    assert statuses == ["registered", "registered", "waitlisted", "waitlisted"]
    with pytest.raises(Conflict):
        await first.register(deliberation.id)

    # A waitlisted resident leaving frees no seat; a seated one leaving promotes the first in the queue.
    await fourth.withdraw(deliberation.id)
    await second.withdraw(deliberation.id)

    async with database.scoped(staff.context) as session:
        rows = await repository.registrations(
            session, alpha.tenant_id, deliberation.id, statuses=["registered", "waitlisted", "cancelled"]
        )
    by_owner = {r.owner_principal: r for r in rows}
    assert by_owner[third.principal].status == "registered" and by_owner[third.principal].promoted_at
    assert by_owner[second.principal].status == "cancelled"
    assert by_owner[fourth.principal].status == "cancelled"
    promoted = [
        n
        for n in await notices(owner_dsn, alpha.tenant_id, deliberation.id)
        if n["kind"].endswith("promoted")
    ]
    assert [n["recipient"] for n in promoted] == [third.principal]

    # Coming back queues again, behind everyone; the meeting is full, so that is the waitlist.
    assert (await second.register(deliberation.id)).status == "waitlisted"
    # After the deadline nobody registers or withdraws, and a resident's own view shows only their row.
    await sweep(database, now=deliberation.registration_deadline + timedelta(seconds=1))
    with pytest.raises(IllegalTransition):
        await Resident(database, alpha, station).register(deliberation.id)
    async with database.scoped(
        service.resident_view(alpha.tenant_id, (station,), third.principal)
    ) as session:
        seen = (await session.scalars(select(Registration))).all()
        topic = await repository.get(session, alpha.tenant_id, deliberation.id)
    assert [r.owner_principal for r in seen] == [third.principal]
    assert topic is not None and topic.state == "closed"


async def tally(
    database: Database,
    alpha: TenantInfo,
    station: str,
    votes: list[str | None],
    *,
    quorum: int = 1,
    base: str = "attendees",
    numerator: int = 2,
    denominator: int = 3,
) -> Deliberation:
    """Run a council where one attendee per entry casts that vote (None: attends but does not vote)."""
    staff = Staff(database, alpha, station)
    deliberation = await propose(
        staff,
        proposal(
            station,
            quorum=quorum,
            approval_base=base,
            approval_numerator=numerator,
            approval_denominator=denominator,
        ),
    )
    residents = [Resident(database, alpha, station) for _ in votes]
    await run_to_voting(staff, deliberation, residents, attending=len(votes))
    for resident, choice in zip(residents, votes, strict=True):
        if choice is not None:
            await resident.vote(deliberation.id, choice)
    return await staff_step(staff, "close_voting", deliberation.id)


async def test_quorum_and_threshold_edges(database: Database, alpha: TenantInfo) -> None:
    station, _, _ = await station_scopes(database, alpha)
    exactly_two_thirds = await tally(database, alpha, station, ["yes", "yes", "no"])
    assert (exactly_two_thirds.quorum_met, exactly_two_thirds.passed) == (True, True)
    just_below = await tally(database, alpha, station, ["yes", "yes", "no", "abstain"])
    assert just_below.passed is False  # 2/4 of the attendees
    silent_counts_against = await tally(database, alpha, station, ["yes", "yes", None])
    assert silent_counts_against.passed is True  # 2 of 3 attendees: exactly two thirds
    silent_base = await tally(database, alpha, station, ["yes", "yes", None, None])
    assert silent_base.passed is False
    ballots_base = await tally(database, alpha, station, ["yes", "yes", None, None], base="ballots")
    assert ballots_base.passed is True  # 2 of 2 ballots
    no_quorum = await tally(database, alpha, station, ["yes", "yes", "yes"], quorum=4)
    assert (no_quorum.attendees, no_quorum.quorum_met, no_quorum.passed) == (3, False, False)
    quorum_exactly = await tally(database, alpha, station, ["yes", "yes", "yes"], quorum=3)
    assert (quorum_exactly.quorum_met, quorum_exactly.passed) == (True, True)
    assert service.approval_reached(2, 3, 2, 3) and not service.approval_reached(1999, 3000, 2, 3)
    assert not service.approval_reached(0, 0, 1, 2)


async def test_only_attendees_vote_once_and_only_while_voting(database: Database, alpha: TenantInfo) -> None:
    station, staff, deliberation = await proposed(database, alpha)
    present, absent = Resident(database, alpha, station), Resident(database, alpha, station)
    await present.register(deliberation.id)
    await absent.register(deliberation.id)
    with pytest.raises(IllegalTransition):
        await present.vote(deliberation.id, "yes")
    await staff_step(staff, "close_registration", deliberation.id)
    seats = await staff(lambda s, a: repository.registrations(s, alpha.tenant_id, deliberation.id))
    await staff_step(
        staff,
        "mark_attendance",
        deliberation.id,
        [r.id for r in seats if r.owner_principal == present.principal],
    )
    await staff_step(staff, "open_voting", deliberation.id)
    await present.vote(deliberation.id, "yes")
    with pytest.raises(Conflict):
        await present.vote(deliberation.id, "no")
    with pytest.raises(NotAllowed):
        await absent.vote(deliberation.id, "yes")
    with pytest.raises(DomainError) as bad:
        await present.vote(deliberation.id, "maybe")
    assert bad.value.code == "INVALID_INPUT"
    closed = await staff_step(staff, "close_voting", deliberation.id)
    assert (closed.yes_votes, closed.no_votes, closed.attendees) == (1, 0, 1)
    with pytest.raises(IllegalTransition):
        await staff_step(staff, "open_voting", deliberation.id)


async def test_diversity_report_warns_above_the_capture_share(database: Database, alpha: TenantInfo) -> None:
    station, staff, deliberation = await proposed(database, alpha)
    residents = [Resident(database, alpha, station) for _ in range(5)]
    # Registrants: 3 of 5 retired cadres (60%: not over), 4 of 5 owners (80%: over).
    groups: list[dict[str, Any]] = [
        {"retired_cadre": True, "age_band": "60_74"},
        {"retired_cadre": True, "age_band": "60_74"},
        {"retired_cadre": True, "age_band": "75_plus"},
        {"tenure": "owner", "age_band": "30_44", "residency": "migrant_worker"},
        {"tenure": "renter", "age_band": "under_30", "residency": "migrant_worker"},
    ]
    seats = [await r.register(deliberation.id, **g) for r, g in zip(residents, groups, strict=True)]
    await staff_step(staff, "close_registration", deliberation.id)
    await staff_step(staff, "mark_attendance", deliberation.id, [s.id for s in seats])
    await staff_step(staff, "open_voting", deliberation.id)
    # Voters: the three retired cadres and one renter: 75% retired cadres.
    for index in (0, 1, 2, 4):
        await residents[index].vote(deliberation.id, "yes")

    async with database.scoped(staff.context) as session:
        report = await service.diversity(session, alpha.tenant_id, deliberation)
    shares = {(g.dimension, g.group): g for g in report.groups}
    assert (report.registrants, report.voters, report.threshold_percent) == (5, 4, 60)
    assert shares[("retired_cadre", "retired_cadre")].registrants == 3
    assert shares[("retired_cadre", "retired_cadre")].registrant_share == pytest.approx(0.6)
    assert shares[("retired_cadre", "retired_cadre")].voter_share == pytest.approx(0.75)
    assert shares[("tenure", "owner")].registrant_share == pytest.approx(0.8)
    assert shares[("residency", "long_term")].registrant_share == pytest.approx(0.6)
    flagged = {(w.dimension, w.group, w.among) for w in report.warnings}
    assert flagged == {
        ("tenure", "owner", "registrants"),
        ("retired_cadre", "retired_cadre", "voters"),
        ("tenure", "owner", "voters"),
        ("residency", "long_term", "voters"),
    }
    assert all("elite capture" in w.message for w in report.warnings)


async def test_deadlines_fire_once_however_often_swept(
    database: Database, alpha: TenantInfo, owner_dsn: str
) -> None:
    station, _, deliberation = await proposed(database, alpha)
    await Resident(database, alpha, station).register(deliberation.id)
    early = await sweep(database, now=deliberation.registration_deadline - timedelta(seconds=1))
    assert early[service.REGISTRATION_TIMER] == 0
    due = deliberation.registration_deadline + timedelta(minutes=1)
    await asyncio.gather(sweep(database, now=due), sweep(database, now=due))
    await sweep(database, now=due)
    closings = await owner_rows(
        owner_dsn,
        "SELECT count(*) FROM workflow_events WHERE tenant_id = %s AND workflow = 'deliberation'"
        " AND subject_id = %s AND step = 'close_registration'",
        alpha.tenant_id,
        deliberation.id,
    )
    assert closings == [(1,)]
    # Voting never opened: the voting deadline finds nothing to close and changes nothing.
    await sweep(database, now=deliberation.voting_closes_at + timedelta(seconds=1))
    state = await owner_rows(
        owner_dsn,
        "SELECT state FROM deliberations WHERE tenant_id = %s AND id = %s",
        alpha.tenant_id,
        deliberation.id,
    )
    assert state == [("closed",)]


async def test_cancel_needs_a_reason_and_stops_the_timers(
    database: Database, alpha: TenantInfo, owner_dsn: str
) -> None:
    station, staff, deliberation = await proposed(database, alpha)
    resident = Resident(database, alpha, station)
    await resident.register(deliberation.id)
    with pytest.raises(InvalidInput) as refused:
        await staff_step(staff, "cancel", deliberation.id, " ")
    assert refused.value.field == "note"
    cancelled = await staff_step(staff, "cancel", deliberation.id, "场地不可用")
    assert cancelled.state == "cancelled"
    pending = await owner_rows(
        owner_dsn,
        "SELECT count(*) FROM timers WHERE tenant_id = %s AND subject_id = %s AND kind LIKE 'deliberation.%%'"
        " AND cancelled_at IS NULL",
        alpha.tenant_id,
        deliberation.id,
    )
    assert pending == [(0,)]
    told = [
        n
        for n in await notices(owner_dsn, alpha.tenant_id, deliberation.id)
        if n["kind"].endswith("cancelled")
    ]
    assert [n["recipient"] for n in told] == [resident.principal]


async def test_another_station_neither_sees_nor_acts(database: Database, alpha: TenantInfo) -> None:
    station, sibling, elsewhere = await station_scopes(database, alpha)
    staff = Staff(database, alpha, station)
    deliberation = await propose(staff, proposal(station))
    street = station.rsplit(".", 1)[0]
    street_topic = await propose(Staff(database, alpha, street, "user:901"), proposal(street))
    intruder = Staff(database, alpha, sibling, "user:902")

    with pytest.raises(NotFound):
        await staff_step(intruder, "close_registration", deliberation.id)
    # The sibling station reads the street's topic (put to its residents too) but cannot steer it.
    seen = await intruder(lambda s, a: repository.listing(s, alpha.tenant_id, states=None, limit=500))
    assert street_topic.id in {d.id for d in seen} and deliberation.id not in {d.id for d in seen}
    with pytest.raises(NotFound):
        await staff_step(intruder, "close_registration", street_topic.id)
    with pytest.raises(DomainError) as outside:
        await intruder(lambda s, a: service.propose(s, a, LIAISON, proposal(station)))
    assert outside.value.code == "OUT_OF_SCOPE"

    # Residents: one of the sibling station may join the street's topic but not the other station's;
    # one of another street joins neither.
    neighbour = Resident(database, alpha, sibling)
    with pytest.raises(NotFound):
        await neighbour.register(deliberation.id)
    assert (await neighbour.register(street_topic.id)).status == "registered"
    stranger = Resident(database, alpha, elsewhere)
    for topic in (deliberation, street_topic):
        with pytest.raises(NotFound):
            await stranger.register(topic.id)
