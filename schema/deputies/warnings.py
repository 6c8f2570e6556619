"""Warnings over GraphQL: the list of a territory's warnings and a deputy's weekly evaluations, running the
evaluation on demand, the deputy's acknowledgement and rectification note, and the city's duty settings
(the warning rule among them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession

from schema.context import Info
from schema.deputies.activities import STAFF_ONLY, _reads_activities
from schema.deputies.queries import territory_of
from schema.deputies.types import deputy_key
from schema.errors import (
    STEP_ERRORS,
    Error,
    from_domain,
)
from schema.mutations import run_as_owner_or_staff, run_service
from schema.permissions import SIGNED_IN, RequireRoles, RequireWholeCity
from schema.relay import Connection, Node, connection, encode_id, id_page
from services.deputies import duty_settings, repository, warnings
from services.deputies import models as rows
from services.deputies.models import DutySettings as DutySettingsRow
from services.errors import DomainError, InvalidInput, NotFound
from tenants.context import TenantContext, scope_is_within
from tenants.roles import Role


@strawberry.enum
class WarningLevel(Enum):
    BLUE = "blue"
    YELLOW = "yellow"
    RED = "red"


@strawberry.enum
class WarningState(Enum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


@strawberry.type(description="A red, yellow or blue warning (预警) of a deputy; closed ones are its history.")
class DeputyWarning(Node):
    deputy_id: strawberry.ID
    level: WarningLevel
    conditions: list[str]
    first_week: date
    last_week: date
    state: WarningState
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    rectification_note: str | None
    noted_by: str | None
    noted_at: datetime | None
    created_at: datetime
    closed_at: datetime | None


def warning_of(row: rows.DeputyWarning) -> DeputyWarning:
    return DeputyWarning(
        id=encode_id("DeputyWarning", row.id),
        deputy_id=encode_id("Deputy", row.deputy_id),
        level=WarningLevel(row.level),
        conditions=list(row.conditions),
        first_week=row.first_week,
        last_week=row.last_week,
        state=WarningState(row.state),
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
        rectification_note=row.rectification_note,
        noted_by=row.noted_by,
        noted_at=row.noted_at,
        created_at=row.created_at,
        closed_at=row.closed_at,
    )


async def load_warning(info: Info, key: int) -> DeputyWarning | None:
    if not _reads_activities(info):
        return None
    async with info.context.db() as session:
        row = await warnings.warning(session, info.context.require_principal().tenant_id, key)
    return warning_of(row) if row is not None else None


@strawberry.type(
    description="One week's evaluation of a deputy: the conditions held and the figures behind them."
)
class DeputyEvaluation:
    week_start: date
    conditions: list[str]
    level: WarningLevel | None
    streak: int = strawberry.field(
        description="Weeks in a row with at least one condition, this one included."
    )
    activities_this_week: int
    activities_last_week: int
    requests_due: int
    resolution_rate: float | None
    satisfaction: float | None


def evaluation_of(row: rows.DeputyEvaluation) -> DeputyEvaluation:
    figures: dict[str, Any] = row.figures
    return DeputyEvaluation(
        week_start=row.week_start,
        conditions=list(row.conditions),
        level=WarningLevel(row.level) if row.level else None,
        streak=row.streak,
        activities_this_week=int(figures.get("activities_this_week", 0)),
        activities_last_week=int(figures.get("activities_last_week", 0)),
        requests_due=int(figures.get("requests_due", 0)),
        resolution_rate=figures.get("resolution_rate"),
        satisfaction=figures.get("satisfaction"),
    )


@strawberry.type(
    description="A warning level reached by `conditions` held at once or `weeks` lagging in a row."
)
class WarningLevelRule:
    level: WarningLevel
    conditions: int
    weeks: int


@strawberry.input
class WarningLevelInput:
    level: WarningLevel
    conditions: int
    weeks: int


@strawberry.type(description="The city's duty settings: reception days, check-ins, satisfaction, warnings.")
class DutySettings:
    announce_days: int
    max_travel_kmh: int
    boundary_margin_meters: int
    satisfaction_bar: int
    warning_min_activities: int
    warning_resolution_bar: int
    warning_window_days: int
    warning_levels: list[WarningLevelRule]
    suspend_after_weeks: int


def settings_of(row: DutySettingsRow) -> DutySettings:
    return DutySettings(
        announce_days=row.announce_days,
        max_travel_kmh=row.max_travel_kmh,
        boundary_margin_meters=row.boundary_margin_meters,
        satisfaction_bar=row.satisfaction_bar,
        warning_min_activities=row.warning_min_activities,
        warning_resolution_bar=row.warning_resolution_bar,
        warning_window_days=row.warning_window_days,
        warning_levels=[
            WarningLevelRule(level=WarningLevel(e["level"]), conditions=e["conditions"], weeks=e["weeks"])
            for e in row.warning_levels
        ],
        suspend_after_weeks=row.suspend_after_weeks,
    )


@strawberry.input(description="Only the settings given change.")
class DutySettingsInput:
    announce_days: int | None = None
    max_travel_kmh: int | None = None
    boundary_margin_meters: int | None = None
    satisfaction_bar: int | None = None
    warning_min_activities: int | None = None
    warning_resolution_bar: int | None = None
    warning_window_days: int | None = None
    warning_levels: list[WarningLevelInput] | None = None
    suspend_after_weeks: int | None = None


@strawberry.type
class WarningPayload:
    warning: DeputyWarning


@strawberry.type
class WarningOutcome:
    outcome: str
    deputies: int


@strawberry.type(description="What an evaluation run did: the week, and how many deputies came to what.")
class WarningRunPayload:
    week_start: date
    evaluated: int
    outcomes: list[WarningOutcome]


@strawberry.type
class DutySettingsPayload:
    settings: DutySettings


_Errors = STEP_ERRORS
WarningResult = Annotated[WarningPayload | _Errors, strawberry.union("WarningResult")]
WarningRunResult = Annotated[WarningRunPayload | _Errors, strawberry.union("WarningRunResult")]
DutySettingsResult = Annotated[DutySettingsPayload | _Errors, strawberry.union("DutySettingsResult")]


def _readers_only(info: Info) -> None:
    if not _reads_activities(info):
        raise GraphQLError("residents do not read deputies' warnings", extensions={"code": "FORBIDDEN"})


@strawberry.type
class WarningsQuery:
    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="Warnings of the deputies kept in a territory (your whole scope when omitted), newest "
        "first; only live ones unless `liveOnly` is false.",
    )
    async def deputy_warnings(
        self,
        info: Info,
        node_id: strawberry.ID | None = None,
        deputy_id: strawberry.ID | None = None,
        live_only: bool = True,
        first: int = 50,
        after: str | None = None,
    ) -> Connection[DeputyWarning]:
        _readers_only(info)
        size, after_id = id_page(first, after)
        key = deputy_key(deputy_id) if deputy_id is not None else None
        scope = await territory_of(info, node_id)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            found, total = await warnings.listing(
                session, tenant_id, scope, live_only=live_only, deputy_id=key, after=after_id, limit=size + 1
            )
        return connection(
            found[:size],
            warning_of,
            total=total,
            has_next=len(found) > size,
            has_previous=after_id is not None,
            cursor_of=lambda row: str(row.id),
        )

    @strawberry.field(
        permission_classes=SIGNED_IN, description="A deputy's weekly evaluations, newest first."
    )
    async def deputy_evaluations(self, info: Info, deputy_id: strawberry.ID) -> list[DeputyEvaluation]:
        _readers_only(info)
        key = deputy_key(deputy_id)
        async with info.context.db() as session:
            found = await warnings.history(session, info.context.require_principal().tenant_id, [key])
        return [evaluation_of(row) for row in found]

    @strawberry.field(
        permission_classes=SIGNED_IN, description="The city's duty settings (defaults until saved)."
    )
    async def duty_settings(self, info: Info) -> DutySettings:
        async with info.context.db() as session:
            row = await repository.duty_settings(session, info.context.require_principal().tenant_id)
        return settings_of(row)


WarningStep = Callable[[AsyncSession, TenantContext, frozenset[str], int], Awaitable[rows.DeputyWarning]]


async def _on_warning(info: Info, global_id: str, step: WarningStep) -> WarningPayload | Error:
    """Staff in their own transaction; the deputy the warning is about in a context bounded to the
    record's scope (their own token's scope does not hold it)."""
    kinds = frozenset(role.value for role in info.context.require_principal().roles)

    async def work(session: AsyncSession, actor: TenantContext, key: int) -> WarningPayload:
        return WarningPayload(warning=warning_of(await step(session, actor, kinds, key)))

    return await run_as_owner_or_staff(info, global_id, "DeputyWarning", warnings.warning, work)


@strawberry.type
class WarningsMutation:
    @strawberry.mutation(
        extensions=STAFF_ONLY,
        description="Evaluate a finished week (the last one by default) now for the deputies kept in a "
        "territory (your whole scope when omitted); deputies evaluated for it already are left as they are.",
    )
    async def evaluate_warnings(
        self, info: Info, node_id: strawberry.ID | None = None, week: date | None = None
    ) -> WarningRunResult:
        principal = info.context.require_principal()
        try:
            scope = await territory_of(info, node_id)
        except GraphQLError as error:
            refused = NotFound if (error.extensions or {}).get("code") == "NOT_FOUND" else InvalidInput
            return from_domain(refused(error.message, field="nodeId"))  # type: ignore[return-value]
        # Only the part of the territory the caller's own scopes hold: the run steps outside the request's
        # transaction, so the caller's scopes bound it here.
        scopes = (
            [scope]
            if any(scope_is_within(scope, own) for own in principal.scopes)
            else [own for own in principal.scopes if scope_is_within(own, scope)]
        )
        try:
            day, outcomes = await warnings.evaluate(
                info.context.config.database, principal.tenant_id, week=week, scopes=scopes
            )
        except DomainError as error:
            return from_domain(error)  # type: ignore[return-value]
        return WarningRunPayload(
            week_start=day,
            evaluated=sum(outcomes.values()),
            outcomes=[WarningOutcome(outcome=o, deputies=n) for o, n in sorted(outcomes.items())],
        )

    @strawberry.mutation(
        extensions=[RequireRoles(Role.DEPUTY, Role.CITY_ADMIN, Role.DISTRICT_STAFF, Role.STREET_STAFF)],
        description="The deputy (or staff keeping the record) acknowledges a warning.",
    )
    async def acknowledge_warning(self, info: Info, id: strawberry.ID) -> WarningResult:
        return await _on_warning(info, id, warnings.acknowledge)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=[RequireRoles(Role.DEPUTY, Role.CITY_ADMIN, Role.DISTRICT_STAFF, Role.STREET_STAFF)],
        description="Say what is being done to put a warning right (整改说明); it closes with the warning.",
    )
    async def note_warning_rectification(self, info: Info, id: strawberry.ID, note: str) -> WarningResult:
        async def step(
            session: AsyncSession, actor: TenantContext, kinds: frozenset[str], key: int
        ) -> rows.DeputyWarning:
            return await warnings.note_rectification(session, actor, kinds, key, note)

        return await _on_warning(info, id, step)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=[RequireRoles(Role.CITY_ADMIN), RequireWholeCity()],
        description="Change the city's duty settings: reception notice, check-in limits, the satisfaction "
        "bar and the warning rule.",
    )
    async def set_duty_settings(self, info: Info, input: DutySettingsInput) -> DutySettingsResult:
        async def work(session: AsyncSession, actor: TenantContext) -> DutySettingsPayload:
            given: dict[str, Any] = {
                name: value
                for name, value in vars(input).items()
                if value is not None and name != "warning_levels"
            }
            if input.warning_levels is not None:
                given["warning_levels"] = [
                    {"level": e.level.value, "conditions": e.conditions, "weeks": e.weeks}
                    for e in input.warning_levels
                ]
            return DutySettingsPayload(settings=settings_of(await duty_settings.save(session, actor, given)))

        return await run_service(info, work)  # type: ignore[return-value]
