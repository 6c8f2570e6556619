"""Deliberation councils (议事会) as a declared workflow.

Staff put a topic to the residents of a station or street; residents register (a full meeting puts them on
the waitlist, and a cancellation promotes the first waitlisted, who is told); staff record who attended and
open the vote; each attendee votes once; voting closes (staff, or the deadline timer), the tally applies the
quorum and the approval threshold; staff publish the result. Deadlines are timer rows, every step is in the
history and the audit chain, every notice goes through the outbox.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, Unpack

from sqlalchemy.ext.asyncio import AsyncSession

from services.deliberation import repository
from services.deliberation.models import AGE_BANDS, RESIDENCIES, TENURES, Ballot, Deliberation, Registration
from services.errors import Conflict, InvalidInput, NotFound, OutOfScope
from services.reach import Target, acting_on, not_found
from services.unit_of_work import unit_of_work
from services.workflow.machine import SYSTEM, NotAllowed, StateMachine, step
from services.workflow.rows import cancel_for, notify_about, same_place, schedule_for
from services.workflow.service import StepDetails, advance
from tenants.context import TenantContext, scope_is_within
from tenants.db import Database
from tenants.roles import Role

T = TypeVar("T")

STAFF = (Role.CITY_ADMIN, Role.DISTRICT_STAFF, Role.STREET_STAFF, Role.STATION_LIAISON)
RESIDENT = Role.RESIDENT

# The whole workflow: states, steps and who may take each one.
MACHINE = StateMachine(
    "deliberation",
    ("open", "closed", "voting", "tallied", "published", "cancelled"),
    (
        step("propose", [], "open", STAFF),
        step("register", ["open"], "open", [RESIDENT]),
        step("withdraw", ["open"], "open", [RESIDENT]),
        step("close_registration", ["open"], "closed", [*STAFF, SYSTEM]),
        step("attend", ["closed"], "closed", STAFF),
        step("open_voting", ["closed"], "voting", STAFF),
        step("vote", ["voting"], "voting", [RESIDENT]),
        step("close_voting", ["voting"], "tallied", [*STAFF, SYSTEM]),
        step("publish", ["tallied"], "published", STAFF),
        step("cancel", ["open", "closed", "voting"], "cancelled", STAFF, note=True),
    ),
)
PROPOSERS = frozenset(STAFF)

REGISTRATION_TIMER = "deliberation.registration_deadline"
VOTING_TIMER = "deliberation.voting_close"
CHOICES = ("yes", "no", "abstain")


@dataclass(frozen=True, slots=True)
class Proposal:
    scope: str
    topic: str
    meeting_at: datetime
    registration_deadline: datetime
    voting_closes_at: datetime
    capacity: int
    quorum: int
    description: str = ""
    place: str | None = None
    approval_numerator: int = 2
    approval_denominator: int = 3
    approval_base: str = "attendees"
    capture_percent: int = 60


@dataclass(frozen=True, slots=True)
class Participant:
    display_name: str
    age_band: str
    tenure: str
    residency: str
    retired_cadre: bool = False


@dataclass(frozen=True, slots=True)
class GroupShare:
    dimension: str
    group: str
    registrants: int
    voters: int
    registrant_share: float
    voter_share: float


@dataclass(frozen=True, slots=True)
class CaptureWarning:
    dimension: str
    group: str
    among: str  # "registrants" or "voters"
    share: float
    message: str


@dataclass(frozen=True, slots=True)
class DiversityReport:
    registrants: int
    voters: int
    threshold_percent: int
    groups: list[GroupShare] = field(default_factory=list)
    warnings: list[CaptureWarning] = field(default_factory=list)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _is_station_or_street(scope: str) -> bool:
    labels = scope.split(".")
    return (len(labels) == 3 and labels[2][0] == "s") or (len(labels) == 4 and labels[3][0] == "t")


def _check_proposal(proposal: Proposal, now: datetime) -> None:
    if not _is_station_or_street(proposal.scope):
        raise InvalidInput("a deliberation is put to the residents of a station or a street", field="nodeId")
    if not proposal.topic.strip() or len(proposal.topic) > 300:
        raise InvalidInput("the topic must be 1 to 300 characters", field="topic")
    for name in ("meeting_at", "registration_deadline", "voting_closes_at"):
        if getattr(proposal, name).tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone, e.g. 2026-12-01T19:00:00+08:00", field=name)
    if proposal.registration_deadline <= now:
        raise InvalidInput("the registration deadline must lie in the future", field="registrationDeadline")
    if not proposal.registration_deadline <= proposal.meeting_at <= proposal.voting_closes_at:
        raise InvalidInput(
            "registration must close before the meeting, and voting after it", field="votingClosesAt"
        )
    if not 1 <= proposal.capacity <= 10_000:
        raise InvalidInput("capacity must be between 1 and 10000", field="capacity")
    if not 1 <= proposal.quorum <= proposal.capacity:
        raise InvalidInput("the quorum must be between 1 and the capacity", field="quorum")
    if not 1 <= proposal.approval_numerator <= proposal.approval_denominator <= 1000:
        raise InvalidInput("the approval threshold must be a fraction in (0, 1], e.g. 2/3", field="approval")
    if proposal.approval_base not in ("attendees", "ballots"):
        raise InvalidInput("the approval base is attendees or ballots", field="approvalBase")
    if not 1 <= proposal.capture_percent <= 100:
        raise InvalidInput("the capture warning threshold is a percentage (1-100)", field="capturePercent")


def _check_participant(participant: Participant) -> None:
    if not participant.display_name.strip() or len(participant.display_name) > 100:
        raise InvalidInput("the name must be 1 to 100 characters", field="displayName")
    for name, allowed in (("age_band", AGE_BANDS), ("tenure", TENURES), ("residency", RESIDENCIES)):
        if getattr(participant, name) not in allowed:
            raise InvalidInput(f"{name} must be one of {', '.join(allowed)}", field=name)


async def _step(
    session: AsyncSession,
    deliberation: Deliberation,
    name: str,
    actor: str,
    kinds: Iterable[str],
    **details: Unpack[StepDetails],
) -> None:
    await advance(session, MACHINE, deliberation, name, actor=actor, actor_kinds=kinds, **details)


async def _notify_registrants(
    session: AsyncSession,
    deliberation: Deliberation,
    event: str,
    title: str,
    *,
    statuses: Sequence[str] = repository.ACTIVE,
    attended_only: bool = False,
    payload: Mapping[str, object] | None = None,
) -> None:
    for registration in await repository.registrations(
        session, deliberation.tenant_id, deliberation.id, statuses=statuses
    ):
        if attended_only and registration.attended_at is None:
            continue
        await notify_about(
            session,
            deliberation,
            kind=f"deliberation.{event}",
            title=title,
            recipient=registration.owner_principal,
            source=f"deliberation:{deliberation.id}:{event}:{registration.id}",
            payload={"deliberation_id": deliberation.id, **(payload or {})},
        )


async def _load(session: AsyncSession, tenant_id: int, deliberation_id: int) -> Deliberation:
    deliberation = await repository.get(session, tenant_id, deliberation_id, lock=True)
    if deliberation is None:
        raise not_found(f"deliberation {deliberation_id}")
    return deliberation


# --- staff -------------------------------------------------------------------------------------------


async def propose(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    proposal: Proposal,
    *,
    now: datetime | None = None,
) -> Deliberation:
    moment = _now(now)
    if kinds.isdisjoint(PROPOSERS):
        raise NotAllowed("only staff may put a topic to deliberation")
    _check_proposal(proposal, moment)
    if not any(scope_is_within(proposal.scope, scope) for scope in actor.scopes):
        raise OutOfScope("that station or street lies outside your scope", field="nodeId")
    deliberation = Deliberation(
        tenant_id=actor.tenant_id,
        scope=proposal.scope,
        topic=proposal.topic.strip(),
        description=proposal.description,
        place=proposal.place,
        meeting_at=proposal.meeting_at,
        registration_deadline=proposal.registration_deadline,
        voting_closes_at=proposal.voting_closes_at,
        capacity=proposal.capacity,
        quorum=proposal.quorum,
        approval_numerator=proposal.approval_numerator,
        approval_denominator=proposal.approval_denominator,
        approval_base=proposal.approval_base,
        capture_percent=proposal.capture_percent,
        created_by=actor.principal,
    )
    payload = {"topic": deliberation.topic, "capacity": deliberation.capacity}
    await _step(session, deliberation, "propose", actor.principal, kinds, payload=payload, at=moment)
    for kind, due_at, name in (
        (REGISTRATION_TIMER, deliberation.registration_deadline, "registration"),
        (VOTING_TIMER, deliberation.voting_closes_at, "voting"),
    ):
        key = f"deliberation:{deliberation.id}:{name}"
        await schedule_for(session, deliberation, kind=kind, key=key, due_at=due_at)
    await notify_about(
        session,
        deliberation,
        kind="deliberation.proposed",
        title=f"议事会议题：{deliberation.topic}",
        source=f"deliberation:{deliberation.id}:proposed",
        payload={"deliberation_id": deliberation.id},
    )
    return deliberation


async def close_registration(
    session: AsyncSession,
    tenant_id: int,
    actor: str,
    kinds: Iterable[str],
    deliberation_id: int,
    *,
    now: datetime | None = None,
) -> Deliberation:
    moment = _now(now)
    deliberation = await _load(session, tenant_id, deliberation_id)
    seats = await repository.seats_taken(session, tenant_id, deliberation_id)
    await _step(
        session, deliberation, "close_registration", actor, kinds, payload={"registered": seats}, at=moment
    )
    await cancel_for(session, deliberation, [REGISTRATION_TIMER], moment)
    return deliberation


async def mark_attendance(
    session: AsyncSession,
    tenant_id: int,
    actor: str,
    kinds: Iterable[str],
    deliberation_id: int,
    registration_ids: Sequence[int],
    *,
    now: datetime | None = None,
) -> Deliberation:
    moment = _now(now)
    deliberation = await _load(session, tenant_id, deliberation_id)
    MACHINE.check("attend", deliberation.state, kinds)
    seated = {
        r.id: r
        for r in await repository.registrations(session, tenant_id, deliberation_id, statuses=["registered"])
    }
    unknown = sorted(set(registration_ids) - set(seated))
    if unknown:
        raise InvalidInput(
            f"registrations {', '.join(map(str, unknown))} hold no seat at this deliberation",
            field="registrationIds",
        )
    marked = 0
    for registration_id in dict.fromkeys(registration_ids):
        if seated[registration_id].attended_at is None:
            seated[registration_id].attended_at = moment
            marked += 1
    await _step(
        session, deliberation, "attend", actor, kinds, public=False, payload={"marked": marked}, at=moment
    )
    return deliberation


async def open_voting(
    session: AsyncSession,
    tenant_id: int,
    actor: str,
    kinds: Iterable[str],
    deliberation_id: int,
    *,
    now: datetime | None = None,
) -> Deliberation:
    moment = _now(now)
    deliberation = await _load(session, tenant_id, deliberation_id)
    await _step(session, deliberation, "open_voting", actor, kinds, at=moment)
    await _notify_registrants(
        session,
        deliberation,
        "voting_opened",
        f"请为“{deliberation.topic}”投票",
        statuses=["registered"],
        attended_only=True,
    )
    return deliberation


def approval_reached(yes: int, base: int, numerator: int, denominator: int) -> bool:
    """yes / base >= numerator / denominator, in integers (exactly two thirds passes a 2/3 rule)."""
    return base > 0 and yes * denominator >= numerator * base


async def close_voting(
    session: AsyncSession,
    tenant_id: int,
    actor: str,
    kinds: Iterable[str],
    deliberation_id: int,
    *,
    now: datetime | None = None,
) -> Deliberation:
    moment = _now(now)
    deliberation = await _load(session, tenant_id, deliberation_id)
    MACHINE.check("close_voting", deliberation.state, kinds)
    attendees = await repository.attendee_count(session, tenant_id, deliberation_id)
    counts = await repository.ballot_counts(session, tenant_id, deliberation_id)
    yes, no, abstain = (counts.get(choice, 0) for choice in CHOICES)
    base = attendees if deliberation.approval_base == "attendees" else yes + no + abstain
    deliberation.attendees, deliberation.yes_votes, deliberation.no_votes, deliberation.abstentions = (
        attendees,
        yes,
        no,
        abstain,
    )
    deliberation.quorum_met = attendees >= deliberation.quorum
    deliberation.passed = deliberation.quorum_met and approval_reached(
        yes, base, deliberation.approval_numerator, deliberation.approval_denominator
    )
    deliberation.tallied_at = moment
    tally = {"attendees": attendees, "yes": yes, "no": no, "abstain": abstain}
    await _step(
        session,
        deliberation,
        "close_voting",
        actor,
        kinds,
        payload={**tally, "quorum_met": deliberation.quorum_met, "passed": deliberation.passed},
        at=moment,
    )
    await cancel_for(session, deliberation, [VOTING_TIMER], moment)
    await notify_about(
        session,
        deliberation,
        kind="deliberation.tallied",
        title=f"“{deliberation.topic}”投票结束，待公布",
        source=f"deliberation:{deliberation.id}:tallied",
        payload={"deliberation_id": deliberation.id, **tally},
    )
    return deliberation


async def publish(
    session: AsyncSession,
    tenant_id: int,
    actor: str,
    kinds: Iterable[str],
    deliberation_id: int,
    *,
    now: datetime | None = None,
) -> Deliberation:
    moment = _now(now)
    deliberation = await _load(session, tenant_id, deliberation_id)
    result = {
        "attendees": deliberation.attendees,
        "yes": deliberation.yes_votes,
        "no": deliberation.no_votes,
        "abstain": deliberation.abstentions,
        "quorum_met": deliberation.quorum_met,
        "passed": deliberation.passed,
    }
    await _step(session, deliberation, "publish", actor, kinds, payload=result, at=moment)
    deliberation.published_at = moment
    verdict = "通过" if deliberation.passed else "未通过"
    await notify_about(
        session,
        deliberation,
        kind="deliberation.published",
        title=f"“{deliberation.topic}”表决结果：{verdict}",
        source=f"deliberation:{deliberation.id}:published",
        payload={"deliberation_id": deliberation.id, **result},
    )
    await _notify_registrants(
        session,
        deliberation,
        "published",
        f"“{deliberation.topic}”表决结果：{verdict}",
        statuses=["registered"],
        payload=result,
    )
    return deliberation


async def cancel(
    session: AsyncSession,
    tenant_id: int,
    actor: str,
    kinds: Iterable[str],
    deliberation_id: int,
    reason: str,
    *,
    now: datetime | None = None,
) -> Deliberation:
    moment = _now(now)
    deliberation = await _load(session, tenant_id, deliberation_id)
    await _step(session, deliberation, "cancel", actor, kinds, note=reason, at=moment)
    await cancel_for(session, deliberation, [REGISTRATION_TIMER, VOTING_TIMER], moment)
    await _notify_registrants(session, deliberation, "cancelled", f"“{deliberation.topic}”已取消：{reason}")
    return deliberation


async def diversity(session: AsyncSession, tenant_id: int, deliberation: Deliberation) -> DiversityReport:
    """Shares of each declared group among the seated registrants and among those who voted, with a
    warning for any group above the deliberation's capture threshold."""
    rows = await repository.participant_groups(session, tenant_id, deliberation.id)
    groups = [
        *(("age_band", band) for band in AGE_BANDS),
        *(("tenure", tenure) for tenure in TENURES),
        *(("residency", residency) for residency in RESIDENCIES),
        ("retired_cadre", "retired_cadre"),
    ]

    def member_of(row: Any) -> set[tuple[str, str]]:
        found = {("age_band", row[0]), ("tenure", row[1]), ("residency", row[2])}
        return found | ({("retired_cadre", "retired_cadre")} if row[3] else set())

    registrants = [member_of(row) for row in rows]
    voters = [member_of(row) for row, voted in zip(rows, (row[4] for row in rows), strict=True) if voted]
    totals = {"registrants": len(registrants), "voters": len(voters)}
    threshold = deliberation.capture_percent
    shares: list[GroupShare] = []
    warnings: list[CaptureWarning] = []
    for dimension, group in groups:
        counts = {
            "registrants": sum(1 for r in registrants if (dimension, group) in r),
            "voters": sum(1 for r in voters if (dimension, group) in r),
        }
        share = {k: counts[k] / totals[k] if totals[k] else 0.0 for k in counts}
        shares.append(
            GroupShare(
                dimension,
                group,
                counts["registrants"],
                counts["voters"],
                share["registrants"],
                share["voters"],
            )
        )
        for among in ("registrants", "voters"):
            if totals[among] and counts[among] * 100 > threshold * totals[among]:
                warnings.append(
                    CaptureWarning(
                        dimension,
                        group,
                        among,
                        share[among],
                        f"{group} make up {share[among]:.0%} of the {among} (over {threshold}%): "
                        "the deliberation risks elite capture",
                    )
                )
    return DiversityReport(len(registrants), len(voters), threshold, shares, warnings)


