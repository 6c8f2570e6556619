from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from enum import Enum
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from schema.context import Info
from schema.loaders import children, workflow_history
from schema.relay import Node, encode_id
from services.mediation import models, repository
from services.mediation import stats as rates


def _children(
    info: Info,
    tenant_id: int,
    name: str,
    load: Callable[[AsyncSession, int, Sequence[int]], Awaitable[Sequence[Any]]],
) -> DataLoader[int, list[Any]]:
    """A case's parties, levels or sessions, gathered for every case of the page at once."""

    async def load_many(session: AsyncSession, ids: list[int]) -> Sequence[Any]:
        return await load(session, tenant_id, ids)

    return children(info, f"mediation:{name}", load_many, lambda row: int(row.case_id))


@strawberry.enum(name="MediationCaseType")
class CaseType(Enum):
    NEIGHBOURS = "neighbours"
    PROPERTY_MANAGEMENT = "property_management"
    FAMILY = "family"
    LABOUR = "labour"
    CONSUMER = "consumer"
    OTHER = "other"


@strawberry.enum
class MediationState(Enum):
    LEVEL1 = "level1"
    LEVEL2 = "level2"
    LEVEL3 = "level3"
    RESOLVED = "resolved"
    UNRESOLVED = "unresolved"
    WITHDRAWN = "withdrawn"


@strawberry.enum(name="MediationPartyRole")
class PartyRole(Enum):
    APPLICANT = "applicant"
    RESPONDENT = "respondent"
    OTHER = "other"


@strawberry.enum(name="MediationLevelOutcome")
class LevelOutcome(Enum):
    AGREEMENT = "agreement"
    FAILED = "failed"
    TIMEOUT = "timeout"


@strawberry.type
class MediationParty:
    name: str
    role: PartyRole


@strawberry.type
class MediationSession:
    level: int
    held_on: date
    participants: list[str]
    notes: str
    recorded_by: str


@strawberry.type
class MediationLevel:
    level: int
    mediator: str | None
    departments: list[str]
    started_at: datetime
    due_at: datetime
    ended_at: datetime | None
    outcome: LevelOutcome | None
    agreement: str | None
    sessions: list[MediationSession]


@strawberry.type
class MediationStep:
    step: str
    from_state: str | None
    to_state: str
    actor: str
    note: str | None
    at: datetime


@strawberry.type
class MediationCase(Node):
    row: strawberry.Private[models.MediationCase]
    case_type: CaseType
    description: str
    scope: str
    state: MediationState
    level: int
    mediator: str | None
    departments: list[str]
    level_due_at: datetime | None
    agreement: str | None
    opened_at: datetime
    closed_at: datetime | None
    request_id: strawberry.ID | None

    @strawberry.field(description="The parties (a party sees their own entry only).")
    async def parties(self, info: Info) -> list[MediationParty]:
        rows = await _children(info, self.row.tenant_id, "parties", repository.parties).load(self.row.id)
        return [MediationParty(name=r.name, role=PartyRole(r.role)) for r in rows]

    @strawberry.field(description="The levels reached, with their sessions (staff only).")
    async def levels(self, info: Info) -> list[MediationLevel]:
        levels = await _children(info, self.row.tenant_id, "levels", repository.levels).load(self.row.id)
        sittings = await _children(info, self.row.tenant_id, "sessions", repository.sessions).load(
            self.row.id
        )
        return [
            MediationLevel(
                level=lv.level,
                mediator=lv.mediator,
                departments=list(lv.departments),
                started_at=lv.started_at,
                due_at=lv.due_at,
                ended_at=lv.ended_at,
                outcome=LevelOutcome(lv.outcome) if lv.outcome else None,
                agreement=lv.agreement,
                sessions=[
                    MediationSession(
                        level=s.level,
                        held_on=s.held_on,
                        participants=list(s.participants),
                        notes=s.notes,
                        recorded_by=s.recorded_by,
                    )
                    for s in sittings
                    if s.level == lv.level
                ],
            )
            for lv in levels
        ]

    @strawberry.field(description="The steps taken (staff only).")
    async def history(self, info: Info) -> list[MediationStep]:
        events = await workflow_history(info, self.row.tenant_id, "mediation").load(self.row.id)
        return [
            MediationStep(
                step=e.step, from_state=e.from_state, to_state=e.to_state, actor=e.actor, note=e.note, at=e.at
            )
            for e in events
        ]


def case_of(row: models.MediationCase) -> MediationCase:
    return MediationCase(
        id=encode_id("MediationCase", row.id),
        row=row,
        case_type=CaseType(row.case_type),
        description=row.description,
        scope=row.scope,
        state=MediationState(row.state),
        level=row.level,
        mediator=row.mediator,
        departments=list(row.departments),
        level_due_at=row.level_due_at,
        agreement=row.agreement,
        opened_at=row.opened_at,
        closed_at=row.closed_at,
        request_id=encode_id("Request", row.request_id) if row.request_id is not None else None,
    )


@strawberry.type(name="MediationLevelStats")
class LevelStats:
    level: int
    started: int
    concluded: int
    agreements: int
    failed: int
    timeouts: int
    success_rate: float | None = strawberry.field(description="Agreements over concluded levels.")


def level_stats_of(row: rates.LevelStats) -> LevelStats:
    return LevelStats(
        level=row.level,
        started=row.started,
        concluded=row.concluded,
        agreements=row.agreements,
        failed=row.failed,
        timeouts=row.timeouts,
        success_rate=row.success_rate,
    )


@strawberry.type(name="MediationScopeStats")
class ScopeStats:
    scope: str
    name: str | None
    levels: list[LevelStats]


@strawberry.type(description="Success rates of the levels started in a window, per level and per station.")
class MediationStats:
    by_level: list[LevelStats]
    by_scope: list[ScopeStats]
