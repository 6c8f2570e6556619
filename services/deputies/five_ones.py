"""The "five ones" (五个一): per deputy and period, at least one visit a month, one policy talk a quarter, one
research every half year, one problem solved and one duty report a year. The numbers are the city's data
(`five_ones_rules`; these defaults until the city saves its own). Compliance as of a date counts verified
activities only, in the period (in the city's time zone) holding that date, up to the end of that day."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.service import append as audit
from services.deputies.models import ACTIVITY_KINDS, FiveOnesRule
from services.errors import InvalidInput
from services.requests.repository import settings_of
from tenants.context import TenantContext, city_scope

PERIODS = {"month": 1, "quarter": 3, "half": 6, "year": 12}
DEFAULT_RULES = (
    ("visit", "month", 1),
    ("policy_talk", "quarter", 1),
    ("research", "half", 1),
    ("problem_solved", "year", 1),
    ("duty_report", "year", 1),
)


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str
    period: str
    required: int


async def rules(session: AsyncSession, tenant_id: int) -> list[Rule]:
    found = list(await session.scalars(select(FiveOnesRule).where(FiveOnesRule.tenant_id == tenant_id)))
    if not found:
        return [Rule(*row) for row in DEFAULT_RULES]
    return [Rule(r.kind, r.period, r.required) for r in sorted(found, key=lambda r: r.kind) if r.required > 0]


async def save_rule(
    session: AsyncSession, actor: TenantContext, kind: str, period: str, required: int
) -> list[Rule]:
    """Set one rule of the city (0 drops it); the city's rules start from the defaults."""
    if kind not in ACTIVITY_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(ACTIVITY_KINDS)}", field="kind")
    if period not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)}", field="period")
    if not 0 <= required <= 100:
        raise InvalidInput("required must be between 0 and 100", field="required")
    current = await rules(session, actor.tenant_id)
    stored = await session.scalar(
        select(FiveOnesRule.kind).where(FiveOnesRule.tenant_id == actor.tenant_id).limit(1)
    )
    if stored is None:  # the first change writes the defaults down, so they stay the city's own
        for rule in current:
            session.add(
                FiveOnesRule(
                    tenant_id=actor.tenant_id, kind=rule.kind, period=rule.period, required=rule.required
                )
            )
        await session.flush()
    await session.execute(
        insert(FiveOnesRule)
        .values(tenant_id=actor.tenant_id, kind=kind, period=period, required=required)
        .on_conflict_do_update(
            index_elements=["tenant_id", "kind"], set_={"period": period, "required": required}
        )
    )
    await audit(
        session,
        tenant_id=actor.tenant_id,
        actor=actor.principal,
        action="five_ones.rule_saved",
        subject=f"five_ones:{kind}",
        scope=city_scope(actor.tenant_id),
        payload={"kind": kind, "period": period, "required": required},
    )
    return await rules(session, actor.tenant_id)


def period_of(day: date, period: str) -> tuple[date, date]:
    """The first day of the period holding `day`, and the first day after it."""
    months = PERIODS[period]
    first_month = (day.month - 1) // months * months + 1
    start = date(day.year, first_month, 1)
    end_month = first_month + months
    end = date(day.year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1)
    return start, end


@dataclass(frozen=True, slots=True)
class Owed:
    kind: str
    period: str
    required: int
    done: int
    period_start: date
    due: date  # the last day of the period

    @property
    def missing(self) -> int:
        return max(0, self.required - self.done)


@dataclass(frozen=True, slots=True)
class Compliance:
    deputy_id: int
    owed: list[Owed]

    @property
    def compliant(self) -> bool:
        return all(o.missing == 0 for o in self.owed)


# Verified activities of each deputy kept inside the scope, by kind, each kind from its period's start
# up to `until`, counted in the database.
COUNTS = """
SELECT a.deputy_id, a.kind, count(*)
FROM deputies d
JOIN activities a ON a.tenant_id = d.tenant_id AND a.deputy_id = d.id
JOIN unnest(CAST(:kinds AS text[]), CAST(:since AS timestamptz[])) AS r(kind, since)
  ON r.kind = a.kind AND a.starts_at >= r.since
WHERE d.tenant_id = :tenant_id AND d.scope <@ text2ltree(:scope)
  AND a.state = 'verified' AND a.starts_at < :until
GROUP BY a.deputy_id, a.kind
"""
DEPUTIES = "SELECT id FROM deputies WHERE tenant_id = :tenant_id AND scope <@ text2ltree(:scope) ORDER BY id"


async def compliance(
    session: AsyncSession,
    tenant_id: int,
    scope: str,
    as_of: date | None,
    deputy_ids: Sequence[int] | None = None,
) -> tuple[date, list[Compliance]]:
    """The day (today in the city when not given), and each deputy kept inside `scope` (or those of
    `deputy_ids`) with what each rule still wants."""
    zone = ZoneInfo((await settings_of(session, tenant_id)).timezone)
    as_of = as_of or datetime.now(zone).date()
    found = await rules(session, tenant_id)
    if not found:
        return as_of, []
    windows = {r.kind: period_of(as_of, r.period) for r in found}

    def instant(day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=zone)

    until = instant(as_of + timedelta(days=1))
    params = {"tenant_id": tenant_id, "scope": scope}
    ids = [int(r[0]) for r in await session.execute(text(DEPUTIES), params)]
    if deputy_ids is not None:
        wanted = set(deputy_ids)
        ids = [key for key in ids if key in wanted]
    kinds = [r.kind for r in found]
    rows = await session.execute(
        text(COUNTS),
        {**params, "kinds": kinds, "since": [instant(windows[k][0]) for k in kinds], "until": until},
    )
    done = {(int(deputy_id), kind): int(count) for deputy_id, kind, count in rows}
    return as_of, [
        Compliance(
            key,
            [
                Owed(
                    r.kind,
                    r.period,
                    r.required,
                    done.get((key, r.kind), 0),
                    windows[r.kind][0],
                    windows[r.kind][1] - timedelta(days=1),
                )
                for r in found
            ],
        )
        for key in ids
    ]
