"""The success rates of mediation: per level and per station, of the levels started in a window, counted
in SQL under row-level security."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import InvalidInput
from services.mediation import repository


@dataclass(frozen=True, slots=True)
class LevelStats:
    level: int
    started: int
    concluded: int
    agreements: int
    failed: int
    timeouts: int

    @property
    def success_rate(self) -> float | None:
        return self.agreements / self.concluded if self.concluded else None


@dataclass(frozen=True, slots=True)
class ScopeStats:
    scope: str
    name: str | None
    levels: list[LevelStats] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Stats:
    by_level: list[LevelStats]
    by_scope: list[ScopeStats]


def _level_stats(row: Any) -> LevelStats:
    return LevelStats(
        level=int(row.level),
        started=int(row.started),
        concluded=int(row.concluded),
        agreements=int(row.agreements),
        failed=int(row.failed),
        timeouts=int(row.timeouts),
    )


async def stats(session: AsyncSession, tenant_id: int, scope: str, start: datetime, end: datetime) -> Stats:
    """Success rates of the levels started in [start, end) inside `scope`: per level, and per station and
    level (agreements over concluded levels; a level still running counts as started only)."""
    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise InvalidInput("from and to need time zones, and from must come before to", field="from")
    by_level = [
        _level_stats(row) for row in await repository.outcomes_by_level(session, tenant_id, scope, start, end)
    ]
    by_scope: dict[str, ScopeStats] = {}
    for row in await repository.outcomes_by_scope(session, tenant_id, scope, start, end):
        entry = by_scope.setdefault(row.scope, ScopeStats(row.scope, row.name))
        entry.levels.append(_level_stats(row))
    return Stats(by_level, list(by_scope.values()))