# --- residents ---------------------------------------------------------------------------------------


def resident_view(tenant_id: int, home_scopes: Sequence[str], principal: str) -> TenantContext:
    """A resident's reading context, anchored one label below each home scope, where no row lies: through
    the hierarchy policy they read topics put to their home or above it, through the owner policy the rows
    they own, and nothing else."""
    return TenantContext(tenant_id, tuple(f"{scope}.r0" for scope in home_scopes), principal)


async def as_resident(
    database: Database,
    tenant_id: int,
    home_scopes: Sequence[str],
    principal: str,
    deliberation_id: int,
    work: Callable[[AsyncSession], Awaitable[T]],
) -> T:
    """Run a resident's step in a transaction bounded to the topic's own scope.

    The resident's own context sees no territory, yet registering counts seats and withdrawing promotes
    someone else; so the topic is found through the resident's view (which proves it is put to their home),
    and the step runs under that topic's scope alone, as that resident."""
    view = resident_view(tenant_id, home_scopes, principal)
    async with database.scoped(view) as session:
        scope = await repository.scope_of(session, tenant_id, deliberation_id)
    what = f"deliberation {deliberation_id}"
    if scope is None:
        raise not_found(what)
    topic = Target(tenant_id, scope, addressed_below=True)
    async with unit_of_work(database, acting_on(view, topic, what=what)) as session:
        return await work(session)


