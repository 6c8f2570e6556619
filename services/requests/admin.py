"""What a city configures: its routing table, its holiday calendar, its request settings, its categories."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import InvalidInput
from services.reach import not_found
from services.requests import repository
from services.requests.config_cache import forget
from services.requests.lifecycle import LEVELS
from services.requests.models import Holiday, RequestCategory, RequestSettings, RoutingRule
from tenants.context import PRINCIPAL_PATTERN, TenantContext, scope_is_within


def _inside_caller(context: TenantContext, scope: str) -> None:
    if not any(scope_is_within(scope, own) for own in context.scopes):
        raise not_found("that territory", "nodeId")


async def set_routing_rule(
    session: AsyncSession,
    context: TenantContext,
    *,
    scope: str,
    category: str | None,
    responsible: str,
    department: str | None = None,
    assignee: str | None = None,
) -> RoutingRule:
    """Create or replace the rule for (category, territory)."""
    _inside_caller(context, scope)
    if responsible not in LEVELS:
        raise InvalidInput(f"responsible must be one of {', '.join(LEVELS)}", field="responsible")
    if responsible == "department" and not (department and department.strip()):
        raise InvalidInput("name the department", field="department")
    if assignee is not None and not PRINCIPAL_PATTERN.fullmatch(assignee):
        raise InvalidInput("an assignee is a principal such as user:42", field="assignee")
    category_id = None
    if category is not None:
        category_id = (await repository.category_by_code(session, context.tenant_id, category)).id
    existing = await session.scalar(
        select(RoutingRule).where(
            RoutingRule.tenant_id == context.tenant_id,
            RoutingRule.scope == scope,
            RoutingRule.category_id.is_(None)
            if category_id is None
            else RoutingRule.category_id == category_id,
        )
    )
    rule = existing or RoutingRule(tenant_id=context.tenant_id, scope=scope, category_id=category_id)
    rule.responsible = responsible
    rule.department = department.strip() if department else None
    rule.assignee = assignee
    session.add(rule)
    await session.flush()
    return rule


async def delete_routing_rule(session: AsyncSession, context: TenantContext, rule_id: int) -> None:
    result = await session.execute(
        delete(RoutingRule).where(RoutingRule.tenant_id == context.tenant_id, RoutingRule.id == rule_id)
    )
    if not getattr(result, "rowcount", 0):
        raise not_found(f"routing rule {rule_id}")


async def routing_rules(session: AsyncSession, tenant_id: int) -> list[tuple[RoutingRule, str | None]]:
    rows = await session.execute(
        select(RoutingRule, RequestCategory.code)
        .outerjoin(
            RequestCategory,
            (RequestCategory.tenant_id == RoutingRule.tenant_id)
            & (RequestCategory.id == RoutingRule.category_id),
        )
        .where(RoutingRule.tenant_id == tenant_id)
        .order_by(func.nlevel(RoutingRule.scope), RoutingRule.scope, RequestCategory.code.nulls_first())
    )
    return [(rule, code) for rule, code in rows.all()]


@dataclass(frozen=True, slots=True)
class DayRule:
    day: date
    kind: str  # holiday | workday | normal (remove the exception)
    name: str = ""


async def set_calendar_days(session: AsyncSession, tenant_id: int, days: list[DayRule]) -> int:
    """Mark days as official holidays or make-up working days (or back to normal). Deadlines already
    computed keep their date; new ones follow the calendar."""
    for rule in days:
        if rule.kind not in {"holiday", "workday", "normal"}:
            raise InvalidInput("a day is a holiday, a workday or normal", field="kind")
        if rule.kind == "normal":
            await session.execute(
                delete(Holiday).where(Holiday.tenant_id == tenant_id, Holiday.day == rule.day)
            )
            continue
        await session.execute(
            insert(Holiday)
            .values(tenant_id=tenant_id, day=rule.day, kind=rule.kind, name=rule.name[:100])
            .on_conflict_do_update(
                index_elements=["tenant_id", "day"], set_={"kind": rule.kind, "name": rule.name[:100]}
            )
        )
    forget(tenant_id)
    return len(days)


SETTING_LIMITS = {
    "rating_threshold": (1, 100),
    "city_margin_meters": (0, 100_000),
    "duplicate_radius_meters": (10, 5000),
    "duplicate_window_hours": (1, 24 * 90),
    "due_soon_hours": (1, 24 * 14),
    "escalation_days": (1, 60),
}


async def update_settings(session: AsyncSession, tenant_id: int, **changes: object) -> RequestSettings:
    await session.execute(
        insert(RequestSettings)
        .values(tenant_id=tenant_id)
        .on_conflict_do_nothing(index_elements=["tenant_id"])
    )
    settings = await session.get(RequestSettings, tenant_id)
    assert settings is not None
    for name, value in changes.items():
        if value is None:
            continue
        if name in SETTING_LIMITS:
            low, high = SETTING_LIMITS[name]
            if not isinstance(value, int) or not low <= value <= high:
                raise InvalidInput(f"{name} must be between {low} and {high}", field=name)
        elif name == "timezone":
            try:
                ZoneInfo(str(value))
            except (ZoneInfoNotFoundError, ValueError):
                raise InvalidInput(f"{value!r} is not a time zone", field=name) from None
        elif name == "default_department":
            if not str(value).strip():
                raise InvalidInput("name the default department", field=name)
        elif name != "open311_public":
            raise InvalidInput(f"there is no setting {name}", field=name)
        setattr(settings, name, value)
    await session.flush()
    forget(tenant_id)
    return settings


async def save_category(
    session: AsyncSession,
    tenant_id: int,
    *,
    code: str,
    name: str,
    kind: str,
    response_days: int,
    resolution_days: int,
) -> RequestCategory:
    if kind not in {"basic", "personalised"}:
        raise InvalidInput("a category is basic or personalised", field="kind")
    if not 0 <= response_days <= 60 or not 1 <= resolution_days <= 365 or resolution_days < response_days:
        raise InvalidInput("deadlines: response 0-60, resolution 1-365 working days, not before response")
    if not code.strip() or len(code) > 32 or not name.strip():
        raise InvalidInput("a category needs a code (at most 32 characters) and a name", field="code")
    await session.execute(
        insert(RequestCategory)
        .values(
            tenant_id=tenant_id,
            code=code.strip(),
            name=name.strip(),
            kind=kind,
            response_days=response_days,
            resolution_days=resolution_days,
        )
        .on_conflict_do_update(
            index_elements=["tenant_id", "code"],
            set_={
                "name": name.strip(),
                "kind": kind,
                "response_days": response_days,
                "resolution_days": resolution_days,
                "retired_at": None,
            },
        )
    )
    forget(tenant_id)
    return await repository.category_by_code(session, tenant_id, code.strip())
