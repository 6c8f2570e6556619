"""The points ledger over GraphQL: the city's rules, a deputy's entries and balance, corrections, and the
leaderboard of a territory."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import Enum
from typing import Annotated

import strawberry
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession

from schema.context import Info
from schema.deputies.activities import STAFF_ONLY, _reads_activities
from schema.deputies.queries import territory_of
from schema.deputies.types import Deputy, deputy_key, deputy_of
from schema.errors import (
    STEP_ERRORS,
)
from schema.mutations import parse_id, run_service
from schema.permissions import SIGNED_IN, RequireRoles, RequireWholeCity
from schema.relay import Connection, Node, connection, encode_id, id_page
from services.deputies import archive, repository
from services.deputies import points as ledger
from services.deputies.models import PointEntry as PointEntryRow
from tenants.context import TenantContext
from tenants.roles import Role

# What earned an entry, as a node the API can fetch.
SOURCE_TYPES = {"activity": "Activity", "request": "Request", "match": "Match", "point_entry": "PointEntry"}


@strawberry.enum
class LeaderboardPeriod(Enum):
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


@strawberry.type(
    description="One entry of the points ledger (履职积分); corrections are entries of their own."
)
class PointEntry(Node):
    deputy_id: strawberry.ID
    event: str
    points: int
    source_kind: str
    source_id: strawberry.ID
    rule_effective_from: date | None
    corrects_id: strawberry.ID | None
    reason: str | None
    earned_at: datetime
    created_by: str


def entry_of(row: PointEntryRow, rule_days: dict[int, date] | None = None) -> PointEntry:
    return PointEntry(
        id=encode_id("PointEntry", row.id),
        deputy_id=encode_id("Deputy", row.deputy_id),
        event=row.event,
        points=row.points,
        source_kind=row.source_kind,
        source_id=encode_id(SOURCE_TYPES.get(row.source_kind, row.source_kind), row.source_id),
        rule_effective_from=(rule_days or {}).get(row.rule_id) if row.rule_id is not None else None,
        corrects_id=encode_id("PointEntry", row.corrects_id) if row.corrects_id is not None else None,
        reason=row.reason,
        earned_at=row.earned_at,
        created_by=row.created_by,
    )


@strawberry.type(
    description="What an event earns; `effectiveFrom` null is the default, in effect until the city "
    "saves its own."
)
class PointRule:
    event: str
    points: int
    effective_from: date | None
    description: str


def rule_of(rule: ledger.Rule) -> PointRule:
    return PointRule(
        event=rule.event, points=rule.points, effective_from=rule.effective_from, description=rule.description
    )


@strawberry.type
class PointRules:
    as_of: date
    rules: list[PointRule]
    scheduled: list[PointRule] = strawberry.field(description="Rules saved to take effect after `asOf`.")


@strawberry.type
class DeputyPoints:
    balance: int
    entries: Connection[PointEntry]


@strawberry.type(description="A deputy's place on the leaderboard; equal points share a rank.")
class Standing:
    rank: int
    points: int
    entries: int
    deputy: Deputy | None = strawberry.field(description="Null when the record lies outside your sight.")


@strawberry.type
class Leaderboard:
    period: LeaderboardPeriod
    period_start: date
    period_end: date
    standings: Connection[Standing]


@strawberry.type
class PointRulePayload:
    rule: PointRule


@strawberry.type
class PointEntryPayload:
    entry: PointEntry


_Errors = STEP_ERRORS
PointRuleResult = Annotated[PointRulePayload | _Errors, strawberry.union("PointRuleResult")]
PointEntryResult = Annotated[PointEntryPayload | _Errors, strawberry.union("PointEntryResult")]


def _readers_only(info: Info) -> None:
    if not _reads_activities(info):
        raise GraphQLError("residents do not read the points ledger", extensions={"code": "FORBIDDEN"})


@strawberry.type
class PointsQuery:
    @strawberry.field(permission_classes=SIGNED_IN, description="The city's point rules in effect on a day.")
    async def point_rules(self, info: Info, as_of: date | None = None) -> PointRules:
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            day = as_of or datetime.now(await ledger.city_zone(session, tenant_id)).date()
            found = await ledger.rules_on(session, tenant_id, day)
            later = await ledger.scheduled(session, tenant_id, day)
        return PointRules(
            as_of=day, rules=[rule_of(r) for r in found.values()], scheduled=[rule_of(r) for r in later]
        )

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="A deputy's balance and entries, newest first (a deputy reads their own; staff "
        "their territory's).",
    )
    async def deputy_points(
        self, info: Info, deputy_id: strawberry.ID, first: int = 50, after: str | None = None
    ) -> DeputyPoints:
        _readers_only(info)
        size, after_id = id_page(first, after)
        key = deputy_key(deputy_id)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            rows = await ledger.entries_of(session, tenant_id, key, after=after_id, limit=size + 1)
            total, balance = await ledger.totals_of(session, tenant_id, key)
            days = await ledger.rule_days(
                session, tenant_id, [r.rule_id for r in rows if r.rule_id is not None]
            )
        return DeputyPoints(
            balance=balance,
            entries=connection(
                rows[:size],
                lambda row: entry_of(row, days),
                total=total,
                has_next=len(rows) > size,
                has_previous=after_id is not None,
                cursor_of=lambda row: str(row.id),
            ),
        )

    @strawberry.field(
        permission_classes=SIGNED_IN,
        description="The deputies of a territory (your whole scope when omitted) ranked by the points earned "
        "in it in the month, quarter or year holding `asOf` (today by default).",
    )
    async def points_leaderboard(
        self,
        info: Info,
        period: LeaderboardPeriod = LeaderboardPeriod.MONTH,
        node_id: strawberry.ID | None = None,
        as_of: date | None = None,
        first: int = 50,
        after: str | None = None,
    ) -> Leaderboard:
        _readers_only(info)
        size, offset = id_page(first, after)
        scope = await territory_of(info, node_id)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            board = await ledger.leaderboard(
                session, tenant_id, scope, period.value, as_of, offset=offset or 0, limit=size + 1
            )
            deputies = await repository.by_ids(session, tenant_id, [s.deputy_id for s in board.standings])
        start = offset or 0
        numbered = list(enumerate(board.standings[:size], start=start + 1))
        return Leaderboard(
            period=period,
            period_start=board.period_start,
            period_end=board.period_end,
            standings=connection(
                numbered,
                lambda pair: Standing(
                    rank=pair[1].rank,
                    points=pair[1].points,
                    entries=pair[1].entries,
                    deputy=deputy_of(deputies[pair[1].deputy_id]) if pair[1].deputy_id in deputies else None,
                ),
                total=board.total,
                has_next=len(board.standings) > size,
                has_previous=start > 0,
                cursor_of=lambda pair: str(pair[0]),
            ),
        )


@strawberry.type(description="One line of a deputy's archive.")
class ArchiveLine:
    section: str
    id: strawberry.ID
    at: datetime
    kind: str
    state: str | None
    title: str
    points: int | None
    detail: str


ARCHIVE_TYPES = {**SOURCE_TYPES, "points": "PointEntry", "meeting": "Meeting", "warning": "DeputyWarning"}


@strawberry.type(
    description="A deputy's archive (履职档案): activities, matches, requests, meetings, points "
    "and warnings, oldest first, as far as you may see them."
)
class DeputyArchive:
    deputy: Deputy
    lines: list[ArchiveLine]
    rows: strawberry.Private[list[archive.ArchiveRow]]

    @strawberry.field(description="The same as CSV (UTF-8 with a BOM, a Chinese and an English header).")
    def csv(self) -> str:
        return archive.to_csv(self.rows)


@strawberry.type
class ArchiveQuery:
    @strawberry.field(
        permission_classes=SIGNED_IN, description="A deputy's archive; null if you may not see them."
    )
    async def deputy_archive(self, info: Info, deputy_id: strawberry.ID) -> DeputyArchive | None:
        _readers_only(info)
        key = deputy_key(deputy_id)
        tenant_id = info.context.require_principal().tenant_id
        async with info.context.db() as session:
            deputy = await repository.get(session, tenant_id, key)
            found = await archive.rows_of(session, deputy) if deputy is not None else []
        if deputy is None:
            return None
        lines = [
            ArchiveLine(
                section=r.section,
                id=encode_id(ARCHIVE_TYPES[r.section], r.id),
                at=r.at,
                kind=r.kind,
                state=r.state,
                title=r.title,
                points=r.points,
                detail=r.detail,
            )
            for r in found
        ]
        return DeputyArchive(deputy=deputy_of(deputy), lines=lines, rows=found)


@strawberry.type
class PointsMutation:
    @strawberry.mutation(
        extensions=[RequireRoles(Role.CITY_ADMIN), RequireWholeCity()],
        description="Save what an event earns from a day on (today by default; never a past day).",
    )
    async def save_point_rule(
        self, info: Info, event: str, points: int, effective_from: date | None = None
    ) -> PointRuleResult:
        async def work(session: AsyncSession, actor: TenantContext) -> PointRulePayload:
            rule = await ledger.save_rule(session, actor, event, points, effective_from)
            return PointRulePayload(rule=rule_of(rule))

        return await run_service(info, work)  # type: ignore[return-value]

    @strawberry.mutation(
        extensions=STAFF_ONLY,
        description="Correct an entry with a new one of `points` (negative takes points back) and the "
        "reason.",
    )
    async def correct_points(
        self, info: Info, entry_id: strawberry.ID, points: int, reason: str
    ) -> PointEntryResult:
        kinds = frozenset(role.value for role in info.context.require_principal().roles)

        async def work(session: AsyncSession, actor: TenantContext) -> PointEntryPayload:
            key = parse_id(entry_id, "entryId", "PointEntry")[1]
            row = await ledger.correct(session, actor, kinds, key, points, reason, datetime.now(UTC))
            return PointEntryPayload(entry=entry_of(row))

        return await run_service(info, work)  # type: ignore[return-value]