async def register(
    session: AsyncSession,
    tenant_id: int,
    principal: str,
    deliberation_id: int,
    participant: Participant,
    *,
    now: datetime | None = None,
) -> Registration:
    moment = _now(now)
    _check_participant(participant)
    deliberation = await _load(session, tenant_id, deliberation_id)
    MACHINE.check("register", deliberation.state, [RESIDENT])
    if moment >= deliberation.registration_deadline:
        raise Conflict("registration has closed", field="id")
    registration = await repository.registration_of(session, tenant_id, deliberation_id, principal, lock=True)
    if registration is not None and registration.status != "cancelled":
        raise Conflict(f"you are already {registration.status} for this deliberation", field="id")
    seats = await repository.seats_taken(session, tenant_id, deliberation_id)
    status = "registered" if seats < deliberation.capacity else "waitlisted"
    if registration is None:
        registration = Registration(
            **same_place(deliberation), deliberation_id=deliberation_id, owner_principal=principal
        )
        session.add(registration)
    registration.display_name = participant.display_name.strip()
    registration.age_band = participant.age_band
    registration.tenure = participant.tenure
    registration.residency = participant.residency
    registration.retired_cadre = participant.retired_cadre
    registration.status = status
    registration.queued_at = moment
    registration.promoted_at = registration.cancelled_at = registration.attended_at = None
    await session.flush()
    await _step(
        session,
        deliberation,
        "register",
        principal,
        [RESIDENT],
        public=False,
        payload={"registration_id": registration.id, "status": status},
        at=moment,
    )
    return registration


