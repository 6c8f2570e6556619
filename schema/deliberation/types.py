from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from schema.context import Info
from schema.loaders import children, workflow_history
from schema.relay import Node, encode_id
from services.deliberation import models, repository, service
from tenants.roles import Role


@strawberry.enum
class DeliberationState(Enum):
    OPEN = "open"
    CLOSED = "closed"
    VOTING = "voting"
    TALLIED = "tallied"
    PUBLISHED = "published"
    CANCELLED = "cancelled"


@strawberry.enum
class AgeBand(Enum):
    UNDER_30 = "under_30"
    AGE_30_44 = "30_44"
    AGE_45_59 = "45_59"
    AGE_60_74 = "60_74"
    AGE_75_PLUS = "75_plus"


@strawberry.enum
class Tenure(Enum):
    OWNER = "owner"
    RENTER = "renter"


@strawberry.enum
class Residency(Enum):
    LONG_TERM = "long_term"
    MIGRANT_WORKER = "migrant_worker"


@strawberry.enum(name="DeliberationApprovalBase")
class ApprovalBase(Enum):
    ATTENDEES = "attendees"
    BALLOTS = "ballots"


@strawberry.enum(name="DeliberationVoteChoice")
class VoteChoice(Enum):
    YES = "yes"
    NO = "no"
    ABSTAIN = "abstain"


@strawberry.enum(name="DeliberationRegistrationStatus")
class RegistrationStatus(Enum):
    REGISTERED = "registered"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"


def is_resident_only(info: Info) -> bool:
    principal = info.context.require_principal()
    return principal.roles == {Role.RESIDENT}


@asynccontextmanager
async def reading(info: Info) -> AsyncIterator[AsyncSession]:
    """Where a caller reads topics: staff in the request's transaction; a resident (whose own context sees
    no territory) in their resident view, which shows the topics put to their home and their own rows."""
    principal = info.context.require_principal()
    if not is_resident_only(info):
        async with info.context.db() as session:
            yield session
        return
    view = service.resident_view(principal.tenant_id, principal.scopes, principal.sub)
    async with info.context.config.database.scoped(view) as session:
        yield session


@strawberry.type(name="DeliberationRegistration")
class Registration(Node):
    display_name: str
    age_band: AgeBand
    tenure: Tenure
    residency: Residency
    retired_cadre: bool
    status: RegistrationStatus
    queued_at: datetime
    promoted_at: datetime | None
    attended: bool


def registration_of(row: models.Registration) -> Registration:
    return Registration(
        id=encode_id("DeliberationRegistration", row.id),
        display_name=row.display_name,
        age_band=AgeBand(row.age_band),
        tenure=Tenure(row.tenure),
        residency=Residency(row.residency),
        retired_cadre=row.retired_cadre,
        status=RegistrationStatus(row.status),
        queued_at=row.queued_at,
        promoted_at=row.promoted_at,
        attended=row.attended_at is not None,
    )


@strawberry.type(
    name="DeliberationTally",
    description="The tally: shown to staff once voting closed, to residents once published.",
)
class DeliberationResult:
    attendees: int
    yes: int
    no: int
    abstain: int
    quorum_met: bool
    passed: bool
    approval_share: float | None = strawberry.field(
        description="yes over the approval base (attendees or ballots)."
    )


@strawberry.type(name="DiversityGroupShare")
class GroupShare:
    dimension: str
    group: str
    registrants: int
    voters: int
    registrant_share: float
    voter_share: float


@strawberry.type(name="EliteCaptureWarning")
class CaptureWarning:
    dimension: str
    group: str
    among: str
    share: float
    message: str


@strawberry.type(
    name="DiversityReport",
    description="Shares of each declared group among the seated registrants and the voters.",
)
class DiversityReport:
    registrants: int
    voters: int
    threshold_percent: int
    groups: list[GroupShare]
    warnings: list[CaptureWarning]


