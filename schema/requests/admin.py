"""City configuration of the request workflow: routing table, holiday calendar, settings, categories."""

from __future__ import annotations

from datetime import MAXYEAR, MINYEAR, date
from enum import Enum
from typing import Annotated

import strawberry
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.extensions import FieldExtension

from schema.context import Info
from schema.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from schema.mutations import run_service
from schema.permissions import SIGNED_IN, RequireRoles, RequireWholeCity
from schema.requests.types import RequestCategory, Responsible
from schema.territory import territory
from services.hierarchy.repository import Level
from services.reach import not_found
from services.requests import admin, repository
from services.requests.admin import DayRule
from services.requests.models import RequestSettings as SettingsRow
from services.requests.models import RoutingRule as RuleRow
from tenants.context import TenantContext
from tenants.roles import Role

# Tenant-wide rows: a city admin whose token covers the whole city.
CITY_ADMIN: list[FieldExtension] = [RequireRoles(Role.CITY_ADMIN), RequireWholeCity()]
DISPATCHERS: list[FieldExtension] = [RequireRoles(Role.CITY_ADMIN, Role.DISTRICT_STAFF, Role.STREET_STAFF)]
NODE_LEVELS = {"District": Level.DISTRICT, "Street": Level.STREET, "Station": Level.STATION}


@strawberry.type(description="Who answers for a category (or every category) in a territory.")
class RoutingRule:
    id: strawberry.ID
    category: str | None = strawberry.field(description="A category code; null: every category.")
    territory: str = strawberry.field(description="The territory's hierarchy path.")
    responsible: Responsible
    department: str | None
    assignee: str | None

    @classmethod
    def of(cls, row: RuleRow, code: str | None) -> RoutingRule:
        return cls(
            id=strawberry.ID(str(row.id)),
            category=code,
            territory=row.scope,
            responsible=Responsible(row.responsible),
            department=row.department,
            assignee=row.assignee,
        )


@strawberry.type
class RequestSettings:
    timezone: str
    rating_threshold: int = strawberry.field(
        description="Satisfaction is out of 100: a rating below this reopens the request (default 80)."
    )
    duplicate_radius_meters: int
    duplicate_window_hours: int
    due_soon_hours: int
    escalation_days: int
    open311_public: bool
    default_department: str
    city_margin_meters: int = strawberry.field(
        description="A point farther than this outside the city's boundary is refused."
    )

    @classmethod
    def of(cls, row: SettingsRow) -> RequestSettings:
        return cls(
            timezone=row.timezone,
            rating_threshold=row.rating_threshold,
            duplicate_radius_meters=row.duplicate_radius_meters,
            duplicate_window_hours=row.duplicate_window_hours,
            due_soon_hours=row.due_soon_hours,
            escalation_days=row.escalation_days,
            open311_public=row.open311_public,
            default_department=row.default_department,
            city_margin_meters=row.city_margin_meters,
        )


@strawberry.enum
class DayKind(Enum):
    HOLIDAY = "holiday"
    WORKDAY = "workday"
    NORMAL = "normal"


@strawberry.type(description="A day that breaks the Monday-to-Friday rule.")
class CalendarDay:
    day: date
    kind: DayKind
    name: str


@strawberry.input
class CalendarDayInput:
    day: date
    kind: DayKind
    name: str = ""


@strawberry.input
class RoutingRuleInput:
    node_id: strawberry.ID | None = strawberry.field(
        default=None, description="District/street/station; null: city"
    )
    category: str | None = None
    responsible: Responsible
    department: str | None = None
    assignee: str | None = None


@strawberry.input
class RequestSettingsInput:
    timezone: str | None = None
    rating_threshold: int | None = None
    duplicate_radius_meters: int | None = None
    duplicate_window_hours: int | None = None
    due_soon_hours: int | None = None
    escalation_days: int | None = None
    open311_public: bool | None = None
    default_department: str | None = None
    city_margin_meters: int | None = None


@strawberry.input
class CategoryInput:
    code: str
    name: str
    kind: str = strawberry.field(description="basic or personalised")
    response_days: int
    resolution_days: int


@strawberry.type
class RoutingRulePayload:
    rule: RoutingRule


@strawberry.type
class DeletedPayload:
    deleted: bool


@strawberry.type
class SettingsPayload:
    settings: RequestSettings


@strawberry.type
class CalendarPayload:
    changed: int


@strawberry.type
class CategoryPayload:
    category: RequestCategory