async def withdraw(
    session: AsyncSession,
    tenant_id: int,
    principal: str,
    deliberation_id: int,
    *,
    now: datetime | None = None,
) -> Registration:
    """Cancel a registration; a freed seat goes to the first on the waitlist, who is told."""
    moment = _now(now)
    deliberation = await _load(session, tenant_id, deliberation_id)
    MACHINE.check("withdraw", deliberation.state, [RESIDENT])
    registration = await repository.registration_of(session, tenant_id, deliberation_id, principal, lock=True)
    if registration is None or registration.status == "cancelled":
        raise NotFound("you hold no registration for this deliberation", field="id")
    freed = registration.status == "registered"
    registration.status, registration.cancelled_at = "cancelled", moment
    promoted = await repository.first_waitlisted(session, tenant_id, deliberation_id) if freed else None
    if promoted is not None:
        promoted.status, promoted.promoted_at = "registered", moment
        await notify_about(
            session,
            deliberation,
            kind="deliberation.promoted",
            title=f"您已从候补转为“{deliberation.topic}”的正式参会人",
            recipient=promoted.owner_principal,
            # Queued-at tells a second promotion (after re-registering) from a redelivery of the first.
            source=f"deliberation:{deliberation_id}:promoted:{promoted.id}:{promoted.queued_at.isoformat()}",
            payload={"deliberation_id": deliberation_id, "registration_id": promoted.id},
        )
    await _step(
        session,
        deliberation,
        "withdraw",
        principal,
        [RESIDENT],
        public=False,
        payload={"registration_id": registration.id, "promoted": promoted.id if promoted else None},
        at=moment,
    )
    return registration