@strawberry.type
class DeliberationStep:
    step: str
    from_state: str | None
    to_state: str
    actor: str
    note: str | None
    at: datetime


@strawberry.type
class Deliberation(Node):
    row: strawberry.Private[models.Deliberation]
    topic: str
    description: str
    place: str | None
    scope: str
    meeting_at: datetime
    registration_deadline: datetime
    voting_closes_at: datetime
    capacity: int
    quorum: int
    approval_numerator: int
    approval_denominator: int
    approval_base: ApprovalBase
    capture_percent: int
    state: DeliberationState

    @strawberry.field
    def result(self, info: Info) -> DeliberationResult | None:
        row = self.row
        if row.tallied_at is None or (row.published_at is None and is_resident_only(info)):
            return None
        yes, no, abstain, attendees = (
            row.yes_votes or 0,
            row.no_votes or 0,
            row.abstentions or 0,
            row.attendees or 0,
        )
        base = attendees if row.approval_base == "attendees" else yes + no + abstain
        return DeliberationResult(
            attendees=attendees,
            yes=yes,
            no=no,
            abstain=abstain,
            quorum_met=bool(row.quorum_met),
            passed=bool(row.passed),
            approval_share=yes / base if base else None,
        )

    @strawberry.field(description="Seated and waitlisted registrants (a resident sees their own only).")
    async def registrations(self, info: Info) -> list[Registration]:
        tenant_id = self.row.tenant_id

        async def load_many(session: AsyncSession, ids: list[int]) -> list[Any]:
            return await repository.registrations_of_many(session, tenant_id, ids)

        loader = children(info, "deliberation:registrations", load_many, lambda row: int(row.deliberation_id))
        return [registration_of(row) for row in await loader.load(self.row.id)]

    @strawberry.field(description="The caller's own registration, if any.")
    async def my_registration(self, info: Info) -> Registration | None:
        principal = info.context.require_principal()
        async with info.context.db() as session:
            row = await repository.registration_of(session, self.row.tenant_id, self.row.id, principal.sub)
        return registration_of(row) if row is not None else None

    @strawberry.field(description="Participation diversity, for staff (null for residents).")
    async def diversity(self, info: Info) -> DiversityReport | None:
        if is_resident_only(info):
            return None
        async with info.context.db() as session:
            report = await service.diversity(session, self.row.tenant_id, self.row)
        return DiversityReport(
            registrants=report.registrants,
            voters=report.voters,
            threshold_percent=report.threshold_percent,
            groups=[
                GroupShare(
                    dimension=g.dimension,
                    group=g.group,
                    registrants=g.registrants,
                    voters=g.voters,
                    registrant_share=g.registrant_share,
                    voter_share=g.voter_share,
                )
                for g in report.groups
            ],
            warnings=[
                CaptureWarning(
                    dimension=w.dimension, group=w.group, among=w.among, share=w.share, message=w.message
                )
                for w in report.warnings
            ],
        )

    @strawberry.field(description="The steps taken (staff see every step; residents none).")
    async def history(self, info: Info) -> list[DeliberationStep]:
        events = await workflow_history(info, self.row.tenant_id, "deliberation").load(self.row.id)
        return [
            DeliberationStep(
                step=e.step, from_state=e.from_state, to_state=e.to_state, actor=e.actor, note=e.note, at=e.at
            )
            for e in events
        ]


def deliberation_of(row: models.Deliberation) -> Deliberation:
    return Deliberation(
        id=encode_id("Deliberation", row.id),
        row=row,
        topic=row.topic,
        description=row.description,
        place=row.place,
        scope=row.scope,
        meeting_at=row.meeting_at,
        registration_deadline=row.registration_deadline,
        voting_closes_at=row.voting_closes_at,
        capacity=row.capacity,
        quorum=row.quorum,
        approval_numerator=row.approval_numerator,
        approval_denominator=row.approval_denominator,
        approval_base=ApprovalBase(row.approval_base),
        capture_percent=row.capture_percent,
        state=DeliberationState(row.state),
    )
