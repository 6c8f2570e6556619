"""The points ledger (履职积分).

Events earn points by the city's rules: a verified activity by its kind, a rejected verification, a
request of the deputy's closed with the submitter satisfied, one of theirs gone overdue, a double-list
project of theirs closed. A rule holds from its `effective_from` day (in the city) on; an event without a
rule of the city's earns the default below. An entry records the points and the rule it was counted by
when it is written, so a later rule never changes an old entry. Entries are only ever added (the app role
may not update or delete them); a correction is a new entry pointing to the one it corrects. Every entry
is audited. The leaderboard ranks the deputies of a territory by the points earned inside it in a month,
quarter or year; equal totals share a rank (1, 1, 3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.service import append as audit
from services.deputies import repository
from services.deputies.five_ones import period_of
from services.deputies.models import ACTIVITY_KINDS, PointEntry, PointRule
from services.deputies.service import MANAGERS, clean_text, keeps
from services.errors import Conflict, InvalidInput
from services.reach import not_found
from services.requests.repository import settings_of
from services.workflow.machine import NotAllowed
from tenants.context import TenantContext, city_scope

ACTIVITY_POINTS = {
    "visit": 2,
    "reception": 3,
    "policy_talk": 3,
    "research": 5,
    "problem_solved": 5,
    "duty_report": 5,
    "meeting": 1,
    "deliberation": 2,
    "mediation": 3,
}
# Every event the code awards, its default points and what it means.
EVENTS: dict[str, tuple[int, str]] = {
    **{
        f"activity.{kind}": (ACTIVITY_POINTS[kind], f"a verified {kind.replace('_', ' ')}")
        for kind in ACTIVITY_KINDS
    },
    "activity.rejected": (-2, "an activity report rejected on verification"),
    "request.satisfied": (3, "a request assigned to the deputy closed with the submitter satisfied"),
    "request.overdue": (-2, "a request assigned to the deputy escalated for a missed deadline"),
    "match.closed": (3, "a double-list project of the deputy's resource closed"),
}
CORRECTION = "correction"
LEADERBOARD_PERIODS = ("month", "quarter", "year")
MAX_POINTS = 100


@dataclass(frozen=True, slots=True)
class Rule:
    event: str
    points: int
    effective_from: date | None  # None: the default, in effect since always
    rule_id: int | None
    description: str


async def city_zone(session: AsyncSession, tenant_id: int) -> ZoneInfo:
    return ZoneInfo((await settings_of(session, tenant_id)).timezone)


RULES_ON = """
SELECT DISTINCT ON (event) id, event, points, effective_from
FROM point_rules WHERE tenant_id = :tenant_id AND effective_from <= :day
ORDER BY event, effective_from DESC
"""


async def rules_on(session: AsyncSession, tenant_id: int, day: date) -> dict[str, Rule]:
    """The rule of every event in effect on `day`."""
    found = {event: Rule(event, points, None, None, about) for event, (points, about) in EVENTS.items()}
    rows = await session.execute(text(RULES_ON), {"tenant_id": tenant_id, "day": day})
    for rule_id, event, points, effective_from in rows:
        if event in found:
            found[event] = Rule(event, int(points), effective_from, int(rule_id), EVENTS[event][1])
    return found


async def scheduled(session: AsyncSession, tenant_id: int, after: date) -> list[Rule]:
    """Rules the city saved that take effect after `after`."""
    rows = await session.scalars(
        select(PointRule)
        .where(PointRule.tenant_id == tenant_id, PointRule.effective_from > after)
        .order_by(PointRule.effective_from, PointRule.event)
    )
    return [
        Rule(r.event, r.points, r.effective_from, r.id, EVENTS[r.event][1]) for r in rows if r.event in EVENTS
    ]


async def save_rule(
    session: AsyncSession, actor: TenantContext, event: str, points: int, effective_from: date | None
) -> Rule:
    """A rule of the city from `effective_from` (today in the city by default; never a past day, so the
    points already earned keep the rule they were counted by)."""
    if event not in EVENTS:
        raise InvalidInput(f"event must be one of {', '.join(EVENTS)}", field="event")
    if not -MAX_POINTS <= points <= MAX_POINTS:
        raise InvalidInput(f"points must be between -{MAX_POINTS} and {MAX_POINTS}", field="points")
    today = datetime.now(await city_zone(session, actor.tenant_id)).date()
    day = effective_from or today
    if day < today:
        raise InvalidInput(
            "a rule cannot take effect on a past day: points earned keep their rule", field="effectiveFrom"
        )
    existing = await session.scalar(
        select(PointRule).where(
            PointRule.tenant_id == actor.tenant_id, PointRule.event == event, PointRule.effective_from == day
        )
    )
    if existing is not None:
        used = await session.scalar(
            select(exists().where(PointEntry.tenant_id == actor.tenant_id, PointEntry.rule_id == existing.id))
        )
        if used:
            raise Conflict(
                "points were counted by this day's rule already: save one from a later day",
                field="effectiveFrom",
            )
        existing.points = points
        row = existing
    else:
        row = PointRule(
            tenant_id=actor.tenant_id,
            event=event,
            points=points,
            effective_from=day,
            created_by=actor.principal,
        )
        session.add(row)
    await session.flush()
    await audit(
        session,
        tenant_id=actor.tenant_id,
        actor=actor.principal,
        action="points.rule_saved",
        subject=f"point_rule:{row.id}",
        scope=city_scope(actor.tenant_id),
        payload={"event": event, "points": points, "effective_from": day.isoformat()},
    )
    return Rule(event, points, day, row.id, EVENTS[event][1])


@dataclass(frozen=True, slots=True)
class Earning:
    """What earned points: the event, the deputy, where it lies and what it was."""

    deputy_id: int
    owner_principal: str | None
    scope: str
    event: str
    source_kind: str
    source_id: int
    at: datetime


async def award(session: AsyncSession, actor: str, tenant_id: int, earning: Earning) -> PointEntry | None:
    """Write the entry `earning` is worth under the rule in effect on its day; nothing when the rule
    gives no points or the same thing earned it before (so a retried step awards once)."""
    day = earning.at.astimezone(await city_zone(session, tenant_id)).date()
    rule = (await rules_on(session, tenant_id, day))[earning.event]
    if rule.points == 0:
        return None
    entry = await session.scalar(
        insert(PointEntry)
        .values(
            tenant_id=tenant_id,
            scope=earning.scope,
            deputy_id=earning.deputy_id,
            owner_principal=earning.owner_principal,
            event=earning.event,
            points=rule.points,
            source_kind=earning.source_kind,
            source_id=earning.source_id,
            rule_id=rule.rule_id,
            earned_at=earning.at,
            created_by=actor,
        )
        .on_conflict_do_nothing(
            index_elements=["tenant_id", "deputy_id", "event", "source_kind", "source_id"],
            index_where=text("corrects_id IS NULL"),
        )
        .returning(PointEntry)
    )
    if entry is not None:
        await _audit_entry(session, actor, entry)
    return entry


async def award_principal(
    session: AsyncSession, actor: str, tenant_id: int, principal: str | None, earning: Earning
) -> PointEntry | None:
    """Award the deputy whose account is `principal` (a request's assignee, a resource's owner), if that
    account belongs to a deputy record the transaction can see; otherwise nothing."""
    if principal is None:
        return None
    deputy = await repository.by_principal(session, tenant_id, principal)
    if deputy is None:
        return None
    found = Earning(
        deputy.id, principal, earning.scope, earning.event, earning.source_kind, earning.source_id, earning.at
    )
    return await award(session, actor, tenant_id, found)


async def _audit_entry(session: AsyncSession, actor: str, entry: PointEntry) -> None:
    await audit(
        session,
        tenant_id=entry.tenant_id,
        actor=actor,
        action="points.corrected" if entry.corrects_id is not None else "points.awarded",
        subject=f"point_entry:{entry.id}",
        scope=entry.scope,
        payload={
            "deputy": entry.deputy_id,
            "event": entry.event,
            "points": entry.points,
            "source": f"{entry.source_kind}:{entry.source_id}",
            "rule": entry.rule_id,
            "reason": entry.reason,
        },
    )


async def correct(
    session: AsyncSession,
    actor: TenantContext,
    kinds: frozenset[str],
    entry_id: int,
    points: int,
    reason: str,
    now: datetime,
) -> PointEntry:
    """Staff of the entry's territory correct it with a new entry of `points` (a negative number takes
    points back) and the reason; the entry corrected stays as it was."""
    if not kinds & MANAGERS:
        raise NotAllowed("only staff of the entry's territory correct points")
    original = await session.scalar(
        select(PointEntry).where(PointEntry.tenant_id == actor.tenant_id, PointEntry.id == entry_id)
    )
    if original is None or not keeps(actor, original.scope):
        raise not_found("point entry")
    if points == 0 or not -MAX_POINTS <= points <= MAX_POINTS:
        raise InvalidInput(
            f"points must be between -{MAX_POINTS} and {MAX_POINTS}, and not 0", field="points"
        )
    cleaned = clean_text(reason, 2000, "reason", required=True)
    entry = PointEntry(
        tenant_id=actor.tenant_id,
        scope=original.scope,
        deputy_id=original.deputy_id,
        owner_principal=original.owner_principal,
        event=CORRECTION,
        points=points,
        source_kind="point_entry",
        source_id=original.id,
        corrects_id=original.id,
        reason=cleaned,
        earned_at=now,
        created_by=actor.principal,
    )
    session.add(entry)
    await session.flush()
    await _audit_entry(session, actor.principal, entry)
    return entry


async def entries_of(
    session: AsyncSession, tenant_id: int, deputy_id: int, *, after: int | None, limit: int
) -> Sequence[PointEntry]:
    """A deputy's entries the caller may see, newest first (keyset on the id)."""
    query = select(PointEntry).where(PointEntry.tenant_id == tenant_id, PointEntry.deputy_id == deputy_id)
    if after is not None:
        query = query.where(PointEntry.id < after)
    return list(await session.scalars(query.order_by(PointEntry.id.desc()).limit(limit)))


