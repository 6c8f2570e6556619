"""Running a service call as a mutation: inside a savepoint, with domain errors returned as data."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from schema.context import Info
from schema.errors import Error, from_domain
from schema.relay import BadGlobalId, decode_id
from services.errors import DomainError, InvalidInput
from services.unit_of_work import atomic
from tenants.context import TenantContext

T = TypeVar("T")


async def run_service(info: Info, work: Callable[[AsyncSession, TenantContext], Awaitable[T]]) -> T | Error:
    actor = info.context.require_principal().context
    async with info.context.db() as session:
        try:
            async with atomic(session):
                return await work(session, actor)
        except DomainError as error:
            return from_domain(error)


def parse_id(global_id: str, field: str, *types: str) -> tuple[str, int]:
    try:
        return decode_id(global_id, *types)
    except BadGlobalId as error:
        raise InvalidInput(str(error), field=field) from None
