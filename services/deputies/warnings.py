"""Red, yellow and blue warnings (红黄蓝三级预警) of deputies, evaluated once per deputy and week.

The conditions, over the week that starts on a Monday in the city:
- `low_activity`: fewer verified activities than `warning_min_activities` in this week and the one before;
- `low_resolution`: of the requests assigned to the deputy in the last `warning_window_days` that are
  resolved or past their resolution deadline, fewer than `warning_resolution_bar` % resolved;
- `low_satisfaction`: the mean rating of the deputy's activities in that window below `satisfaction_bar`.

The level is data (`warning_levels`): the first of red, yellow, blue whose `conditions` (how many hold
this week) or `weeks` (how many weeks in a row at least one held, this one included) is reached. The
default: blue for one condition; yellow for two, or lagging two weeks running; red for all three, or four
weeks running. Every `suspend_after_weeks` lagging weeks in a row (two, "连续两次进度滞后") suspend automatic
routing to the deputy until district staff lift it.

A week's evaluation of a deputy is one row written in the deputy's own transaction with everything it
causes (the warning opened, raised, lowered or closed; the rectification item; the notices; the
suspension), so a job killed midway has lost nothing and a re-run skips the deputies done and does the
rest. Re-running a week changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.service import append as audit
from services.deputies import repository
from services.deputies.models import Deputy, DeputyEvaluation, DeputyWarning, DutySettings
from services.deputies.service import MANAGERS, clean_text, keeps
from services.errors import InvalidInput
from services.notifications.dispatch import notify
from services.reach import not_found
from services.rectifications import service as rectifications
from services.requests.repository import settings_of
from services.unit_of_work import unit_of_work
from services.workflow.machine import IllegalTransition
from tenants.context import TenantContext
from tenants.db import Database

SYSTEM_PRINCIPAL = "system:warnings"
CONDITIONS = ("low_activity", "low_resolution", "low_satisfaction")
SEVERITY = ("red", "yellow", "blue")
LABELS = {"blue": "蓝色", "yellow": "黄色", "red": "红色"}
CONDITION_LABELS = {
    "low_activity": "连续两周履职活动不足",
    "low_resolution": "诉求办结率偏低",
    "low_satisfaction": "活动满意度偏低",
}


def week_of(day: date) -> date:
    """The Monday of the week holding `day`."""
    return day - timedelta(days=day.weekday())


def last_complete_week(now: datetime, zone: ZoneInfo) -> date:
    return week_of(now.astimezone(zone).date()) - timedelta(days=7)


def level_for(levels: Sequence[dict[str, Any]], held: int, streak: int) -> str | None:
    if held == 0:
        return None
    by_level = {entry["level"]: entry for entry in levels}
    for level in SEVERITY:
        entry = by_level.get(level)
        if entry is not None and (held >= int(entry["conditions"]) or streak >= int(entry["weeks"])):
            return level
    return None


def check_levels(levels: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The levels as the city gives them, checked: known levels, each at most once, whole numbers from 1,
    and a more severe level never easier to reach than a milder one."""
    cleaned: dict[str, dict[str, Any]] = {}
    for entry in levels:
        level, conditions, weeks = entry.get("level"), entry.get("conditions"), entry.get("weeks")
        if not isinstance(level, str) or level not in SEVERITY or level in cleaned:
            raise InvalidInput("levels are blue, yellow and red, each at most once", field="warningLevels")
        if not all(isinstance(n, int) and 1 <= n <= 52 for n in (conditions, weeks)):
            raise InvalidInput(
                "a level's conditions and weeks are whole numbers from 1 to 52", field="warningLevels"
            )
        cleaned[level] = {"level": level, "conditions": conditions, "weeks": weeks}
    ordered = [cleaned[level] for level in SEVERITY if level in cleaned]
    for severe, milder in pairwise(ordered):
        if severe["conditions"] < milder["conditions"] or severe["weeks"] < milder["weeks"]:
            raise InvalidInput(
                f"{severe['level']} must not be easier to reach than {milder['level']}", field="warningLevels"
            )
    return ordered