_Errors = NotFoundError | InvalidInputError | ForbiddenError | ConflictError
RoutingRuleResult = Annotated[RoutingRulePayload | _Errors, strawberry.union("RoutingRuleResult")]
DeletedResult = Annotated[DeletedPayload | _Errors, strawberry.union("DeletedResult")]
SettingsResult = Annotated[SettingsPayload | _Errors, strawberry.union("SettingsResult")]
CalendarResult = Annotated[CalendarPayload | _Errors, strawberry.union("CalendarResult")]
CategoryResult = Annotated[CategoryPayload | _Errors, strawberry.union("CategoryResult")]


@strawberry.type
class RequestsAdminQuery:
    @strawberry.field(
        permission_classes=SIGNED_IN, description="The routing table (rules inside your scope)."
    )
    async def routing_rules(self, info: Info) -> list[RoutingRule]:
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows = await admin.routing_rules(session, tenant_id)
        return [RoutingRule.of(rule, code) for rule, code in rows]

    @strawberry.field(permission_classes=SIGNED_IN)
    async def request_settings(self, info: Info) -> RequestSettings:
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            return RequestSettings.of(await repository.settings_of(session, tenant_id))

    @strawberry.field(
        permission_classes=SIGNED_IN, description="Holidays and make-up working days of a year."
    )
    async def holiday_calendar(self, info: Info, year: int) -> list[CalendarDay]:
        if not MINYEAR <= year <= MAXYEAR:
            raise GraphQLError(
                f"year must lie between {MINYEAR} and {MAXYEAR}", extensions={"code": "INVALID_INPUT"}
            )
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows = await repository.calendar_year(session, tenant_id, year)
        return [CalendarDay(day=row.day, kind=DayKind(row.kind), name=row.name) for row in rows]


@strawberry.type
class RequestsAdminMutation:
    @strawberry.mutation(extensions=DISPATCHERS, description="Create or replace a routing rule.")
    async def set_routing_rule(self, info: Info, input: RoutingRuleInput) -> RoutingRuleResult:
        async def work(session: AsyncSession, context: TenantContext) -> RoutingRulePayload:
            scope = await territory(session, context, input.node_id, whole_city="the city's routing table")
            rule = await admin.set_routing_rule(
                session,
                context,
                scope=scope,
                category=input.category,
                responsible=input.responsible.value,
                department=input.department,
                assignee=input.assignee,
            )
            return RoutingRulePayload(rule=RoutingRule.of(rule, input.category))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=DISPATCHERS)
    async def delete_routing_rule(self, info: Info, id: strawberry.ID) -> DeletedResult:
        async def work(session: AsyncSession, context: TenantContext) -> DeletedPayload:
            if not (id.isascii() and id.isdigit() and len(id) <= 18):
                raise not_found(f"routing rule {str(id)[:80]}")
            await admin.delete_routing_rule(session, context, int(id))
            return DeletedPayload(deleted=True)

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=CITY_ADMIN)
    async def update_request_settings(self, info: Info, input: RequestSettingsInput) -> SettingsResult:
        async def work(session: AsyncSession, context: TenantContext) -> SettingsPayload:
            changes = {name: getattr(input, name) for name in RequestSettingsInput.__annotations__}
            row = await admin.update_settings(session, context.tenant_id, **changes)
            return SettingsPayload(settings=RequestSettings.of(row))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=CITY_ADMIN,
        description="Mark official holidays and make-up working days (e.g. when the State Council publishes "
        "next year's calendar); NORMAL removes an exception.",
    )
    async def set_calendar_days(self, info: Info, days: list[CalendarDayInput]) -> CalendarResult:
        async def work(session: AsyncSession, context: TenantContext) -> CalendarPayload:
            rules = [DayRule(d.day, d.kind.value, d.name) for d in days]
            return CalendarPayload(changed=await admin.set_calendar_days(session, context.tenant_id, rules))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(extensions=CITY_ADMIN, description="Create or change a category of need.")
    async def save_request_category(self, info: Info, input: CategoryInput) -> CategoryResult:
        async def work(session: AsyncSession, context: TenantContext) -> CategoryPayload:
            row = await admin.save_category(
                session,
                context.tenant_id,
                code=input.code,
                name=input.name,
                kind=input.kind,
                response_days=input.response_days,
                resolution_days=input.resolution_days,
            )
            return CategoryPayload(category=RequestCategory.of(row))

        return await run_service(info, work)  # type: ignore[return-value]
