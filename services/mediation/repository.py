"""All SQL of the mediation domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.mediation.models import MediationCase, MediationLevel, MediationParty, MediationSession
from services.requests.models import Request, RequestSettings
from services.workflow.repository import Instances
from tenants.models import Station

_CASES = Instances(MediationCase, newest_by=MediationCase.opened_at)
get = _CASES.get
listing = _CASES.listing


async def current_level(
    session: AsyncSession, tenant_id: int, case_id: int, level: int
) -> MediationLevel | None:
    found: MediationLevel | None = await session.scalar(
        select(MediationLevel)
        .where(
            MediationLevel.tenant_id == tenant_id,
            MediationLevel.case_id == case_id,
            MediationLevel.level == level,
        )
        .with_for_update()
    )
    return found


Child = TypeVar("Child", MediationLevel, MediationParty, MediationSession)


async def _of_cases(
    session: AsyncSession, model: type[Child], tenant_id: int, case_ids: Sequence[int], *order: Any
) -> list[Child]:
    rows = await session.scalars(
        select(model)
        .where(model.tenant_id == tenant_id, model.case_id.in_(list(case_ids)))
        .order_by(model.case_id, *order)
    )
    return list(rows.all())


async def levels(session: AsyncSession, tenant_id: int, case_ids: Sequence[int]) -> list[MediationLevel]:
    return await _of_cases(session, MediationLevel, tenant_id, case_ids, MediationLevel.level)


async def parties(session: AsyncSession, tenant_id: int, case_ids: Sequence[int]) -> list[MediationParty]:
    return await _of_cases(session, MediationParty, tenant_id, case_ids, MediationParty.id)


async def sessions(session: AsyncSession, tenant_id: int, case_ids: Sequence[int]) -> list[MediationSession]:
    order = (MediationSession.held_on, MediationSession.id)
    return await _of_cases(session, MediationSession, tenant_id, case_ids, *order)


async def request_exists(session: AsyncSession, tenant_id: int, request_id: int) -> bool:
    found = await session.scalar(
        select(Request.id).where(Request.tenant_id == tenant_id, Request.id == request_id)
    )
    return found is not None


async def settings_of(session: AsyncSession, tenant_id: int) -> tuple[str, str]:
    """The tenant's time zone and default department (the request settings), or their defaults."""
    row = (
        await session.execute(
            select(RequestSettings.timezone, RequestSettings.default_department).where(
                RequestSettings.tenant_id == tenant_id
            )
        )
    ).first()
    return (row[0], row[1]) if row is not None else ("Asia/Shanghai", "区职能部门")


def _outcome_counts() -> list[Any]:
    return [
        func.count().label("started"),
        func.count().filter(MediationLevel.outcome.is_not(None)).label("concluded"),
        func.count().filter(MediationLevel.outcome == "agreement").label("agreements"),
        func.count().filter(MediationLevel.outcome == "failed").label("failed"),
        func.count().filter(MediationLevel.outcome == "timeout").label("timeouts"),
    ]


def _window(tenant_id: int, scope: str, start: datetime, end: datetime) -> list[Any]:
    return [
        MediationLevel.tenant_id == tenant_id,
        MediationLevel.scope.op("<@")(func.text2ltree(scope)),
        MediationLevel.started_at >= start,
        MediationLevel.started_at < end,
    ]


async def outcomes_by_level(
    session: AsyncSession, tenant_id: int, scope: str, start: datetime, end: datetime
) -> list[Any]:
    """Per level: levels started in [start, end) inside `scope`, and how the concluded ones ended."""
    rows = await session.execute(
        select(MediationLevel.level, *_outcome_counts())
        .where(*_window(tenant_id, scope, start, end))
        .group_by(MediationLevel.level)
        .order_by(MediationLevel.level)
    )
    return list(rows.all())


async def outcomes_by_scope(
    session: AsyncSession, tenant_id: int, scope: str, start: datetime, end: datetime
) -> list[Any]:
    """The same per station and level, with the station's name."""
    rows = await session.execute(
        select(MediationLevel.scope, Station.name, MediationLevel.level, *_outcome_counts())
        .outerjoin(
            Station, (Station.tenant_id == MediationLevel.tenant_id) & (Station.scope == MediationLevel.scope)
        )
        .where(*_window(tenant_id, scope, start, end))
        .group_by(MediationLevel.scope, Station.name, MediationLevel.level)
        .order_by(MediationLevel.scope, MediationLevel.level)
    )
    return list(rows.all())