# The figures behind the conditions for one deputy and week, in one statement.
FIGURES = """
SELECT
  (SELECT count(*) FROM activities WHERE tenant_id = :tenant_id AND deputy_id = :deputy_id
     AND state = 'verified' AND starts_at >= :week AND starts_at < :week_end) AS this_week,
  (SELECT count(*) FROM activities WHERE tenant_id = :tenant_id AND deputy_id = :deputy_id
     AND state = 'verified' AND starts_at >= :previous AND starts_at < :week) AS last_week,
  (SELECT count(*) FILTER (WHERE state IN ('resolved', 'closed')) FROM requests
     WHERE tenant_id = :tenant_id AND assignee = :principal AND submitted_at >= :since
       AND submitted_at < :week_end AND state NOT IN ('merged', 'rejected')
       AND (state IN ('resolved', 'closed') OR resolution_due_at < :week_end)) AS resolved,
  (SELECT count(*) FROM requests
     WHERE tenant_id = :tenant_id AND assignee = :principal AND submitted_at >= :since
       AND submitted_at < :week_end AND state NOT IN ('merged', 'rejected')
       AND (state IN ('resolved', 'closed') OR resolution_due_at < :week_end)) AS due,
  (SELECT avg(r.score) FROM activity_ratings r
     JOIN activities a ON a.tenant_id = r.tenant_id AND a.id = r.activity_id
     WHERE a.tenant_id = :tenant_id AND a.deputy_id = :deputy_id
       AND a.starts_at >= :since AND a.starts_at < :week_end) AS satisfaction
"""


@dataclass(frozen=True, slots=True)
class Finding:
    conditions: list[str]
    figures: dict[str, Any]


async def _findings(
    session: AsyncSession, deputy: Deputy, settings: DutySettings, week: date, zone: ZoneInfo
) -> Finding:
    def instant(day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=zone)

    week_end = week + timedelta(days=7)
    row = (
        await session.execute(
            text(FIGURES),
            {
                "tenant_id": deputy.tenant_id,
                "deputy_id": deputy.id,
                "principal": deputy.principal or "",
                "week": instant(week),
                "week_end": instant(week_end),
                "previous": instant(week - timedelta(days=7)),
                "since": instant(week_end - timedelta(days=settings.warning_window_days)),
            },
        )
    ).one()
    rate = round(100.0 * row.resolved / row.due, 1) if row.due else None
    satisfaction = round(float(row.satisfaction), 1) if row.satisfaction is not None else None
    held = []
    if max(row.this_week, row.last_week) < settings.warning_min_activities:
        held.append("low_activity")
    if rate is not None and rate < settings.warning_resolution_bar:
        held.append("low_resolution")
    if satisfaction is not None and satisfaction < settings.satisfaction_bar:
        held.append("low_satisfaction")
    figures = {
        "activities_this_week": int(row.this_week),
        "activities_last_week": int(row.last_week),
        "requests_due": int(row.due),
        "resolution_rate": rate,
        "satisfaction": satisfaction,
    }
    return Finding(held, figures)


async def evaluate_deputy(
    session: AsyncSession, context: TenantContext, deputy_id: int, week: date, now: datetime
) -> str:
    """One deputy's week: what it came to ("done before" when it was evaluated already)."""
    tenant_id = context.tenant_id
    # The deputy's row is the lock: two runs of one week take turns, and the second finds it done.
    deputy = await session.scalar(
        select(Deputy).where(Deputy.tenant_id == tenant_id, Deputy.id == deputy_id).with_for_update()
    )
    taken = await session.scalar(
        select(DeputyEvaluation.id).where(
            DeputyEvaluation.tenant_id == tenant_id,
            DeputyEvaluation.deputy_id == deputy_id,
            DeputyEvaluation.week_start == week,
        )
    )
    if taken is not None or deputy is None:
        return "done before"
    settings = await repository.duty_settings(session, tenant_id)
    zone = ZoneInfo((await settings_of(session, tenant_id)).timezone)
    finding = await _findings(session, deputy, settings, week, zone)
    previous = await session.scalar(
        select(DeputyEvaluation.streak).where(
            DeputyEvaluation.tenant_id == tenant_id,
            DeputyEvaluation.deputy_id == deputy_id,
            DeputyEvaluation.week_start == week - timedelta(days=7),
        )
    )
    streak = (int(previous or 0) + 1) if finding.conditions else 0
    level = level_for(settings.warning_levels, len(finding.conditions), streak)
    session.add(
        DeputyEvaluation(
            tenant_id=tenant_id,
            scope=deputy.scope,
            deputy_id=deputy.id,
            owner_principal=deputy.principal,
            week_start=week,
            conditions=finding.conditions,
            figures=finding.figures,
            streak=streak,
            level=level,
        )
    )
    await session.flush()
    outcome = await _update_warning(session, context, deputy, level, finding, week)
    after = settings.suspend_after_weeks
    if streak >= after > 0 and streak % after == 0 and deputy.routing_suspended_at is None:
        deputy.routing_suspended_at = now
        await session.flush()
        await _audit(
            session, deputy, "deputy.routing_suspended", f"deputy:{deputy.id}", streak=streak, week=week
        )
        title = f"连续{streak}周履职滞后，暂停自动分派：{deputy.name}"
        await _tell(session, deputy, "deputy.routing_suspended", title, f"suspended:{week.isoformat()}")
        outcome += ", routing suspended"
    return outcome