async def rule_days(session: AsyncSession, tenant_id: int, rule_ids: Sequence[int]) -> dict[int, date]:
    """The day each rule took effect from, by id."""
    if not rule_ids:
        return {}
    rows = await session.execute(
        select(PointRule.id, PointRule.effective_from).where(
            PointRule.tenant_id == tenant_id, PointRule.id.in_(set(rule_ids))
        )
    )
    return {int(key): day for key, day in rows}


async def totals_of(session: AsyncSession, tenant_id: int, deputy_id: int) -> tuple[int, int]:
    """How many entries of the deputy the caller sees, and their sum (the balance)."""
    count, total = (
        await session.execute(
            text(
                "SELECT count(*), coalesce(sum(points), 0) FROM point_entries "
                "WHERE tenant_id = :t AND deputy_id = :d"
            ),
            {"t": tenant_id, "d": deputy_id},
        )
    ).one()
    return int(count), int(total)


@dataclass(frozen=True, slots=True)
class Standing:
    deputy_id: int
    rank: int
    points: int
    entries: int


# The deputies of a territory (kept in it, linked to a station in it, or holding entries earned in it) by
# the points earned in it in the window; equal totals share a rank.
LEADERBOARD = """
WITH totals AS (
  SELECT deputy_id, sum(points) AS points, count(*) AS entries
  FROM point_entries
  WHERE tenant_id = :tenant_id AND scope <@ text2ltree(:scope)
    AND earned_at >= :since AND earned_at < :until
  GROUP BY deputy_id
), members AS (
  SELECT id AS deputy_id FROM deputies WHERE tenant_id = :tenant_id AND scope <@ text2ltree(:scope)
  UNION
  SELECT deputy_id FROM deputy_stations WHERE tenant_id = :tenant_id AND scope <@ text2ltree(:scope)
  UNION
  SELECT deputy_id FROM totals
), ranked AS (
  SELECT m.deputy_id, coalesce(t.points, 0) AS points, coalesce(t.entries, 0) AS entries,
         rank() OVER (ORDER BY coalesce(t.points, 0) DESC) AS rank,
         count(*) OVER () AS total
  FROM members m LEFT JOIN totals t USING (deputy_id)
)
SELECT deputy_id, rank, points, entries, total FROM ranked
ORDER BY rank, deputy_id
LIMIT :limit OFFSET :offset
"""