async def vote(
    session: AsyncSession,
    tenant_id: int,
    principal: str,
    deliberation_id: int,
    choice: str,
    *,
    now: datetime | None = None,
) -> Ballot:
    moment = _now(now)
    if choice not in CHOICES:
        raise InvalidInput("a vote is yes, no or abstain", field="choice")
    deliberation = await _load(session, tenant_id, deliberation_id)
    MACHINE.check("vote", deliberation.state, [RESIDENT])
    if moment >= deliberation.voting_closes_at:
        raise Conflict("voting has closed", field="id")
    registration = await repository.registration_of(session, tenant_id, deliberation_id, principal, lock=True)
    if registration is None or registration.status != "registered" or registration.attended_at is None:
        raise NotAllowed("only registered participants who attended may vote")
    if await repository.ballot_of(session, tenant_id, registration.id) is not None:
        raise Conflict("you have voted already", field="id")
    ballot = Ballot(
        **same_place(deliberation),
        deliberation_id=deliberation_id,
        registration_id=registration.id,
        owner_principal=principal,
        choice=choice,
        cast_at=moment,
    )
    session.add(ballot)
    await session.flush()
    # The history says that someone voted, not how.
    await _step(
        session,
        deliberation,
        "vote",
        principal,
        [RESIDENT],
        public=False,
        payload={"registration_id": registration.id},
        at=moment,
    )
    return ballot