async def _update_warning(
    session: AsyncSession,
    context: TenantContext,
    deputy: Deputy,
    level: str | None,
    finding: Finding,
    week: date,
) -> str:
    live = await session.scalar(
        select(DeputyWarning)
        .where(
            DeputyWarning.tenant_id == deputy.tenant_id,
            DeputyWarning.deputy_id == deputy.id,
            DeputyWarning.state != "closed",
        )
        .with_for_update()
    )
    reasons = "、".join(CONDITION_LABELS[c] for c in finding.conditions)
    if live is None and level is None:
        return "clear"
    if live is None:
        assert level is not None
        live = DeputyWarning(
            tenant_id=deputy.tenant_id,
            scope=deputy.scope,
            deputy_id=deputy.id,
            owner_principal=deputy.principal,
            level=level,
            conditions=finding.conditions,
            first_week=week,
            last_week=week,
        )
        session.add(live)
        await session.flush()
        await _audit(session, deputy, "warning.opened", f"warning:{live.id}", level=level, week=week)
        await rectifications.open_item(
            session,
            context,
            scope=deputy.scope,
            subject=f"warning:{live.id}",
            reason=f"{LABELS[level]}预警：{reasons}",
            deputy_id=deputy.id,
        )
        await _tell(
            session,
            deputy,
            "warning.opened",
            f"{LABELS[level]}预警：{deputy.name}",
            f"warning:{live.id}",
            reasons,
        )
        return f"opened {level}"
    if level is None:
        live.state, live.closed_at = "closed", datetime.now(UTC)
        await session.flush()
        await _audit(session, deputy, "warning.closed", f"warning:{live.id}", week=week)
        for item in await rectifications.open_items(session, deputy.tenant_id, [f"warning:{live.id}"]):
            if item.state == "open":
                note = live.rectification_note or "预警条件已消除"
                await rectifications.close(session, context, item.id, note)
        title = f"预警解除：{deputy.name}"
        await _tell(session, deputy, "warning.closed", title, f"warning:{live.id}:closed")
        return "closed"
    changed = level != live.level
    previous_level = live.level
    live.level, live.conditions, live.last_week = level, finding.conditions, week
    await session.flush()
    if not changed:
        return f"still {level}"
    await _audit(
        session, deputy, "warning.level_changed", f"warning:{live.id}", level=level, was=previous_level
    )
    title = f"预警调整为{LABELS[level]}：{deputy.name}"
    await _tell(
        session, deputy, "warning.level_changed", title, f"warning:{live.id}:{week.isoformat()}", reasons
    )
    return f"{previous_level} to {level}"


async def _audit(session: AsyncSession, deputy: Deputy, action: str, subject: str, **payload: object) -> None:
    await audit(
        session,
        tenant_id=deputy.tenant_id,
        actor=SYSTEM_PRINCIPAL,
        action=action,
        subject=subject,
        scope=deputy.scope,
        payload={
            "deputy": deputy.id,
            **{k: v.isoformat() if isinstance(v, date) else v for k, v in payload.items()},
        },
    )


async def _tell(
    session: AsyncSession, deputy: Deputy, kind: str, title: str, key: str, body: str = ""
) -> None:
    """The deputy (when they have an account) and the staff keeping their record."""
    recipients: list[str | None] = [None, deputy.principal] if deputy.principal else [None]
    for recipient in recipients:
        await notify(
            session,
            tenant_id=deputy.tenant_id,
            scope=deputy.scope,
            kind=kind,
            title=title,
            body=body,
            source=f"{key}:{kind}:{recipient or 'staff'}",
            recipient=recipient,
            payload={"deputy": deputy.id},
        )


# Deputies of the tenant (inside `scopes`) in office in the week, not yet evaluated for it.
PENDING = """
SELECT d.id FROM deputies d
WHERE d.tenant_id = :tenant_id AND d.scope <@ CAST(:scopes AS ltree[])
  AND d.created_at < :week_end AND (d.term_end IS NULL OR d.term_end >= :week)
  AND NOT EXISTS (SELECT 1 FROM deputy_evaluations e
                  WHERE e.tenant_id = d.tenant_id AND e.deputy_id = d.id AND e.week_start = :week)
ORDER BY d.id
"""