@dataclass(frozen=True, slots=True)
class Leaderboard:
    period: str
    period_start: date
    period_end: date  # the last day
    total: int
    standings: list[Standing]


async def leaderboard(
    session: AsyncSession,
    tenant_id: int,
    scope: str,
    period: str,
    as_of: date | None,
    *,
    offset: int = 0,
    limit: int = 50,
) -> Leaderboard:
    if period not in LEADERBOARD_PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(LEADERBOARD_PERIODS)}", field="period")
    zone = await city_zone(session, tenant_id)
    day = as_of or datetime.now(zone).date()
    start, end = period_of(day, period)
    rows = (
        await session.execute(
            text(LEADERBOARD),
            {
                "tenant_id": tenant_id,
                "scope": scope,
                "since": datetime.combine(start, time.min, tzinfo=zone),
                "until": datetime.combine(end, time.min, tzinfo=zone),
                "limit": limit,
                "offset": offset,
            },
        )
    ).all()
    total = int(rows[0].total) if rows else 0
    if not rows and offset > 0:  # past the last page: the count still says how many there are
        total = (await leaderboard(session, tenant_id, scope, period, day, offset=0, limit=1)).total
    return Leaderboard(
        period,
        start,
        date.fromordinal(end.toordinal() - 1),
        total,
        [Standing(int(r.deputy_id), int(r.rank), int(r.points), int(r.entries)) for r in rows],
    )