async def evaluate(
    database: Database,
    tenant_id: int,
    *,
    week: date | None = None,
    scopes: Sequence[str] | None = None,
    now: datetime | None = None,
) -> tuple[date, Counter[str]]:
    """Evaluate the week (the last complete one in the city by default) for every deputy kept inside
    `scopes` (the whole city by default) not evaluated yet, each in a transaction of its own."""
    moment = now or datetime.now(UTC)
    context = TenantContext.whole_tenant(tenant_id, SYSTEM_PRINCIPAL)
    async with unit_of_work(database, context) as session:
        zone = ZoneInfo((await settings_of(session, tenant_id)).timezone)
        week = week_of(week) if week is not None else last_complete_week(moment, zone)
        week_end = datetime.combine(week + timedelta(days=7), time.min, tzinfo=zone)
        if week_end > moment:
            raise InvalidInput("a week is evaluated once it is over", field="week")
        ids = [
            int(row[0])
            for row in await session.execute(
                text(PENDING),
                {
                    "tenant_id": tenant_id,
                    "scopes": list(scopes or context.scopes),
                    "week": week,
                    "week_end": week_end,
                },
            )
        ]
    outcomes: Counter[str] = Counter()
    for deputy_id in ids:
        async with unit_of_work(database, context) as session:
            outcome = await evaluate_deputy(session, context, deputy_id, week, moment)
        outcomes[outcome] += 1
    return week, outcomes


async def evaluate_all(
    database: Database, week: date | None = None, now: datetime | None = None
) -> Counter[str]:
    """The beat job: every city, its last complete week (or `week`)."""
    outcomes: Counter[str] = Counter()
    for code in await database.tenant_codes():
        tenant_id = await database.tenant_id_for(code)
        if tenant_id is not None:
            outcomes.update((await evaluate(database, tenant_id, week=week, now=now))[1])
    return outcomes


# --- the deputy's and the staff's steps on a warning ---------------------------------------------------


async def warning(session: AsyncSession, tenant_id: int, warning_id: int) -> DeputyWarning | None:
    return await session.scalar(
        select(DeputyWarning).where(DeputyWarning.tenant_id == tenant_id, DeputyWarning.id == warning_id)
    )


async def _actionable(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], warning_id: int
) -> DeputyWarning:
    row = await warning(session, actor.tenant_id, warning_id)
    if row is None or not (
        row.owner_principal == actor.principal or (kinds & MANAGERS and keeps(actor, row.scope))
    ):
        raise not_found("warning")
    if row.state == "closed":
        raise IllegalTransition("the warning is closed")
    return row


async def acknowledge(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], warning_id: int
) -> DeputyWarning:
    """The deputy (or staff keeping the record) says the warning was seen; once."""
    row = await _actionable(session, actor, kinds, warning_id)
    if row.state == "acknowledged":
        return row
    row.state, row.acknowledged_by, row.acknowledged_at = "acknowledged", actor.principal, func.now()
    await session.flush()
    await session.refresh(row)
    await _audit_step(session, actor, row, "warning.acknowledged")
    return row


async def note_rectification(
    session: AsyncSession, actor: TenantContext, kinds: frozenset[str], warning_id: int, note: str
) -> DeputyWarning:
    """What the deputy does to put it right (整改说明); a later note replaces it, each one audited."""
    row = await _actionable(session, actor, kinds, warning_id)
    cleaned = clean_text(note, 4000, "note", required=True)
    row.rectification_note, row.noted_by, row.noted_at = cleaned, actor.principal, func.now()
    await session.flush()
    await session.refresh(row)
    await _audit_step(session, actor, row, "warning.rectification_noted", note=cleaned)
    return row


async def _audit_step(
    session: AsyncSession, actor: TenantContext, row: DeputyWarning, action: str, **payload: object
) -> None:
    await audit(
        session,
        tenant_id=row.tenant_id,
        actor=actor.principal,
        action=action,
        subject=f"warning:{row.id}",
        scope=row.scope,
        payload={"deputy": row.deputy_id, **payload},
    )


async def listing(
    session: AsyncSession,
    tenant_id: int,
    scope: str,
    *,
    live_only: bool,
    deputy_id: int | None,
    after: int | None,
    limit: int,
) -> tuple[list[DeputyWarning], int]:
    """Warnings of deputies kept inside `scope`, newest first, and how many there are."""
    query = select(DeputyWarning).where(DeputyWarning.tenant_id == tenant_id)
    query = query.where(text("deputy_warnings.scope <@ text2ltree(:scope)").bindparams(scope=scope))
    if live_only:
        query = query.where(DeputyWarning.state != "closed")
    if deputy_id is not None:
        query = query.where(DeputyWarning.deputy_id == deputy_id)
    total = int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    if after is not None:
        query = query.where(DeputyWarning.id < after)
    rows = list(await session.scalars(query.order_by(DeputyWarning.id.desc()).limit(limit)))
    return rows, total


async def history(session: AsyncSession, tenant_id: int, deputy_ids: Sequence[int]) -> list[DeputyEvaluation]:
    if not deputy_ids:
        return []
    rows = await session.scalars(
        select(DeputyEvaluation)
        .where(DeputyEvaluation.tenant_id == tenant_id, DeputyEvaluation.deputy_id.in_(deputy_ids))
        .order_by(DeputyEvaluation.deputy_id, DeputyEvaluation.week_start.desc())
    )
    return list(rows)
